"""Each example folder shows what its README says, parses with the API models, and the Argo CD one is ordered.

(tests/cluster/test_crd_on_the_api_server.py has the API server accept every example's ModelDeployment.)
"""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from kestrel.api import spec
from testbed import components

ROOT = pathlib.Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
WAVE = "argocd.argoproj.io/sync-wave"

Check = Callable[[spec.ModelDeploymentSpec], bool]
# What each scenario must show, read from its parsed spec: a README cannot claim what the YAML does not do.
SCENARIOS: dict[str, Check] = {
    "quickstart": lambda s: s.target.environment == "cpu" and s.target.gpu is None,
    "cloud-gpu-tensorrt-fp16": lambda s: (
        s.target.environment == "cloud"
        and s.engine.format == "tensorrt"
        and s.engine.precision == "fp16"
        and s.serving.autoscaling is not None
    ),
    "onprem-gpu-canary": lambda s: (
        s.target.environment == "onprem"
        and s.target.gpu is not None
        and s.rollout.strategy == "canary"
        and s.rollout.auto_rollback
    ),
    "edge-jetson-onnx-int8": lambda s: (
        s.target.environment == "edge"
        and s.engine.format == "onnx"
        and s.engine.precision == "int8"
        and s.target.gpu is not None
        and "Jetson" in (s.target.gpu.product or "")
    ),
    "cpu-openvino-int8": lambda s: (
        s.target.environment == "cpu" and s.engine.format == "openvino" and s.engine.precision == "int8"
    ),
    "encrypted-mtls": lambda s: (
        s.security.encryption.enabled
        and s.security.tls.mutual
        and s.security.tls.mode != "disabled"
        and bool(s.security.access.allowed_service_accounts)
        and bool(s.security.access.allowed_namespaces)
    ),
    "argocd": lambda s: True,  # its point is the sync, checked below
}


def _load(folder: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / folder / "modeldeployment.yaml").read_text())
    return loaded


def test_there_is_one_folder_per_scenario() -> None:
    assert {p.name for p in EXAMPLES.iterdir() if p.is_dir()} == set(SCENARIOS)


@pytest.mark.parametrize("folder", sorted(SCENARIOS))
def test_example_shows_its_scenario(folder: str) -> None:
    readme = (EXAMPLES / folder / "README.md").read_text().strip()
    assert readme and len(readme.splitlines()[0]) > 40, f"{folder}/README.md should say what the example shows"
    raw = _load(folder)
    assert raw["kind"] == "ModelDeployment" and raw["metadata"]["name"]
    assert "namespace" not in raw["metadata"], "examples apply to any namespace (kubectl apply -n)"
    assert SCENARIOS[folder](spec.parse(raw["spec"])), f"examples/{folder} does not show what its README says"


def _kustomized() -> list[dict[str, Any]]:
    kubectl = components.KUBE.binary("kubectl")
    if not kubectl.is_file():
        pytest.skip(f"kubectl is not built yet ({kubectl}): run `make testbed`")
    done = subprocess.run(
        [str(kubectl), "kustomize", str(EXAMPLES / "argocd")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def _wave(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(WAVE, "0"))


def test_argocd_sync_orders_crd_then_operator_then_model() -> None:
    objects = _kustomized()
    waves = {(o["kind"], o["metadata"]["name"]): _wave(o) for o in objects}
    plain = [o for o in yaml.safe_load_all((ROOT / "deploy" / "kestrel.yaml").read_text()) if o]
    assert {(o["kind"], o["metadata"]["name"]) for o in plain} < set(waves), "the sync must carry deploy/kestrel.yaml"
    crd = waves[("CustomResourceDefinition", "modeldeployments.kestrel.dev")]
    operator = waves[("Deployment", "kestrel-operator")]
    model = next(o for o in objects if o["kind"] == "ModelDeployment")
    assert crd < operator < _wave(model)
    for (kind, name), wave in waves.items():
        if kind == "Namespace":
            assert wave <= crd, f"namespace {name} must exist before what lives in it"
    assert model["metadata"]["namespace"] == "kestrel-gitops"
    assert "SkipDryRunOnMissingResource=true" in model["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]


def test_argocd_application_syncs_this_folder_server_side() -> None:
    application = yaml.safe_load((EXAMPLES / "argocd" / "application.yaml").read_text())
    assert application["apiVersion"] == "argoproj.io/v1alpha1" and application["kind"] == "Application"
    assert application["spec"]["source"]["path"] == "examples/argocd"
    assert "ServerSideApply=true" in application["spec"]["syncPolicy"]["syncOptions"]
    # Argo CD's default tracking label is app.kubernetes.io/instance=<Application name>: the chart sets the same.
    plain = [o for o in yaml.safe_load_all((ROOT / "deploy" / "kestrel.yaml").read_text()) if o]
    instances = {o["metadata"].get("labels", {}).get("app.kubernetes.io/instance") for o in plain}
    assert instances <= {application["metadata"]["name"], None}
