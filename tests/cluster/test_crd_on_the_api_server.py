"""The generated CRD installs; the API server accepts the examples, rejects invalid specs naming the field,
defaults exactly as the models do, and `kubectl get mdep` prints the columns."""

from __future__ import annotations

import datetime
import json
import pathlib

import pytest
import yaml
from kubernetes.client import exceptions

from kestrel.api import crd, spec
from tests import invalid_specs
from tests.cluster.operator_support import get_mdep
from tests.cluster_fixtures import Cluster

EXAMPLES = sorted(pathlib.Path(__file__).parents[2].joinpath("examples").glob("*/modeldeployment.yaml"))


def test_crd_is_established_with_short_name(with_crd: Cluster) -> None:
    out = with_crd.kubectl("api-resources", "--api-group=kestrel.dev", "-o", "wide").stdout
    assert "modeldeployments" in out
    assert "mdep" in out
    assert "ModelDeployment" in out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_is_accepted(with_crd: Cluster, namespace: str, path: pathlib.Path) -> None:
    applied = with_crd.kubectl("apply", "--server-side", f"--namespace={namespace}", "-f", str(path), check=False)
    assert applied.returncode == 0, applied.stderr
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    stored = get_mdep(with_crd, namespace, name)
    # The API server's defaults and the models' defaults agree field for field.
    assert stored["spec"] == spec.parse(stored["spec"]).to_wire()


def test_server_defaults_equal_model_defaults(with_crd: Cluster, namespace: str) -> None:
    minimal = invalid_specs.valid_spec()
    stored = with_crd.create_mdep(namespace, "minimal", minimal)
    assert stored["spec"] == spec.parse(minimal).to_wire()


@pytest.mark.parametrize("case", invalid_specs.CASES, ids=lambda c: c.id)
def test_invalid_spec_is_rejected_by_the_api_server(
    with_crd: Cluster, shared_namespace: str, case: invalid_specs.Case
) -> None:
    with pytest.raises(exceptions.ApiException) as caught:
        with_crd.create_mdep(shared_namespace, "invalid", case.spec())
    assert caught.value.status in (400, 422)
    assert caught.value.body is not None, "a refusal without a body"
    message = json.loads(caught.value.body)["message"]
    assert case.field in message, message


def test_get_shows_the_printer_columns(with_crd: Cluster, namespace: str) -> None:
    with_crd.create_mdep(namespace, "cams", invalid_specs.valid_spec())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "status": {
            "phase": "Ready",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Serving", "message": "", "lastTransitionTime": now}
            ],
            "engine": {"format": "openvino", "precision": "int8"},
            "readyReplicas": 2,
            "endpoints": {"grpc": f"cams.{namespace}.svc:8001"},
        }
    }
    with_crd.custom.patch_namespaced_custom_object_status(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, "cams", status)
    lines = with_crd.kubectl("get", "mdep", f"--namespace={namespace}").stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "FORMAT", "PRECISION", "REPLICAS", "ENDPOINT", "AGE"]
    assert lines[1].split()[:6] == ["cams", "True", "openvino", "int8", "2", f"cams.{namespace}.svc:8001"]
    wide = with_crd.kubectl("get", "mdep", f"--namespace={namespace}", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["PHASE", "REASON"]
    assert wide[1].split()[-2:] == ["Ready", "Serving"]
