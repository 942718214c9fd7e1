"""The build Job runs without API access on the serving hardware, and reads everything it needs from its own pod."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from kestrel import cli
from kestrel import settings as operator_settings
from kestrel.api import keys
from kestrel.api import spec as specs
from kestrel.manifests import build_job, owners
from kestrel.storage import layout as storage_layout
from kestrel.storage import pvc
from tests.unit.spec_support import UNMEASURED

OWNER = owners.Owner(name="cams", namespace="vision", uid="uid-1", generation=2)
S3 = operator_settings.Settings(engine_store="s3://engines/prod", store_credentials_secret="engine-store")
PVC = operator_settings.Settings(engine_store="pvc://engine-claim/engines")


def parse(**sections: Any) -> specs.ModelDeploymentSpec:
    return specs.parse({"model": {"source": {"uri": "file:///models/m.pt"}}, "validation": UNMEASURED, **sections})


GPU_SPEC = parse(
    engine={"format": "tensorrt", "precision": "fp16"},
    target={"environment": "cloud", "gpu": {"count": 4, "product": "NVIDIA-L4"}},
)


def job(spec: specs.ModelDeploymentSpec, settings: operator_settings.Settings = S3) -> dict[str, Any]:
    return build_job.build_job(spec, OWNER, settings, keys.engine_key(spec))


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod(obj)["containers"]
    return only  # type: ignore[no-any-return]


def test_job_is_named_after_the_model_and_the_first_eight_hex_of_the_key() -> None:
    key = keys.engine_key(GPU_SPEC)
    assert job(GPU_SPEC)["metadata"]["name"] == f"cams-build-{key[:8]}"


def test_pod_has_no_service_account_token_and_no_service_links() -> None:
    assert pod(job(GPU_SPEC))["automountServiceAccountToken"] is False
    assert pod(job(GPU_SPEC))["enableServiceLinks"] is False


def test_tensorrt_build_runs_on_one_gpu_of_the_serving_product_in_the_gpu_image() -> None:
    obj = job(GPU_SPEC)
    assert pod(obj)["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    # One device builds the engine, however many each serving replica uses.
    assert container(obj)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container(obj)["image"] == S3.builder_gpu_image
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod(obj)["tolerations"]


def test_cpu_build_asks_for_no_gpu_and_uses_the_plain_image() -> None:
    obj = job(parse())
    assert "nvidia.com/gpu" not in json.dumps(obj)
    assert container(obj)["image"] == S3.builder_image
    assert pod(obj)["nodeSelector"] == {"kubernetes.io/arch": "amd64"}


def test_mig_build_asks_for_the_slice_it_serves_on() -> None:
    spec = parse(
        engine={"format": "tensorrt"},
        target={"environment": "onprem", "gpu": {"product": "NVIDIA-A100-SXM4-40GB", "mig": "1g.5gb"}},
    )
    assert container(job(spec))["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == 1
    assert "nvidia.com/gpu" not in container(job(spec))["resources"]["limits"]


def test_edge_build_runs_on_arm64_in_the_multi_arch_cpu_builder_image() -> None:
    spec = parse(engine={"format": "onnx"}, target={"environment": "edge", "gpu": {"product": "Orin"}})
    assert pod(job(spec))["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    assert container(job(spec))["image"] == S3.builder_image


def test_retries_deadline_and_cleanup_come_from_the_spec_and_settings() -> None:
    spec = parse(engine={"build": {"backoffLimit": 3, "activeDeadlineSeconds": 7200}})
    assert job(spec)["spec"]["backoffLimit"] == 3
    assert job(spec)["spec"]["activeDeadlineSeconds"] == 7200
    assert job(spec)["spec"]["ttlSecondsAfterFinished"] == S3.build_ttl_seconds


def test_resources_default_when_empty_and_are_taken_as_given_otherwise() -> None:
    assert container(job(parse()))["resources"] == build_job.DEFAULT_RESOURCES
    given = {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "48Gi"}}
    spec = parse(
        engine={"format": "tensorrt", "build": {"resources": given}},
        target={"environment": "cloud", "gpu": {"product": "NVIDIA-L4"}},
    )
    resources = container(job(spec))["resources"]
    assert resources["requests"] == given["requests"]
    assert resources["limits"] == {"memory": "48Gi", "nvidia.com/gpu": 1}


def test_spec_reaches_the_pod_as_a_file_that_parses_back_to_the_same_spec_and_model_name() -> None:
    obj = job(GPU_SPEC)
    annotation = obj["spec"]["template"]["metadata"]["annotations"]["kestrel.dev/spec"]
    # What `kestrel build --spec` does with it (kestrel.engine.command.load_spec): YAML, spec under `spec`.
    document = yaml.safe_load(annotation)
    assert specs.parse(document["spec"]) == GPU_SPEC
    assert document["metadata"]["name"] == "cams"
    (volume,) = [v for v in pod(obj)["volumes"] if v["name"] == "spec"]
    assert volume["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.annotations['kestrel.dev/spec']"


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(GPU_SPEC, id="gpu"),
        pytest.param(
            parse(model={"source": {"uri": "s3://m/m.pt", "sha256": "a" * 64, "credentialsSecret": "model-store"}}),
            id="source-credentials",
        ),
        pytest.param(parse(model={"source": {"uri": "pvc://models/m.pt"}}), id="pvc-source"),
    ],
)
def test_container_command_is_one_the_kestrel_cli_accepts(spec: specs.ModelDeploymentSpec) -> None:
    built = container(job(spec))
    assert built["command"] == ["kestrel"]
    parsed = cli.build_parser().parse_args(built["args"])
    assert str(parsed.spec) == "/etc/kestrel/spec/spec.json"
    assert str(parsed.out).startswith(build_job.WORK_DIR)  # a scratch volume: the root filesystem is read-only


def test_result_is_reported_through_the_termination_message() -> None:
    built = container(job(GPU_SPEC))
    assert built["terminationMessagePolicy"] == "File"
    env = {e["name"]: e["value"] for e in built["env"]}
    assert env["KESTREL_TERMINATION_LOG"] == built["terminationMessagePath"]


def test_engine_is_bound_for_the_store_under_namespace_name_and_key() -> None:
    key = keys.engine_key(GPU_SPEC)
    env = {e["name"]: e["value"] for e in container(job(GPU_SPEC))["env"]}
    assert env["KESTREL_ENGINE_URI"] == f"s3://engines/prod/vision/cams/{key}"
    assert env["KESTREL_ENGINE_KEY"] == key
    assert env["KESTREL_STORE_GRANT"] == "/var/run/secrets/kestrel/store/grant.json"
    assert "KESTREL_STORE_CREDENTIALS" not in env
    assert env["KESTREL_SIGNING_KEY"] == "/var/run/secrets/kestrel/signing/signing.key"


def test_the_store_arrives_only_as_this_engines_upload_grant_in_a_mounted_secret() -> None:
    obj = job(GPU_SPEC)
    assert not any("valueFrom" in e for e in container(obj).get("env", []))
    (volume,) = [v for v in pod(obj)["volumes"] if v["name"] == "store-grant"]
    assert volume["secret"]["secretName"] == f"cams-build-{keys.engine_key(GPU_SPEC)[:8]}-grant"
    assert volume["secret"]["items"] == [{"key": "grant.json", "path": "grant.json"}]
    (mount,) = [m for m in container(obj)["volumeMounts"] if m["name"] == "store-grant"]
    assert mount["readOnly"] is True
    assert not [v for v in pod(obj)["volumes"] if v.get("secret", {}).get("secretName") == "cams-engine-store"]


def test_a_pvc_store_is_mounted_as_this_models_folder_only_writable_for_the_build() -> None:
    obj = job(parse(), PVC)
    (mount,) = [m for m in container(obj)["volumeMounts"] if m["name"] == "engine-store"]
    assert mount == {
        "name": "engine-store",
        "mountPath": "/mnt/pvc/engine-claim/engines/vision/cams",
        "subPath": "engines/vision/cams",
        "readOnly": False,
    }
    (volume,) = [v for v in pod(obj)["volumes"] if v["name"] == "engine-store"]
    assert volume["persistentVolumeClaim"] == {"claimName": "engine-claim", "readOnly": False}
    # Where the build's store expects this model's engines is inside the mount, and nothing else of the claim is.
    location = storage_layout.parse_store_uri("pvc://engine-claim/engines")
    engines = pvc.PvcStore(location, pathlib.Path("/mnt/pvc"))
    assert engines.root / "vision" / "cams" == pathlib.Path(mount["mountPath"])


def test_data_claims_are_read_only_and_the_store_claim_is_the_one_writable_mount() -> None:
    spec = parse(
        model={"source": {"uri": "pvc://models/a/m.pt"}},
        validation={"dataset": "pvc://datasets/val/data.yaml"},
    )
    obj = job(spec, PVC)
    claims = {
        v["persistentVolumeClaim"]["claimName"]: v["name"] for v in pod(obj)["volumes"] if "persistentVolumeClaim" in v
    }
    assert set(claims) == {"models", "datasets", "engine-claim"}
    mounts = {m["name"]: m for m in container(obj)["volumeMounts"]}
    assert [c for c, volume in claims.items() if not mounts[volume]["readOnly"]] == ["engine-claim"]
    assert mounts[claims["models"]]["mountPath"] == "/mnt/pvc/models"


def test_only_the_build_gets_the_private_signing_key() -> None:
    (volume,) = [v for v in pod(job(GPU_SPEC))["volumes"] if v["name"] == "signing"]
    assert volume["secret"]["items"] == [{"key": "signing.key", "path": "signing.key"}]


def test_an_encrypted_build_mounts_the_keks_public_key_and_never_the_kek() -> None:
    spec = parse(security={"encryption": {"enabled": True, "keySecret": "cams-kek"}})
    volumes = pod(job(spec))["volumes"]
    assert "cams-kek" not in {volume["secret"]["secretName"] for volume in volumes if "secret" in volume}
    (volume,) = [v for v in volumes if v["name"] == "kek-public"]
    assert volume["secret"]["secretName"] == "cams-kek-public"
    assert volume["secret"]["items"] == [{"key": "kek.pub", "path": "kek.pub"}]
    env = {item["name"]: item["value"] for item in container(job(spec))["env"]}
    assert env["KESTREL_KEK_PUBLIC_KEY"] == "/var/run/secrets/kestrel/kek-public/kek.pub"
    assert "KESTREL_KEK_DIR" not in env
    assert not [v for v in pod(job(GPU_SPEC))["volumes"] if v["name"].startswith("kek")]  # not encrypted: no key


def test_source_credentials_are_mounted_when_the_spec_names_them() -> None:
    spec = parse(model={"source": {"uri": "s3://m/m.pt", "sha256": "a" * 64, "credentialsSecret": "model-store"}})
    args = container(job(spec))["args"]
    assert args[args.index("--credentials-dir") + 1] == build_job.SOURCE_CREDENTIALS_DIR
    assert {"name": "source-credentials", "secret": {"secretName": "model-store", "defaultMode": 0o440}} in pod(
        job(spec)
    )["volumes"]


@pytest.mark.parametrize("obj", [pytest.param(job(GPU_SPEC), id="gpu"), pytest.param(job(parse()), id="cpu")])
def test_pod_is_restricted(obj: dict[str, Any]) -> None:
    security = container(obj)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod(obj)["securityContext"]["runAsNonRoot"] is True
    assert pod(obj)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Every path the build writes is a volume of its own.
    writable = {m["mountPath"] for m in container(obj)["volumeMounts"] if not m.get("readOnly")}
    assert writable >= {"/work", "/tmp", "/dev/shm"}


def test_job_is_owned_by_the_model_deployment() -> None:
    (reference,) = job(GPU_SPEC)["metadata"]["ownerReferences"]
    assert reference == {
        "apiVersion": "kestrel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "cams",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_a_failed_gate_fails_the_job_at_once_and_a_preempted_pod_is_not_a_failure() -> None:
    rules = job(GPU_SPEC)["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [build_job.EXIT_GATE_FAILED]
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
