"""`kestrel status NAME`: conditions, revisions, engine, canary step, build progress and endpoints on one screen, or the
status as data with -o json|yaml; a model that does not exist is named, with exit code 1.

The layout is pinned whole on a status as the operator writes it; the command runs against cli_support's API server.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest
import yaml

from kestrel import cli
from kestrel.api import crd, status
from kestrel.commands import status as status_command
from tests.unit.cli_support import TOKEN, ApiServer, api, model_path

__all__ = ["api"]  # the fixture, used by name

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
NEW, OLD, BAD = "5e6f7a8b" + "c" * 56, "1a2b3c4d" + "d" * 56, "9f9f9f9f" + "e" * 56


def model(name: str = "cams", namespace: str = "vision") -> dict[str, Any]:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": name, "namespace": namespace, "generation": 4, "uid": "u-1"},
        "spec": {"rollout": {"strategy": "canary", "canary": {"steps": [10, 50, 100]}}},
        "status": {
            "phase": "RollingOut",
            "observedGeneration": 3,
            "conditions": [
                _condition("Built", "True", "Built", "Engine 5e6f7a8b built in 312 s", "2026-03-01T08:00:00Z"),
                _condition(
                    "Progressing", "True", "CanaryStep", "step 2/3, 50%, analysis until 12:02", "2026-03-01T11:59:15Z"
                ),
                _condition("Degraded", "False", "AsExpected", "", "2026-02-27T12:00:00Z"),
            ],
            "engine": {
                "key": NEW,
                "format": "onnx",
                "precision": "fp16",
                "sizeBytes": 12_897_485,
                "gpuProduct": "NVIDIA-A100-SXM4-40GB",
                "uri": f"s3://engines/kestrel/vision/cams/{NEW}",
                "loadSeconds": 2.06,
            },
            "validation": {"passed": True, "mapSource": 0.6123, "mapEngine": 0.6087, "p50Ms": 4.14, "p95Ms": 5.3},
            "build": {"job": "cams-build-5e6f7a8b", "stage": "export", "done": 3, "total": 10, "unit": "epochs"},
            "revision": {"current": OLD, "previous": "0a" * 32, "failed": BAD},
            "canary": {
                "revision": NEW,
                "state": "Progressing",
                "generation": 3,
                "step": 1,
                "weight": 50,
                "replicas": 2,
                "stepStartedAt": "2026-03-01T11:59:15Z",
                "analysis": {"requests": 401, "failures": 1, "errorRate": 0.0025, "p95Ms": 12.04, "passed": True},
            },
            "endpoints": {"grpc": "cams-triton.vision.svc:8001", "http": "https://cams-triton.vision.svc:8443"},
            "replicas": 4,
            "readyReplicas": 3,
        },
    }


def _condition(kind: str, state: str, reason: str, message: str, since: str) -> dict[str, Any]:
    return {"type": kind, "status": state, "reason": reason, "message": message, "lastTransitionTime": since}


def test_the_status_is_one_compact_screen() -> None:
    status.ModelDeploymentStatus.model_validate(model()["status"])  # a status the operator could have written
    assert status_command.render(model(), NOW) == (
        "ModelDeployment vision/cams: RollingOut (spec generation 4, the operator acted on 3)\n"
        "Endpoint   grpc cams-triton.vision.svc:8001, http https://cams-triton.vision.svc:8443\n"
        "Replicas   3/4 ready\n"
        "Engine     onnx fp16, key 5e6f7a8b, 12.3 MiB, built on NVIDIA-A100-SXM4-40GB, loads in 2.1 s\n"
        f"           s3://engines/kestrel/vision/cams/{NEW}\n"
        "Validation passed, mAP50-95 0.612 -> 0.609, p50 4.1 ms, p95 5.3 ms\n"
        "Revisions  current 1a2b3c4d, previous 0a0a0a0a, failed 9f9f9f9f\n"
        "Canary     engine 5e6f7a8b Progressing at step 2/3, 50%, 2 replicas, window since 2026-03-01T11:59:15Z; "
        "last window 401 requests, 1 failed, p95 12.0 ms: passed\n"
        "Build      job cams-build-5e6f7a8b: export 3/10 epochs\n"
        "\n"
        "TYPE         STATUS  REASON      AGE  MESSAGE\n"
        "Built        True    Built       4h   Engine 5e6f7a8b built in 312 s\n"
        "Progressing  True    CanaryStep  45s  step 2/3, 50%, analysis until 12:02\n"
        "Degraded     False   AsExpected  2d\n"
    )


def test_a_new_model_says_what_it_does_not_have_yet() -> None:
    body = model()
    del body["status"]
    assert (
        status_command.render(body, NOW)
        == "ModelDeployment vision/cams: no status yet (the operator has not seen it)\n"
    )
    body["status"] = {"phase": "Pending", "observedGeneration": 4}
    assert status_command.render(body, NOW) == (
        "ModelDeployment vision/cams: Pending\nRevisions  none serves yet\n\nNo conditions yet.\n"
    )


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (172800, "2d")]
)
def test_ages_read_like_kubectls(seconds: int, shown: str) -> None:
    since = (NOW - datetime.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    assert status_command.age(since, NOW) == shown


def test_the_command_reads_the_model_through_the_kubeconfig(api: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    api.put_model(model())
    assert cli.main(["status", "cams"]) == 0  # namespace: the current context's
    shown = capsys.readouterr().out
    assert shown.startswith("ModelDeployment vision/cams: RollingOut")
    assert "Canary     engine 5e6f7a8b Progressing at step 2/3, 50%" in shown
    (request,) = api.requests
    assert (request["method"], request["path"]) == ("GET", model_path("vision", "cams"))
    assert request["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_output_as_data_is_the_status_itself(api: ApiServer, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    api.put_model(model("cams", "retail"))
    assert cli.main(["status", "cams", "--context", "retail", "-o", fmt]) == 0
    printed = capsys.readouterr().out
    parsed = json.loads(printed) if fmt == "json" else yaml.safe_load(printed)
    assert parsed == model()["status"]


def test_a_missing_model_is_named_and_exits_1(api: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    api.put_model(model())
    assert cli.main(["status", "cmas", "-n", "vision"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "kestrel status: ModelDeployment vision/cmas not found (kubectl get mdep -n vision lists those that exist)\n"
    )
    assert cli.main(["status", "cams", "-n", "retail"]) == 1
    assert "ModelDeployment retail/cams not found" in capsys.readouterr().err


def test_an_unreachable_api_server_is_an_error_not_a_traceback(
    api: ApiServer, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    api.server.shutdown()
    api.server.server_close()
    assert cli.main(["status", "cams"]) == 1
    assert capsys.readouterr().err.startswith("kestrel status: Failed to get ModelDeployment vision/cams")


def test_without_any_kubeconfig_it_says_what_is_missing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cli.main(["status", "cams"]) == 1
    assert "No kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config" in capsys.readouterr().err


def test_the_status_shown_is_unchanged_by_rendering() -> None:
    body = model()
    before = copy.deepcopy(body)
    status_command.render(body, NOW)
    assert body == before
