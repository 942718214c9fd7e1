"""The operator-stepped canary (reconcilers/serving/canary.py) on the real API server: the first revision rolls out
directly; a new engine is stepped in on a canary Deployment beside the stable one, survives an operator killed
mid-window, and is promoted once its window is over.

As in test_operator_serves_and_rolls_back, the pods run on a node no kwok manages and the test plays its kubelet.
Serving checks are off (no Triton answers here): each window is waited out unread, and the Events say so.
"""

from __future__ import annotations

import datetime
import json
import re
import urllib.error
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import exceptions

from kestrel import cli
from kestrel.api import actions
from kestrel.manifests import labels, names
from kestrel.reconcilers.serving import argo_rollout, canary
from tests.cluster.operator_support import (
    build,
    condition,
    get_mdep,
    make_pods_ready,
    mdep_spec,
    meta,
    name_of,
    required_condition,
    wait_for,
)
from tests.cluster_fixtures import Cluster, Operator

pytestmark = pytest.mark.cluster

WINDOW_S = 20  # long enough for a killed operator to come back inside it; short enough for the suite


@pytest.fixture
def without_argo(kube: Any) -> None:
    """The operator steps the canary itself only where Argo Rollouts is not installed; test_canary_with_argo_rollouts
    installs Argo's CRDs for its own run (another suite on this test bed may be in it) and removes them after."""
    extensions = client.ApiextensionsV1Api(kube.api)

    def absent() -> bool:
        try:
            extensions.read_custom_resource_definition(argo_rollout.ROLLOUT_CRD)
        except exceptions.ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    wait_for(f"{argo_rollout.ROLLOUT_CRD} to be absent (left over? kubectl delete crd it)", absent, timeout=180)


def _deployment(kube: Any, namespace: str, name: str) -> client.V1Deployment | None:
    try:
        return client.AppsV1Api(kube.api).read_namespaced_deployment(name, namespace)
    except exceptions.ApiException as error:
        if error.status == 404:
            return None
        raise


def _engine_of(deployment: client.V1Deployment | None) -> str:
    assert deployment is not None, "the Deployment is gone"
    assert deployment.spec is not None and deployment.spec.template.metadata is not None, (
        "a Deployment without a pod template"
    )
    return str((deployment.spec.template.metadata.annotations or {})[labels.ENGINE_KEY_ANNOTATION])


def _canary_deployments(kube: Any, namespace: str) -> list[client.V1Deployment]:
    apps = client.AppsV1Api(kube.api)
    return apps.list_namespaced_deployment(namespace, label_selector=f"{labels.TRACK}=canary").items


def _progressing(kube: Any, namespace: str, reason: str) -> dict[str, Any] | None:
    body = get_mdep(kube, namespace, "cams")
    found = condition(body, "Progressing")
    return body if found and found["reason"] == reason else None


def _events(kube: Any, namespace: str) -> list[client.CoreV1Event]:
    return [e for e in kube.core.list_namespaced_event(namespace).items if e.involved_object.name == "cams"]


def _reconciles(operator: Any) -> float:
    """Passes the running operator process has made (0 while its metrics endpoint is not up yet)."""
    try:
        text = operator.metrics()
    except (urllib.error.URLError, ConnectionError):
        return 0
    return sum(float(v) for v in re.findall(r"^kestrel_reconciles_total\{[^}]*\} (\S+)$", text, re.MULTILINE))


def _time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_new_engine_steps_in_beside_the_stable_one_and_is_promoted(
    without_argo: None, kube: Cluster, operator: Operator, namespace: str, manual_node: str
) -> None:
    raw = {
        **mdep_spec(namespace),
        "serving": {"replicas": 2},
        "rollout": {"strategy": "canary", "canary": {"steps": [50, 100], "interval": f"{WINDOW_S}s"}},
    }
    kube.create_mdep(namespace, "cams", raw)
    first = build(kube, namespace, raw, manual_node)

    # The first revision has nothing to compare a canary with: it goes straight to the stable Deployment.
    wait_for("the first revision's pods", lambda: make_pods_ready(kube, namespace, first) == 2, timeout=60)
    served = wait_for("RolloutComplete", lambda: _progressing(kube, namespace, "RolloutComplete"), timeout=60)
    assert served["status"]["revision"]["current"] == first
    assert "canary" not in served["status"]
    assert _canary_deployments(kube, namespace) == []
    rolling = [e.message for e in _events(kube, namespace) if e.reason == "RollingOut"]
    assert rolling == [f"Rolling out engine {first[:8]}: the first revision has nothing to compare a canary with"]

    # A new engine: a canary Deployment with the step's share of the replicas, beside the untouched stable one.
    kube.custom.patch_namespaced_custom_object(
        "kestrel.dev", "v1alpha1", namespace, "modeldeployments", "cams", {"spec": {"engine": {"opset": 17}}}
    )
    raw["engine"] = {**raw["engine"], "opset": 17}
    second = build(kube, namespace, raw, manual_node)
    assert second != first
    stepping = wait_for("the canary's first step", lambda: _progressing(kube, namespace, canary.STEP), timeout=60)
    assert "step 1/2, 50%: waiting for 1 canary pods" in required_condition(stepping, "Progressing")["message"]
    found = stepping["status"]["canary"]
    assert {k: found[k] for k in ("revision", "state", "step", "weight", "replicas")} == {
        "revision": second,
        "state": "Progressing",
        "step": 0,
        "weight": 50,
        "replicas": 1,
    }
    assert "stepStartedAt" not in found  # the window waits for the canary's pods
    assert stepping["status"]["revision"]["current"] == first
    assert required_condition(stepping, "Available")["status"] == "True"
    (on_canary,) = _canary_deployments(kube, namespace)
    assert name_of(on_canary) == names.canary("cams")
    assert on_canary.spec is not None and (_engine_of(on_canary), on_canary.spec.replicas) == (second, 1)
    stable = _deployment(kube, namespace, names.triton("cams"))
    assert stable is not None and stable.spec is not None and (_engine_of(stable), stable.spec.replicas) == (first, 2)

    # Its pod ready, the step's window starts.
    wait_for("the canary's pod", lambda: make_pods_ready(kube, namespace, second) == 1)
    windowed = wait_for(
        "the step's window",
        lambda: (b := get_mdep(kube, namespace, "cams")) and b["status"]["canary"].get("stepStartedAt") and b,
        timeout=60,
    )
    started = windowed["status"]["canary"]["stepStartedAt"]
    assert "step 1/2, 50%, analysis until" in required_condition(windowed, "Progressing")["message"]

    # Killed mid-window, the operator's successor resumes the same step and window from the status alone.
    operator.kill()
    operator.start()
    wait_for("the new operator's first passes", lambda: _reconciles(operator) >= 2, timeout=60)
    resumed = get_mdep(kube, namespace, "cams")
    assert datetime.datetime.now(datetime.UTC) < _time(started) + datetime.timedelta(seconds=WINDOW_S), (
        "the restart outlasted the window: nothing left to show about resuming it"
    )
    assert (resumed["status"]["canary"]["step"], resumed["status"]["canary"]["stepStartedAt"]) == (0, started)
    assert [meta(d).uid for d in _canary_deployments(kube, namespace)] == [meta(on_canary).uid]

    # The window over, the last step promotes: the stable Deployment moves to the new engine, the canary goes.
    promoting = wait_for(
        "the promotion", lambda: _progressing(kube, namespace, canary.PROMOTING), timeout=WINDOW_S + 60
    )
    assert promoting["status"]["revision"] == {"current": second, "previous": first}
    assert _engine_of(_deployment(kube, namespace, names.triton("cams"))) == second
    promoted = wait_for(
        "CanaryPromoted",
        lambda: make_pods_ready(kube, namespace, second) and _progressing(kube, namespace, canary.PROMOTED),
        timeout=90,
    )
    assert required_condition(promoted, "Progressing")["status"] == "False"
    assert required_condition(promoted, "Degraded")["status"] == "False"
    assert required_condition(promoted, "Available")["status"] == "True"
    assert promoted["status"]["revision"] == {"current": second, "previous": first}
    assert promoted["status"]["canary"]["state"] == "Promoted"
    wait_for("the canary Deployment to go", lambda: _deployment(kube, namespace, names.canary("cams")) is None)
    stable = _deployment(kube, namespace, names.triton("cams"))
    assert stable is not None and stable.spec is not None and (_engine_of(stable), stable.spec.replicas) == (second, 2)

    events = _events(kube, namespace)
    reasons = [e.reason for e in events]
    assert reasons.count(canary.STEP) == 1  # started once: the successor did not start the canary over
    (passed,) = [e for e in events if e.reason == canary.STEP_PASSED]
    assert passed.message == f"Canary of engine {second[:8]} passed step 1/2, 50%: {canary.NOT_RUN}"
    # The window was measured from its start before the kill, and waited out in full.
    assert passed.first_timestamp is not None
    assert passed.first_timestamp >= _time(started) + datetime.timedelta(seconds=WINDOW_S - 1)
    assert {canary.PROMOTING, canary.PROMOTED} <= set(reasons)
    assert canary.ABORTED not in reasons and canary.RESTARTED not in reasons


def _cli(kube: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`kestrel ARGV` as a person runs it, with the test bed's admin kubeconfig; its exit code and standard output."""
    capsys.readouterr()
    code = cli.main([*argv, f"--kubeconfig={kube.bed.kubeconfig}"])
    return code, capsys.readouterr().out


def _annotation(kube: Any, namespace: str) -> str | None:
    return actions.requested(get_mdep(kube, namespace, "cams")["metadata"], actions.CANARY_ACTION)


def test_kestrel_canary_abort_and_promote_reach_the_operator_through_the_api_server(
    without_argo: None,
    kube: Cluster,
    operator: Operator,
    namespace: str,
    manual_node: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A window no test waits out: only a person's request ends these canaries.
    raw = {
        **mdep_spec(namespace),
        "rollout": {"strategy": "canary", "canary": {"steps": [50, 100], "interval": "1h"}},
    }
    kube.create_mdep(namespace, "cams", raw)
    first = build(kube, namespace, raw, manual_node)
    wait_for("the first revision's pod", lambda: make_pods_ready(kube, namespace, first) == 1, timeout=60)
    wait_for("RolloutComplete", lambda: _progressing(kube, namespace, "RolloutComplete"), timeout=60)
    assert _cli(kube, capsys, "canary", "abort", "cams", "-n", namespace)[0] == 1  # no canary to abort yet

    def new_engine(opset: int) -> str:
        kube.custom.patch_namespaced_custom_object(
            "kestrel.dev", "v1alpha1", namespace, "modeldeployments", "cams", {"spec": {"engine": {"opset": opset}}}
        )
        raw["engine"] = {**raw["engine"], "opset": opset}
        key = build(kube, namespace, raw, manual_node)
        wait_for("the canary's first step", lambda: _progressing(kube, namespace, canary.STEP), timeout=60)
        wait_for("the canary's pod", lambda: make_pods_ready(kube, namespace, key) == 1)
        return key

    # Abort: the canary goes, the stable revision stays, the aborted engine is remembered as failed.
    second = new_engine(17)
    code, shown = _cli(kube, capsys, "status", "cams", "-n", namespace, "-o", "json")
    assert code == 0 and json.loads(shown)["canary"]["revision"] == second
    assert _cli(kube, capsys, "canary", "abort", "cams", "-n", namespace)[0] == 0
    aborted = wait_for(
        "the abort",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (condition(b, "Degraded") or {}).get("reason") == canary.ABORTED_BY_USER
            and b
        ),
        timeout=60,
    )
    assert aborted["status"]["revision"]["current"] == first and aborted["status"]["revision"]["failed"] == second
    wait_for("the canary Deployment to go", lambda: _deployment(kube, namespace, names.canary("cams")) is None)
    wait_for("the request to be cleared", lambda: _annotation(kube, namespace) is None)
    assert _engine_of(_deployment(kube, namespace, names.triton("cams"))) == first

    # Promote: the stable Deployment takes the new engine at once, an hour before its window would end.
    third = new_engine(16)
    assert _cli(kube, capsys, "canary", "promote", "cams", "-n", namespace)[0] == 0
    wait_for("the promotion", lambda: _progressing(kube, namespace, canary.PROMOTING), timeout=60)
    assert _engine_of(_deployment(kube, namespace, names.triton("cams"))) == third
    promoted = wait_for(
        "CanaryPromoted",
        lambda: make_pods_ready(kube, namespace, third) and _progressing(kube, namespace, canary.PROMOTED),
        timeout=90,
    )
    assert promoted["status"]["revision"]["current"] == third
    wait_for("the request to be cleared", lambda: _annotation(kube, namespace) is None)
    code, shown = _cli(kube, capsys, "status", "cams", "-n", namespace)
    assert code == 0 and third[:8] in shown and canary.PROMOTED in shown
    reasons = [e.reason for e in _events(kube, namespace)]
    assert {canary.ABORTED_BY_USER, canary.PROMOTION_REQUESTED} <= set(reasons)
