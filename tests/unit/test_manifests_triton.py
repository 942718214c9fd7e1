"""The Triton Deployment: probes and draining that suit Triton, hardware placement, and revisions that roll."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import build_job, owners, pod_lifecycle, service, triton
from tests.unit.spec_support import UNMEASURED

OWNER = owners.Owner(name="cams", namespace="vision", uid="uid-1", generation=2)
SETTINGS = operator_settings.Settings(engine_store="s3://engines/prod", store_credentials_secret="engine-store")
KEY = "a1b2c3d4" * 8
OTHER_KEY = "e5f6a7b8" * 8


def parse(**sections: Any) -> specs.ModelDeploymentSpec:
    return specs.parse({"model": {"source": {"uri": "file:///models/m.pt"}}, "validation": UNMEASURED, **sections})


GPU = parse(
    engine={"format": "tensorrt"},
    target={"environment": "cloud", "gpu": {"count": 2, "product": "NVIDIA-A10G"}, "runtimeClassName": "nvidia"},
)


def deployment(spec: specs.ModelDeploymentSpec, key: str = KEY, **options: Any) -> dict[str, Any]:
    return triton.deployment(spec, OWNER, SETTINGS, key, **options)


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def server(obj: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod(obj)["containers"]
    return only  # type: ignore[no-any-return]


def init(obj: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod(obj)["initContainers"] if c["name"] == name]
    return found  # type: ignore[no-any-return]


def volume(obj: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in pod(obj)["volumes"] if v["name"] == name]
    return found  # type: ignore[no-any-return]


def test_replicas_are_left_to_the_autoscaler_when_it_owns_them() -> None:
    # With server-side apply, a `replicas` field here would fight the HPA on every reconcile.
    assert "replicas" not in deployment(parse(serving={"autoscaling": {"min": 2, "max": 5}}))["spec"]


@pytest.mark.parametrize(("serving", "expected"), [({}, 1), ({"replicas": 3}, 3), ({"replicas": 0}, 0)])
def test_replicas_come_from_the_spec_and_default_to_one(serving: dict[str, Any], expected: int) -> None:
    assert deployment(parse(serving=serving))["spec"]["replicas"] == expected


def test_triton_serves_exactly_the_loaded_model_with_strict_config() -> None:
    args = server(deployment(GPU))["args"]
    for expected in (
        "--model-repository=/models/repository",
        "--model-control-mode=explicit",
        "--load-model=cams",
        "--disable-auto-complete-config",
        "--strict-readiness=true",
        f"--exit-timeout-secs={pod_lifecycle.EXIT_TIMEOUT_SECONDS}",
        "--grpc-port=8001",
        "--http-port=8000",
        "--metrics-port=8002",
    ):
        assert expected in args


def test_probes_watch_the_server_for_liveness_and_the_model_for_readiness() -> None:
    triton_server = server(deployment(GPU))
    assert triton_server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton_server["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton_server["readinessProbe"]["httpGet"]["path"] == "/v2/models/cams/ready"


@pytest.mark.parametrize("load_seconds", [0, 1, 7.5, 60, 600, 3600])
def test_startup_probe_covers_twice_the_load_estimate_plus_the_margin(load_seconds: float) -> None:
    startup = server(deployment(GPU, load_seconds=load_seconds))["startupProbe"]
    window = startup["failureThreshold"] * startup["periodSeconds"]
    assert window >= 2 * load_seconds + pod_lifecycle.STARTUP_MARGIN_SECONDS
    assert window < 2 * load_seconds + pod_lifecycle.STARTUP_MARGIN_SECONDS + startup["periodSeconds"]


def test_grace_period_covers_the_drain_and_tritons_exit_timeout() -> None:
    obj = deployment(GPU)
    drain = server(obj)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod(obj)["terminationGracePeriodSeconds"] > drain + pod_lifecycle.EXIT_TIMEOUT_SECONDS


def test_grpc_connections_end_well_inside_the_drain_so_kept_channels_move_before_sigterm() -> None:
    obj = deployment(GPU)
    drain = server(obj)["lifecycle"]["preStop"]["sleep"]["seconds"]
    ages = [arg.split("=", 1)[1] for arg in server(obj)["args"] if arg.startswith("--grpc-max-connection-age=")]
    # gRPC spreads each connection's age by up to 10%; the Service's endpoint removal needs its own second or two.
    assert ages and int(ages[0]) * 1.1 <= (drain - 2) * 1000


def mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi")
    return int(quantity[:-2])


@pytest.mark.parametrize("instances", [1, 2, 8, 31])
def test_shared_memory_is_in_ram_and_grows_with_the_instance_count(instances: int) -> None:
    shm = volume(deployment(parse(serving={"triton": {"instances": instances}})), "shm")["emptyDir"]
    assert shm["medium"] == "Memory"
    assert mebibytes(shm["sizeLimit"]) >= max(64 * instances, 128)
    more = volume(deployment(parse(serving={"triton": {"instances": instances + 1}})), "shm")["emptyDir"]
    assert mebibytes(more["sizeLimit"]) >= mebibytes(shm["sizeLimit"]) + 64
    assert {"name": "shm", "mountPath": "/dev/shm"} in server(deployment(parse()))["volumeMounts"]


def test_gpu_target_gets_gpu_limits_product_selector_tolerations_and_runtime_class() -> None:
    obj = deployment(GPU)
    assert server(obj)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod(obj)["nodeSelector"] == {"kubernetes.io/arch": "amd64", "nvidia.com/gpu.product": "NVIDIA-A10G"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod(obj)["tolerations"]
    assert pod(obj)["runtimeClassName"] == "nvidia"
    assert server(obj)["image"] == SETTINGS.triton_image


def test_mig_target_asks_for_the_mig_resource_instead_of_whole_gpus() -> None:
    spec = parse(target={"environment": "cloud", "gpu": {"count": 3, "product": "NVIDIA-H100", "mig": "1g.10gb"}})
    limits = server(deployment(spec))["resources"]["limits"]
    assert limits["nvidia.com/mig-1g.10gb"] == 3
    assert "nvidia.com/gpu" not in limits


def test_edge_target_runs_the_igpu_image_on_arm64_with_the_users_selector() -> None:
    spec = parse(target={"environment": "edge", "gpu": {"product": "Orin"}, "nodeSelector": {"site": "dock"}})
    obj = deployment(spec)
    assert server(obj)["image"] == SETTINGS.triton_igpu_image
    assert pod(obj)["nodeSelector"] == {"kubernetes.io/arch": "arm64", "nvidia.com/gpu.product": "Orin", "site": "dock"}


def test_cpu_target_has_no_gpu_anything() -> None:
    obj = deployment(parse())
    assert "nvidia.com/gpu" not in json.dumps(obj)
    assert "--allow-gpu-metrics=false" in server(obj)["args"]


def test_default_memory_limit_makes_room_for_the_ram_backed_volumes() -> None:
    obj = deployment(parse(serving={"triton": {"instances": 4}}), engine_size_bytes=2 * 2**30)
    volumes = mebibytes(volume(obj, "models")["emptyDir"]["sizeLimit"]) + mebibytes(
        volume(obj, "shm")["emptyDir"]["sizeLimit"]
    )
    limit = mebibytes(server(obj)["resources"]["limits"]["memory"])
    assert limit >= volumes + triton.DEFAULT_SERVER_MEMORY_MIB


def test_spec_image_and_resources_win_over_the_defaults() -> None:
    spec = parse(serving={"triton": {"image": "registry.local/triton:custom", "resources": {"requests": {"cpu": "3"}}}})
    assert server(deployment(spec))["image"] == "registry.local/triton:custom"
    assert server(deployment(spec))["resources"] == {"requests": {"cpu": "3"}}


def template(obj: dict[str, Any]) -> str:
    return json.dumps(obj["spec"]["template"], sort_keys=True)


def test_a_new_engine_or_certificate_changes_the_pod_template_and_so_rolls_the_pods() -> None:
    base = deployment(GPU, tls_checksum="sha256:old")
    assert template(deployment(GPU, tls_checksum="sha256:old")) == template(base)
    assert template(deployment(GPU, tls_checksum="sha256:new")) != template(base)
    assert template(deployment(GPU, OTHER_KEY, tls_checksum="sha256:old")) != template(base)
    annotations = base["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kestrel.dev/engine-key"] == KEY
    assert annotations["kestrel.dev/tls-checksum"] == "sha256:old"


def test_rollout_never_drops_capacity_and_has_the_specs_deadline() -> None:
    obj = deployment(parse(rollout={"progressDeadlineSeconds": 1200}))
    assert obj["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert obj["spec"]["progressDeadlineSeconds"] == 1200
    assert obj["spec"]["revisionHistoryLimit"] >= 1


def test_loader_fetches_the_engine_into_ram_and_its_memory_limit_holds_it() -> None:
    obj = deployment(GPU, engine_size_bytes=6 * 2**30)
    loader = init(obj, "load")
    assert loader["args"][:5] == [
        "load",
        "--from",
        f"s3://engines/prod/vision/cams/{KEY}",
        "--to",
        "/models/repository",  # a folder inside the volume: the loader cannot rename onto its mount point
    ]
    models = volume(obj, "models")["emptyDir"]
    assert models["medium"] == "Memory"
    assert mebibytes(models["sizeLimit"]) >= 6 * 1024
    assert mebibytes(loader["resources"]["limits"]["memory"]) > mebibytes(models["sizeLimit"])
    # Triton only reads what the loader verified.
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in server(obj)["volumeMounts"]


def test_serving_pods_can_verify_but_not_sign_engines() -> None:
    assert volume(deployment(GPU), "signing")["secret"]["items"] == [{"key": "signing.pub", "path": "signing.pub"}]
    assert "signing.key" not in json.dumps(deployment(GPU))


def test_pods_run_as_their_own_account_without_a_token() -> None:
    assert pod(deployment(GPU))["serviceAccountName"] == "cams-triton"
    assert pod(deployment(GPU))["automountServiceAccountToken"] is False
    account = triton.service_account(OWNER)
    assert account["metadata"]["name"] == "cams-triton"
    assert account["automountServiceAccountToken"] is False


def test_every_container_is_restricted() -> None:
    obj = deployment(GPU)
    for each in [*pod(obj)["initContainers"], *pod(obj)["containers"]]:
        assert each["securityContext"]["readOnlyRootFilesystem"] is True, each["name"]
        assert each["securityContext"]["capabilities"] == {"drop": ["ALL"]}, each["name"]
    assert pod(obj)["securityContext"]["runAsNonRoot"] is True


def test_grpc_uses_tls_and_http_goes_through_the_tls_proxy_unless_tls_is_disabled() -> None:
    mutual = deployment(parse(security={"tls": {"mutual": True}}, serving={"protocols": ["grpc", "http"]}))
    assert "--grpc-use-ssl=true" in server(mutual)["args"]
    assert "--grpc-use-ssl-mutual=true" in server(mutual)["args"]
    proxy = init(mutual, "tls-proxy")
    assert proxy["restartPolicy"] == "Always"  # a native sidecar: up before Triton, down after it drains
    assert proxy["image"] == SETTINGS.loader_image and proxy["command"] == ["kestrel"]
    assert proxy["args"][0] == "tls-proxy"
    # Only the model's own client CA verifies clients, the file Triton's gRPC trusts too.
    assert "--client-ca=/etc/kestrel/client-ca/ca.crt" in proxy["args"]
    assert "--grpc-root-cert=/etc/kestrel/client-ca/ca.crt" in server(mutual)["args"]
    assert "--listen=0.0.0.0:8443" in proxy["args"]
    plain = deployment(parse(security={"tls": {"mode": "disabled"}}))
    assert not any(a.startswith("--grpc-use-ssl") for a in server(plain)["args"])
    assert [c["name"] for c in pod(plain)["initContainers"]] == ["load"]


def test_with_tls_tritons_plain_http_listens_on_loopback_and_the_probes_use_the_proxys_health_listener() -> None:
    obj = deployment(parse(serving={"protocols": ["grpc", "http"]}))
    assert "--http-address=127.0.0.1" in server(obj)["args"]
    assert "http" not in {p["name"] for p in server(obj)["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        # By number: a named port is looked up among the probed container's own ports, and this is the sidecar's.
        assert server(obj)[probe]["httpGet"]["port"] == 8081, probe
    proxy = init(obj, "tls-proxy")
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {"health": 8081, "https": 8443}
    assert "--target=127.0.0.1:8000" in proxy["args"]
    assert not any(a.startswith("--client-ca") for a in proxy["args"])  # one-way TLS asks no client certificate
    assert proxy["startupProbe"]["tcpSocket"] == {"port": "health"}  # Triton starts once the proxy listens


def test_with_tls_and_grpc_clients_only_the_proxy_serves_the_probes_and_no_https() -> None:
    proxy = init(deployment(parse(serving={"protocols": ["grpc"]}, security={"tls": {"mutual": True}})), "tls-proxy")
    assert [p["name"] for p in proxy["ports"]] == ["health"]
    assert not any(a.startswith(("--listen", "--client-ca")) for a in proxy["args"])


def test_without_tls_the_probes_use_tritons_own_http_at_the_pods_address() -> None:
    obj = deployment(parse(security={"tls": {"mode": "disabled"}}))
    assert "--http-address=0.0.0.0" in server(obj)["args"]
    assert server(obj)["readinessProbe"]["httpGet"]["port"] == "http"
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in server(obj)["ports"]


def test_api_key_comes_from_its_secret_and_never_appears_in_the_pod_spec() -> None:
    obj = deployment(GPU)
    (env,) = [e for e in server(obj)["env"] if e["name"] == "KESTREL_API_KEY"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "cams-api-key", "key": "api-key"}
    restricted = [a for a in server(obj)["args"] if "restricted" in a]
    assert len(restricted) == 2
    assert all(a.endswith(":kestrel-api-key=$(KESTREL_API_KEY)") for a in restricted)
    # Health stays open: the kubelet's probes carry no key.
    assert all("health" not in a for a in restricted)
    without = server(deployment(parse(security={"access": {"requireApiKey": False}})))
    assert all("valueFrom" not in e for e in without["env"])


def test_the_drift_window_reaches_the_served_model_and_disabling_drift_turns_its_metrics_off() -> None:
    def window(monitoring: dict[str, Any]) -> str:
        found = {e["name"]: e.get("value") for e in server(deployment(parse(monitoring=monitoring)))["env"]}
        return str(found["KESTREL_DRIFT_WINDOW"])

    assert window({}) == "1000"
    assert window({"drift": {"window": 200}}) == "200"
    assert window({"drift": {"enabled": False, "window": 200}}) == "0"


def test_canary_is_a_second_deployment_whose_pods_the_stable_one_does_not_select() -> None:
    stable = deployment(GPU)
    canary = triton.canary_deployment(GPU, OWNER, SETTINGS, OTHER_KEY, replicas=1)
    assert canary["metadata"]["name"] == "cams-triton-canary" != stable["metadata"]["name"]
    assert canary["spec"]["replicas"] == 1
    stable_selector = stable["spec"]["selector"]["matchLabels"].items()
    canary_labels = canary["spec"]["template"]["metadata"]["labels"].items()
    assert not stable_selector <= canary_labels
    # ...while the Service sends traffic to both.
    selector = service.service(GPU, OWNER)["spec"]["selector"].items()
    assert selector <= canary_labels
    assert selector <= stable["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize(
    ("serving", "percent", "expected"),
    [
        ({"replicas": 10}, 10, 1),
        ({"replicas": 10}, 50, 5),
        ({"replicas": 3}, 10, 1),
        ({}, 100, 1),
        ({"autoscaling": {"min": 4, "max": 9}}, 50, 2),
    ],
)
def test_canary_replicas_are_a_share_of_the_serving_count_and_at_least_one(
    serving: dict[str, Any], percent: int, expected: int
) -> None:
    assert triton.canary_replicas(parse(serving=serving), percent) == expected


def test_build_names_the_model_as_triton_loads_and_probes_it() -> None:
    built = build_job.build_job(GPU, OWNER, SETTINGS, KEY)["spec"]["template"]
    model = json.loads(built["metadata"]["annotations"]["kestrel.dev/spec"])["metadata"]["name"]
    assert f"--load-model={model}" in server(deployment(GPU))["args"]
    assert server(deployment(GPU))["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{model}/ready"
    # ...and the loader reads from where the build writes.
    env = {e["name"]: e["value"] for e in built["spec"]["containers"][0]["env"]}
    assert env["KESTREL_ENGINE_URI"] == init(deployment(GPU), "load")["args"][2]


def test_autoscaled_pods_always_request_cpu_so_utilization_can_be_measured() -> None:
    spec = parse(serving={"autoscaling": {"min": 1, "max": 3}, "triton": {"resources": {"limits": {"memory": "4Gi"}}}})
    assert server(deployment(spec))["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}


def test_selector_is_immutable_across_revisions() -> None:
    # A Deployment's selector cannot change: it must not carry the engine key, and must match every revision.
    old, new = deployment(GPU, KEY), deployment(GPU, OTHER_KEY)
    assert old["spec"]["selector"] == new["spec"]["selector"]
    for obj in (old, new):
        assert obj["spec"]["selector"]["matchLabels"].items() <= obj["spec"]["template"]["metadata"]["labels"].items()


def test_a_pvc_store_reaches_the_loader_as_this_models_folder_read_only() -> None:
    settings = operator_settings.Settings(engine_store="pvc://engines/prod")
    obj = triton.deployment(parse(), OWNER, settings, KEY)
    (mount,) = [m for m in init(obj, "load")["volumeMounts"] if m["name"] == "engine-store"]
    assert mount == {
        "name": "engine-store",
        "mountPath": "/mnt/pvc/engines/prod/vision/cams",
        "subPath": "prod/vision/cams",
        "readOnly": True,
    }
    (volume,) = [v for v in pod(obj)["volumes"] if v["name"] == "engine-store"]
    assert volume["persistentVolumeClaim"] == {"claimName": "engines", "readOnly": True}


@pytest.mark.parametrize(
    ("settings", "encryption", "expected"),
    [
        pytest.param(SETTINGS, {}, {"store_grant": True, "verify_key_file": True}, id="s3-plaintext"),
        pytest.param(
            SETTINGS,
            {"enabled": True, "keySecret": "model-kek"},
            {"store_grant": True, "verify_key_file": True, "kek_dir": True, "require_encryption": False},
            id="s3-encrypted",
        ),
        pytest.param(
            operator_settings.Settings(engine_store="pvc://engines/prod"),
            {},
            {"pvc_root": True, "verify_key_file": True},
            id="pvc",
        ),
    ],
)
def test_loader_command_is_one_the_kestrel_cli_accepts(
    settings: operator_settings.Settings, encryption: dict[str, Any], expected: dict[str, bool]
) -> None:
    """`expected`: the options the loader gets, and whether each names a path that must be mounted."""
    from kestrel import cli  # noqa: PLC0415 - the CLI is what the init container runs

    spec = parse(security={"encryption": encryption}) if encryption else parse()
    loader = init(triton.deployment(spec, OWNER, settings, KEY), "load")
    assert loader["command"] == ["kestrel"]
    parsed = cli.build_parser().parse_args(loader["args"])
    given = {arg for arg in loader["args"] if arg.startswith("--")} - {"--from", "--to"}
    # Each flag given is one of the options that carry these names (--verify-key is --verify-key-file's alias).
    assert len(given) == len(expected)
    assert parsed.source == settings.store.uri(OWNER.namespace, OWNER.name, KEY)
    assert parsed.require_encryption == ("require_encryption" in expected)
    mounted = {m["mountPath"] for m in loader["volumeMounts"]}
    for name in (name for name, is_path in expected.items() if is_path):
        path = vars(parsed)[name]
        assert path is not None, f"{name} is not given"
        # A file on a mounted volume, or (pvc://) the folder that the claims are mounted under.
        on_volume = any(str(path).startswith(m) or m.startswith(f"{path}/") for m in mounted)
        assert on_volume, f"{name}={path} is not on a mounted volume"


def test_cpu_targets_of_the_python_runtime_run_kestrels_cpu_triton_and_native_ones_nvidias() -> None:
    cpu = {"target": {"environment": "cpu"}, "engine": {"format": "onnx"}}
    python = parse(**cpu, serving={"triton": {"runtime": "python"}})
    native = parse(**cpu, serving={"triton": {"runtime": "native"}})
    assert server(deployment(python))["image"] == SETTINGS.triton_cpu_image
    # Kestrel's CPU image has only the Python backend: a native model needs Triton's onnxruntime backend.
    assert server(deployment(native))["image"] == SETTINGS.triton_image
    assert server(deployment(GPU))["image"] == SETTINGS.triton_image
