"""`kestrel canary promote|abort NAME`: the request is the annotation the operator answers, set with a merge patch
of that annotation alone under the CLI's own field manager; with no canary in progress nothing is asked and the
command says why, with exit code 1. Runs against cli_support's API server."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel import cli
from kestrel.api import actions, crd
from kestrel.kube import kubeconfig
from tests.unit.cli_support import ApiServer, api, model_path

__all__ = ["api"]  # the fixture, used by name

NEW = "5e6f7a8b" + "c" * 56


def model(canary: dict[str, Any] | None, strategy: str = "canary") -> dict[str, Any]:
    found: dict[str, Any] = {"revision": {"current": "1a" * 32}}
    if canary is not None:
        found["canary"] = canary
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": "cams", "namespace": "vision", "uid": "u-1", "annotations": {"team": "vision"}},
        "spec": {"rollout": {"strategy": strategy}},
        "status": found,
    }


RUNNING = {"revision": NEW, "state": "Progressing", "generation": 1, "step": 1, "weight": 50}


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_the_request_is_a_merge_patch_of_one_annotation(
    api: ApiServer, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    api.put_model(model(RUNNING))
    assert cli.main(["canary", action, "cams", "-n", "vision"]) == 0
    get, patch = api.requests
    assert get["method"] == "GET"
    assert (patch["method"], patch["path"], patch["content_type"]) == (
        "PATCH",
        model_path("vision", "cams"),
        "application/merge-patch+json",
    )
    assert patch["body"] == {"metadata": {"annotations": {actions.CANARY_ACTION: action}}}
    assert f"fieldManager={kubeconfig.FIELD_MANAGER}" in patch["query"]
    stored = api.objects[model_path("vision", "cams")]["metadata"]["annotations"]
    assert stored == {"team": "vision", actions.CANARY_ACTION: action}
    assert capsys.readouterr().out == (
        f"Asked the operator to {action} the canary of engine 5e6f7a8b (step 2, 50%) of ModelDeployment vision/cams; "
        "`kestrel status cams -n vision` shows the outcome\n"
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (model({**RUNNING, "state": "Promoted"}), "the last, of engine 5e6f7a8b, is Promoted"),
        (model(None), "where Argo Rollouts runs the canary, use `kubectl argo rollouts promote|abort`"),
        (model(None, strategy="rolling"), "ModelDeployment vision/cams rolls out with strategy rolling"),
    ],
)
def test_with_no_canary_in_progress_nothing_is_asked(
    api: ApiServer, capsys: pytest.CaptureFixture[str], body: dict[str, Any], said: str
) -> None:
    api.put_model(body)
    assert cli.main(["canary", "abort", "cams"]) == 1
    assert [request["method"] for request in api.requests] == ["GET"]
    err = capsys.readouterr().err
    assert err.startswith("kestrel canary abort: ") and said in err and err.endswith("; nothing was asked\n")


def test_a_missing_model_is_named(api: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["canary", "promote", "cams", "-n", "retail"]) == 1
    assert "kestrel canary promote: ModelDeployment retail/cams not found" in capsys.readouterr().err
    assert [request["method"] for request in api.requests] == ["GET"]
