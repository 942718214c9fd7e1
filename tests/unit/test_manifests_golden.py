"""Every manifest builder, rendered for every example (and the variants below), matches its reviewed golden YAML file.

Regenerate after an intended change, then review the diff like code:

    KESTREL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_manifests_*.py

Without the variable a difference (or a missing or stale golden file) fails the test; it never rewrites.
Files are compared as parsed YAML, so only a change in the objects themselves fails, not a change of key order.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import (
    access,
    argo,
    autoscaling,
    build_job,
    build_network,
    disruption,
    owners,
    pod_monitor,
    secrets,
    service,
    store_mounts,
    triton,
)
from kestrel.security import x25519
from tests.unit import golden_support as golden
from tests.unit.spec_support import UNMEASURED

ROOT = pathlib.Path(__file__).parents[2]
GOLDEN = pathlib.Path(__file__).parent / "golden" / "manifests"

# Fixed inputs: golden files must not change with the package version (which is part of real engine keys
# and of the default image tags).
ENGINE_KEY = "5f3c9e0a" + "7d41b2c6" * 7
UID = "6f1c2a9e-0d4b-4c8e-9a57-3b2d1e0f4a6c"
TLS_CHECKSUM = "sha256:1e5a0c3b9d7f2e4a6c8b0d1f3e5a7c9b"
GRANT_DOCUMENT = '{"engine":"ns/name/key","expires":"2026-12-14T00:00:00Z","kind":"download","objects":{},"version":1}'
GRANT_EXPIRES = "2026-12-14T00:00:00Z"
# The endpoint the operator reads from a store Secret that names none: the S3 client's default.
STORE_ENDPOINT = "https://s3.amazonaws.com"
GOLDEN_KEK = x25519.PrivateKek(bytes(range(1, 33))).public


def golden_settings(engine_store: str) -> operator_settings.Settings:
    return operator_settings.Settings(
        engine_store=engine_store,
        store_credentials_secret="engine-store" if engine_store.startswith("s3://") else None,
        builder_image="ghcr.io/kestrel-dev/kestrel-builder:golden",
        builder_gpu_image="ghcr.io/kestrel-dev/kestrel-builder:golden-gpu",
        loader_image="ghcr.io/kestrel-dev/kestrel-loader:golden",
        triton_cpu_image="ghcr.io/kestrel-dev/kestrel-triton-cpu:golden",
    )


@dataclasses.dataclass(frozen=True)
class Case:
    """One ModelDeployment, the store it builds into, and what the reconcilers would know about it."""

    name: str
    spec: specs.ModelDeploymentSpec
    owner: owners.Owner
    settings: operator_settings.Settings
    load_seconds: float = 60.0
    engine_size_bytes: int | None = None


def _example(folder: str, engine_store: str, **extra: Any) -> Case:
    raw = yaml.safe_load((ROOT / "examples" / folder / "modeldeployment.yaml").read_text())
    owner = owners.Owner(name=raw["metadata"]["name"], namespace="vision", uid=UID, generation=1)
    return Case(folder, specs.parse(raw["spec"]), owner, golden_settings(engine_store), **extra)


# Beyond the examples: the paths they do not take (MIG, mutual TLS, encryption with a KEK, the Python runtime,
# TLS off, a canary rollout, a source on a claim beside an S3 store).
VARIANTS: dict[str, dict[str, Any]] = {
    "variant-mig-mtls-kek": {
        "model": {"source": {"uri": "pvc://models/traffic/yolov8m.pt"}},
        "validation": {"dataset": "pvc://models/traffic/data.yaml"},
        "engine": {"format": "tensorrt", "precision": "fp16", "build": {"resources": {"limits": {"memory": "24Gi"}}}},
        "target": {"environment": "onprem", "gpu": {"count": 2, "product": "NVIDIA-A100-SXM4-40GB", "mig": "1g.5gb"}},
        "serving": {"replicas": 3, "triton": {"instances": 4, "resources": {"requests": {"cpu": "2"}}}},
        "rollout": {
            "strategy": "canary",
            "canary": {"steps": [10, 50, 100], "analysis": {"maxP95LatencyMs": 40}},
            "progressDeadlineSeconds": 900,
        },
        "security": {
            "tls": {"mutual": True},
            "encryption": {"enabled": True, "keySecret": "traffic-kek"},
            "access": {
                "requireApiKey": True,
                "allowedGroups": ["traffic-analysts"],
                "allowedServiceAccounts": ["apps/camera-gateway"],
                "allowedNamespaces": ["lab", "apps"],
            },
        },
    },
    "variant-python-plain": {
        "model": {"source": {"uri": "s3://models/shapes.pt", "sha256": "ab" * 32}},
        "validation": UNMEASURED,
        "engine": {"format": "onnx"},
        "target": {"environment": "cpu", "runtimeClassName": "kata-cc"},
        "serving": {
            "autoscaling": {"min": 1, "max": 4, "metric": "inferenceRate", "target": 200},
            "protocols": ["http"],
            "triton": {"runtime": "python", "instances": 6},
        },
        "rollout": {"strategy": "canary", "canary": {"steps": [25, 100], "interval": "1.5m"}, "autoRollback": False},
        "security": {
            "tls": {"mode": "disabled"},
            "access": {"requireApiKey": False},
        },
    },
    "variant-python-sampling": {
        "model": {"source": {"uri": "s3://models/shapes.pt", "sha256": "cd" * 32}},
        "validation": {"dataset": "pvc://models/shapes/data.yaml"},
        "engine": {"format": "openvino"},
        "target": {"environment": "cpu"},
        "serving": {"triton": {"runtime": "python"}},
        "security": {"encryption": {"enabled": True, "keySecret": "shapes-kek"}},
        "monitoring": {"sampling": {"enabled": True, "ratePerMinute": 12, "maxBytesPerDay": 64 << 20}},
    },
}


# Operator settings of a variant beyond `golden_settings`: a Prometheus outside `monitoring` that selects PodMonitors
# by label.
VARIANT_SETTINGS: dict[str, dict[str, Any]] = {
    "variant-mig-mtls-kek": {
        "scraper_namespaces": ("observability", "monitoring"),
        "pod_monitor_interval": "15s",
        "pod_monitor_labels": (("release", "prometheus"),),
    },
}


def _variant(name: str) -> Case:
    owner = owners.Owner(name=name, namespace="lab", uid=UID, generation=4)
    return Case(
        name,
        specs.parse(VARIANTS[name]),
        owner,
        dataclasses.replace(golden_settings("s3://kestrel-engines/lab"), **VARIANT_SETTINGS.get(name, {})),
        load_seconds=240,
        engine_size_bytes=3 * 2**30,
    )


CASES = [
    _example("cloud-gpu-tensorrt-fp16", "s3://kestrel-engines/prod", load_seconds=90),
    _example("cpu-openvino-int8", "s3://kestrel-engines/prod", engine_size_bytes=14_500_000),
    _example("edge-jetson-onnx-int8", "pvc://engine-store/engines"),
    _example("encrypted-mtls", "s3://kestrel-engines/prod"),
    _example("onprem-gpu-canary", "pvc://engine-store/engines"),
    _example("quickstart", "pvc://kestrel-engines/engines"),
    _example("argocd", "s3://kestrel-engines/prod"),
    *(_variant(name) for name in VARIANTS),
]

Renderer = Callable[[Case], dict[str, Any] | None]

RENDERERS: dict[str, Renderer] = {
    "build-job": lambda c: build_job.build_job(c.spec, c.owner, c.settings, ENGINE_KEY),
    "build-network-policy": lambda c: build_network.network_policy(c.spec, c.owner, c.settings, STORE_ENDPOINT),
    "service-account": lambda c: triton.service_account(c.owner),
    "deployment": lambda c: triton.deployment(
        c.spec,
        c.owner,
        c.settings,
        ENGINE_KEY,
        load_seconds=c.load_seconds,
        tls_checksum=TLS_CHECKSUM,
        engine_size_bytes=c.engine_size_bytes,
    ),
    "canary-deployment": lambda c: triton.canary_deployment(
        c.spec, c.owner, c.settings, ENGINE_KEY, replicas=triton.canary_replicas(c.spec, 10)
    ),
    "service": lambda c: service.service(c.spec, c.owner),
    "pod-disruption-budget": lambda c: disruption.pod_disruption_budget(c.owner),
    "autoscaler-keda": lambda c: autoscaling.autoscaler(c.spec, c.owner, c.settings, keda_available=True),
    "autoscaler-no-keda": lambda c: autoscaling.autoscaler(c.spec, c.owner, c.settings, keda_available=False),
    "argo-rollout": lambda c: (
        argo.rollout(c.spec, c.owner, c.settings, ENGINE_KEY, load_seconds=c.load_seconds, tls_checksum=TLS_CHECKSUM)
        if c.spec.rollout.strategy == "canary"
        else None
    ),
    "argo-analysis-template": lambda c: (
        argo.analysis_template(c.spec, c.owner, c.settings) if c.spec.rollout.strategy == "canary" else None
    ),
    "autoscaler-argo": lambda c: (
        autoscaling.autoscaler(c.spec, c.owner, c.settings, keda_available=True, target_kind="Rollout")
        if c.spec.rollout.strategy == "canary"
        else None
    ),
    "api-key-role": lambda c: access.api_key_role(c.owner),
    "api-key-role-binding": lambda c: access.api_key_role_binding(c.spec, c.owner),
    "network-policy": lambda c: access.network_policy(c.spec, c.owner, c.settings),
    "pod-monitor": lambda c: pod_monitor.pod_monitor(c.owner, c.settings),
    "kek-public-secret": lambda c: (
        secrets.kek_public(c.owner, GOLDEN_KEK.to_pem(), GOLDEN_KEK.key_id)
        if c.spec.security.encryption.enabled
        else None
    ),
    "store-grant-secret": lambda c: (
        store_mounts.grant_secret(c.owner, ENGINE_KEY, kind="download", document=GRANT_DOCUMENT, expires=GRANT_EXPIRES)
        if c.settings.store_credentials_secret
        else None
    ),
}


def rendered() -> Iterator[tuple[Case, str, dict[str, Any]]]:
    """Every object the builders make across all cases (a builder may have nothing to make for a case)."""
    for case in CASES:
        for kind, render in RENDERERS.items():
            obj = render(case)
            if obj is not None:
                yield case, kind, obj


def params() -> list[Any]:
    """`rendered()` as pytest parameters named `case/kind`."""
    return [pytest.param(case, kind, obj, id=f"{case.name}/{kind}") for case, kind, obj in rendered()]


def dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False, width=120)


def golden_path(case: Case, kind: str) -> pathlib.Path:
    return GOLDEN / case.name / f"{kind}.yaml"


@pytest.mark.parametrize(("case", "kind", "obj"), params())
def test_rendered_object_matches_golden_file(case: Case, kind: str, obj: dict[str, Any]) -> None:
    golden.check(golden_path(case, kind), dump(obj), same=lambda expected: yaml.safe_load(expected) == obj)


def test_no_golden_file_is_stale() -> None:
    expected = [golden_path(case, kind) for case, kind, _ in rendered()]
    stale = golden.stale(GOLDEN, "*.yaml", expected)
    assert not stale, f"golden files no builder renders any more: {stale}"


def test_every_builder_renders_for_some_case() -> None:
    kinds = {kind for _, kind, _ in rendered()}
    assert kinds == set(RENDERERS)


def test_no_sub_object_is_shared_between_two_places() -> None:
    # YAML anchors appear exactly where one dict or list is referenced twice: a caller mutating one place
    # (adding a label to a Job) would silently change the other (its pod template).
    for case, kind, obj in rendered():
        assert "&id" not in yaml.safe_dump(obj), f"{case.name}/{kind} shares a sub-object"


def test_every_example_is_a_case() -> None:
    examples = {path.parent.name for path in (ROOT / "examples").glob("*/modeldeployment.yaml")}
    assert examples <= {case.name for case in CASES}


def test_a_golden_file_that_differs_fails(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(golden, "UPDATE", False)
    (tmp_path / "a.yaml").write_text("kind: Service\n")
    golden.check(tmp_path / "a.yaml", "kind: Service\n")
    with pytest.raises(pytest.fail.Exception, match="differs"):
        golden.check(tmp_path / "a.yaml", "kind: Deployment\n")
    with pytest.raises(AssertionError, match="missing"):
        golden.check(tmp_path / "b.yaml", "kind: Service\n")
