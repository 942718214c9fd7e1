"""The operator-stepped canary (reconcilers/serving/canary.py) with a real Triton: the real API server, the operator
under the chart's RBAC, the process kubelet running the real build Jobs and Triton pods, and a client loop through the
Service the whole time.

One ModelDeployment (the quickstart example with `rollout.strategy: canary`, steps [50, 100]) lives through the
module:
1. a new engine (dynamic batching off) runs on a canary pod beside the stable one; its window is judged on the
   canary pod's own Triton /metrics (request counters, and the p95 of the latency summary that the p95 bound turns
   on), passes, and is promoted: no client request fails, and the old, the canary and the promoted pods all answer;
2. a revision whose p95 bound (10 µs) no CPU Triton can meet fails its analysis on the numbers the real canary
   reported: the canary goes, Degraded says why, a Warning Event says the same, and the stable revision answers
   every request.

The process kubelet is used because it starts pods in a second; it ignores pod hardening and runs its own probes
and preStop, so what the canary's pods look like under a real kubelet is shown on the real node (tests/realnode/).
"""

from __future__ import annotations

import pathlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client import exceptions

from kestrel.api import keys
from kestrel.api import spec as specs
from kestrel.manifests import labels, names
from kestrel.reconcilers.serving import argo_rollout, canary
from testbed import claims, demo, local_serving, service_proxy
from testbed import operator as operator_process
from tests.e2e.test_serving_end_to_end import ClientLoop, Served

T = TypeVar("T")

BUILD_AND_ROLLOUT_SECONDS = 600
WINDOW_SECONDS = 20  # long enough for a few hundred requests on the canary, short enough for the suite
GENEROUS_P95_MS = 10_000.0  # a CPU Triton under the suite's load stays far below this
IMPOSSIBLE_P95_MS = 0.01  # 10 µs: one YOLO inference through Triton's Python backend takes milliseconds
CANARY = {
    "steps": [50, 100],
    "interval": f"{WINDOW_SECONDS}s",
    # Any failed request fails the window; the p95 bound also makes Triton export the latency summary it reads.
    "analysis": {"maxErrorRate": 0, "maxP95LatencyMs": GENEROUS_P95_MS},
}


def until(served: Served, what: str, check: Callable[[], T | None], timeout: float = BUILD_AND_ROLLOUT_SECONDS) -> T:
    """`check()`'s first truthy value, polled once a second; an AssertionError naming the conditions otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1.0)
    conditions = {c["type"]: (c["status"], c.get("reason"), c.get("message")) for c in served.conditions()}
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; conditions: {conditions}")


def deployment(served: Served, name: str) -> client.V1Deployment | None:
    try:
        return client.AppsV1Api(served.kube.api).read_namespaced_deployment(name, served.namespace)
    except exceptions.ApiException as error:
        if error.status == 404:
            return None
        raise


def engine_of(found: client.V1Deployment | None) -> str | None:
    if found is None:
        return None
    assert found.spec is not None and found.spec.template.metadata is not None, "a Deployment without a pod template"
    return str((found.spec.template.metadata.annotations or {})[labels.ENGINE_KEY_ANNOTATION])


def events(served: Served, reason: str) -> list[client.CoreV1Event]:
    found = served.kube.core.list_namespaced_event(served.namespace).items
    return [e for e in found if e.involved_object.name == served.name and e.reason == reason]


def is_canary_pod(served: Served, pod: str) -> bool:
    return pod.startswith(f"{names.canary(served.name)}-")


def canary_pods(served: Served) -> list[client.V1Pod]:
    """Every pod of the canary Deployment, terminating ones included."""
    selector = f"{labels.TRACK}=canary,app.kubernetes.io/instance={served.name}"
    found: list[client.V1Pod] = served.kube.core.list_namespaced_pod(served.namespace, label_selector=selector).items
    return found


def p95_in(message: str, template: str) -> float | None:
    """The p95 (to 0.1 ms) that `message` names wherever `template` says `<p95>`; None if the rest differs."""
    first, *rest = (re.escape(part) for part in template.split("<p95>"))
    groups = [r"(?P<p95>\d+\.\d)"] + [r"(?P=p95)"] * (len(rest) - 1)
    found = re.fullmatch(first + "".join(g + part for g, part in zip(groups, rest, strict=True)), message)
    return float(found["p95"]) if found else None


def serving_pods(served: Served) -> set[str]:
    return set(serving_engines(served))


def serving_engines(served: Served) -> dict[str, str]:
    """The model's ready Triton pods (stable and canary) and the engine each one runs."""
    found = local_serving.serving_pods(served.kube.bed, served.namespace, served.name)
    return {p["metadata"]["name"]: p["metadata"]["annotations"][labels.ENGINE_KEY_ANNOTATION] for p in found}


def answered_by(loop: ClientLoop, which: Callable[[str], bool]) -> int:
    return sum(count for pod, count in dict(loop.answered).items() if which(pod))


def keeps_answering(served: Served, loop: ClientLoop, which: Callable[[str], bool], more: int = 30) -> None:
    """Wait until pods that `which` picks answer `more` requests from now on: the loop still reaches them."""
    timeout = 60.0
    start = answered_by(loop, which)
    deadline = time.monotonic() + timeout
    while answered_by(loop, which) < start + more:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the pods answered {answered_by(loop, which) - start} of {more} requests in {timeout:.0f}s; "
                f"answers by pod {dict(loop.answered)}, last failures {loop.failures[-3:]}"
            )
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(
    with_crd: Any, operator_kubeconfig: pathlib.Path, process_kubelet: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    # Where Argo Rollouts' CRDs exist the canary is Argo's (test_canary_with_argo_rollouts installs them for a while).
    extensions = client.ApiextensionsV1Api(with_crd.api)

    def argo_absent() -> bool:
        try:
            extensions.read_custom_resource_definition(argo_rollout.ROLLOUT_CRD)
        except exceptions.ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    deadline = time.monotonic() + 180
    while not argo_absent():
        assert time.monotonic() < deadline, f"{argo_rollout.ROLLOUT_CRD} is installed: the canary would be Argo's"
        time.sleep(1.0)

    work = tmp_path_factory.mktemp("e2e-canary")
    namespace = f"e2e-canary-{uuid.uuid4().hex[:8]}"
    models, engines = demo.prepare_claims(work)
    with_crd.kubectl("create", "namespace", namespace)
    objects = claims.objects(demo.MODEL_CLAIM, models, namespace)
    objects += claims.objects(demo.STORE_CLAIM, engines, namespace)
    for body in objects:
        with_crd.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(body))
    env = {
        "KESTREL_ENGINE_STORE": f"pvc://{demo.STORE_CLAIM}/engines",
        "KESTREL_RESYNC_SECONDS": "1",
        "KESTREL_WATCH_NAMESPACES": namespace,
    }
    # kube-proxy's part: the canary analysis reads each canary pod's podIP:8002 through the address map.
    network = service_proxy.ServiceProxy(with_crd.api, work / "address-map.json", [namespace])
    running = operator_process.OperatorProcess(operator_kubeconfig, work / "logs", env, network).start()
    model = Served(with_crd, namespace, work, running)
    model.body["spec"]["rollout"] = {"strategy": "canary", "canary": CANARY}
    try:
        with_crd.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(model.body))
        first = keys.engine_key(specs.parse(model.body["spec"]))
        model.wait("the first revision to build, validate and serve", lambda: model.serving(first))
        yield model
    finally:
        with_crd.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False)
        running.stop()
        for claim in (demo.MODEL_CLAIM, demo.STORE_CLAIM):
            with_crd.kubectl("delete", "pv", f"{namespace}-{claim}", "--ignore-not-found", check=False)


def test_the_first_revision_rolls_out_directly(served: Served) -> None:
    status = served.get()["status"]
    first = status["revision"]["current"]
    assert "canary" not in status, "nothing serves yet that a canary could be compared with"
    rolling = [e.message for e in events(served, "RollingOut")]
    assert rolling == [f"Rolling out engine {first[:8]}: the first revision has nothing to compare a canary with"]
    assert deployment(served, names.canary(served.name)) is None


@pytest.mark.timeout(BUILD_AND_ROLLOUT_SECONDS + 300)
def test_a_canary_judged_on_its_own_tritons_metrics_is_promoted_without_a_failed_request(served: Served) -> None:
    first = served.get()["status"]["revision"]["current"]
    before = serving_pods(served)
    loop = ClientLoop(served)
    loop.start()
    try:
        new = served.patch_spec({"serving": {"triton": {"dynamicBatching": {"enabled": False}}}})
        assert new != first

        # Built and validated, the new engine runs on a canary pod beside the untouched stable one.
        def window() -> dict[str, Any] | None:
            body = served.get()
            found = body["status"].get("canary") or {}
            return body if found.get("revision") == new and found.get("stepStartedAt") else None

        windowed = until(served, "the canary's analysis window", window)
        status = windowed["status"]
        assert status["revision"]["current"] == first
        assert {k: status["canary"][k] for k in ("state", "step", "weight", "replicas")} == {
            "state": "Progressing",
            "step": 0,
            "weight": 50,
            "replicas": 1,
        }
        on_canary = deployment(served, names.canary(served.name))
        stable = deployment(served, names.triton(served.name))
        assert on_canary is not None and (engine_of(on_canary), on_canary.spec.replicas) == (new, 1)
        assert stable is not None and (engine_of(stable), stable.spec.replicas) == (first, 1)

        def promoted() -> dict[str, Any] | None:
            body = served.get()
            smoke = body["status"].get("serving", {}).get("smoke") or {}
            done = (
                (body["status"].get("canary") or {}).get("state") == "Promoted"
                and served.serving(new)
                and (smoke.get("revision"), smoke.get("passed")) == (new, True)
                and deployment(served, names.canary(served.name)) is None
                and not canary_pods(served)
            )
            return body if done else None

        done = until(served, "the promotion", promoted, WINDOW_SECONDS + BUILD_AND_ROLLOUT_SECONDS)
        serving = serving_engines(served)
        promoted_pods = {p for p, engine in serving.items() if engine == new and not is_canary_pod(served, p)}
        assert promoted_pods and set(serving.values()) == {new}, serving
        keeps_answering(served, loop, promoted_pods.__contains__)
    finally:
        loop.stop()

    assert not loop.failures, f"{len(loop.failures)} failed requests, first: {loop.failures[:3]}"
    old = set(loop.answered) & before
    on_canary_pods = {p for p in loop.answered if is_canary_pod(served, p)}
    assert old and on_canary_pods and set(loop.answered) & promoted_pods, loop.answered

    status = done["status"]
    assert status["revision"] == {"current": new, "previous": first}
    assert engine_of(deployment(served, names.triton(served.name))) == new
    assert served.condition("Degraded").get("status") == "False"
    # The window's numbers are the canary pod's own: no more requests than the loop sent it, none failed,
    # and a p95 that Triton's latency summary reported (it is absent from /metrics without the bound).
    analysis = status["canary"]["analysis"]
    canary_answered = answered_by(loop, on_canary_pods.__contains__)
    assert analysis["passed"] is True and analysis["failures"] == 0 and analysis["errorRate"] == 0, analysis
    assert 0 < analysis["requests"] <= canary_answered, (analysis, canary_answered)
    assert 0 < analysis["p95Ms"] < GENEROUS_P95_MS, analysis

    (passed,) = events(served, canary.STEP_PASSED)
    assert passed.message is not None, "an Event without a message"
    said = p95_in(
        passed.message,
        f"Canary of engine {new[:8]} passed step 1/2, 50%: {analysis['requests']} requests, 0 failed "
        "(error rate 0.0000), p95 <p95> ms: within the bounds",
    )
    assert said is not None and abs(said - analysis["p95Ms"]) <= 0.051, (passed.message, analysis)
    assert [e.message for e in events(served, canary.PROMOTED)] == [
        f"Engine {new[:8]} passed every canary step and serves from the stable Deployment"
    ]
    assert len(events(served, canary.PROMOTING)) == 1
    for reason in (canary.ANALYSIS_FAILED, canary.NOT_AVAILABLE, canary.ABORTED, canary.RESTARTED):
        assert events(served, reason) == [], reason


@pytest.mark.timeout(BUILD_AND_ROLLOUT_SECONDS + 300)
def test_a_canary_that_fails_its_analysis_is_rolled_back_and_the_stable_keeps_serving(served: Served) -> None:
    stable = served.get()["status"]["revision"]["current"]
    before = serving_pods(served)
    assert before and not any(is_canary_pod(served, p) for p in before)
    loop = ClientLoop(served)
    loop.start()
    try:
        # Batching back on: the first revision's engine, whose finished build Job is still there, so no build.
        bad = served.patch_spec(
            {
                "serving": {"triton": {"dynamicBatching": {"enabled": True}}},
                "rollout": {"canary": {"analysis": {"maxP95LatencyMs": IMPOSSIBLE_P95_MS}}},
            }
        )
        assert bad != stable

        def rolled_back() -> dict[str, Any] | None:
            body = served.get()
            degraded = served.condition("Degraded")
            done = (
                (body["status"].get("revision") or {}).get("failed") == bad
                and degraded.get("reason") == canary.ANALYSIS_FAILED
                and deployment(served, names.canary(served.name)) is None
                and not canary_pods(served)
            )
            return body if done else None

        done = until(served, "the failed canary's rollback", rolled_back)
        after = serving_engines(served)
        assert after and set(after.values()) == {stable}, after
        assert not any(is_canary_pod(served, p) for p in after), after
        # No canary pod is left: what answers now is the stable Deployment (its pods may roll, see below).
        keeps_answering(served, loop, lambda pod: not is_canary_pod(served, pod))
        assert set(serving_engines(served).values()) == {stable}
        # Passes went by meanwhile (one a second): none started the failed revision's canary again.
        assert deployment(served, names.canary(served.name)) is None and not canary_pods(served)
    finally:
        loop.stop()

    assert not loop.failures, f"{len(loop.failures)} failed requests, first: {loop.failures[:3]}"
    on_canary_pods = {p for p in loop.answered if is_canary_pod(served, p)}
    assert on_canary_pods and set(loop.answered) & before, loop.answered
    # Pods, not only the revision, may change meanwhile: the stable template takes engine facts (load time, size)
    # from status.engine, which moves to the canary's engine (workload.engine_facts), so the stable pods roll.
    assert engine_of(deployment(served, names.triton(served.name))) == stable
    assert served.condition("Available").get("status") == "True"

    status = done["status"]
    assert (status["revision"]["current"], status["revision"]["failed"]) == (stable, bad)
    found = status["canary"]
    assert (found["revision"], found["state"], found["replicas"]) == (bad, "Failed", 0)
    # Failed on what the real canary reported: requests it answered, none failed, a p95 far above 10 µs.
    analysis = found["analysis"]
    assert analysis["passed"] is False and analysis["failures"] == 0, analysis
    assert 0 < analysis["requests"] <= answered_by(loop, on_canary_pods.__contains__), analysis
    assert analysis["p95Ms"] > IMPOSSIBLE_P95_MS, analysis

    degraded = served.condition("Degraded")
    assert degraded["status"] == "True"
    head = f"Canary of engine {bad[:8]} failed (step 1/2, 50%: {analysis['requests']} requests, 0 failed "
    said = p95_in(
        degraded["message"],
        f"{head}(error rate 0.0000), p95 <p95> ms: p95 latency <p95> ms > maxP95LatencyMs {IMPOSSIBLE_P95_MS}); "
        f"engine {stable[:8]} keeps serving",
    )
    assert said is not None and abs(said - analysis["p95Ms"]) <= 0.051, (degraded["message"], analysis)
    (warning,) = events(served, canary.ANALYSIS_FAILED)
    assert (warning.type, warning.message) == ("Warning", degraded["message"])
    assert not [e for e in events(served, canary.STEP_PASSED) if e.message and bad[:8] in e.message]
