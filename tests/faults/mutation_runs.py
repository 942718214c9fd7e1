"""The schema mutations on the test bed: each generated case (tests/faults/mutations.py) judged by Acto's oracle.

- **rejected** (admission): the mutated spec is sent as a server-side dry run (`dryRun=All`, strict field
  validation), which the API server validates fully without storing; it must be refused with a message naming the
  field (`Case.fields`). Heavy valid specs (hundreds of replicas on the shared test bed) are dry-run too, and must be
  admitted.
- **valid**: the spec of a Ready cache-hit model is replaced by the mutated one; the operator must catch up
  (`observedGeneration`), with no condition saying an exception, and keep running with no Traceback in its log.
  A spec with another engine key starts a build Job that never finishes on kwok: Built must say so, and the serving
  Deployment must be left as it was (the old revision keeps serving). An admitted spec the operator cannot carry out
  (a field the schema does not check, say a resource quantity) must be refused with a condition naming the field.
- **back**: the base spec is restored and the namespace must return to the base's end state (tests/faults/oracle.py,
  without the Events, which are history): nothing left behind, no build Job still running.

Workers run side by side, each on its own namespace and model, all watched by one operator (KESTREL_RESYNC_SECONDS=1).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import queue
import threading
import time
import uuid
from typing import Any

from kubernetes import client

from kestrel.api import crd, keys, spec
from kestrel.manifests import names
from kestrel.storage import layout, s3
from tests.cluster.engine_store_support import StoreBed, credentials_secret, signing_pair
from tests.cluster_fixtures import OPERATOR_NAMESPACE, Operator
from tests.faults import campaign, mutations, oracle

MODEL = campaign.MODEL
CATCH_UP_S = 30.0
BACK_S = 30.0
ERROR_WORDS = ("ReconcileError", "Traceback", "Exception")


@dataclasses.dataclass
class Judged:
    """One case's verdict; `converged` is Acto's pass (the oracle found nothing)."""

    name: str
    expected: str
    namespace: str = ""
    outcome: str = ""  # rejected | admitted | converged | building | refused
    converged: bool = False
    converge_s: float | None = None
    back_s: float | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    def as_campaign_case(self) -> campaign.Case:
        """The shape results.record() counts."""
        return campaign.Case(
            self.name,
            self.namespace,
            struck=True,
            converged=self.converged,
            converge_s=self.converge_s,
            differences=self.problems,
        )


def _message(error: client.ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", error.body))
    except ValueError:
        return str(error.body)


def admission(kube: Any, namespace: str, case: mutations.Case) -> Judged:
    """A server-side dry run of the mutated spec, as a create (the CRD has no transition rules, so a create and an
    update of the base are validated alike)."""
    judged = Judged(case.name, case.verdict, namespace)
    body = {"apiVersion": crd.API_VERSION, "kind": crd.KIND, "metadata": {"name": "dry"}, "spec": case.spec()}
    try:
        kube.custom.create_namespaced_custom_object(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, body, dry_run="All", field_validation="Strict"
        )
    except client.ApiException as error:
        judged.outcome = "rejected"
        message = _message(error)
        if case.verdict != "rejected":
            judged.problems.append(f"refused at admission ({error.status}): {message}")
        elif error.status not in (400, 422):
            judged.problems.append(f"refused with HTTP {error.status}, not 400/422: {message}")
        elif not any(field in message for field in case.fields):
            judged.problems.append(f"the refusal does not name {' or '.join(case.fields)}: {message}")
    else:
        judged.outcome = "admitted"
        if case.verdict == "rejected":
            judged.problems.append(f"admitted; expected a refusal naming {' or '.join(case.fields)}")
    judged.converged = not judged.problems
    return judged


class Worker:
    """One namespace with a Ready cache-hit model, mutated and restored case after case."""

    def __init__(self, kube: Any, store: s3.S3Store, connection: Any, work: pathlib.Path, prefix: str) -> None:
        self.kube = kube
        self.namespace = f"m-{uuid.uuid4().hex[:8]}"
        kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        self.store = store
        kube.create_mdep(self.namespace, MODEL, mutations.BASE)
        publisher = StoreBed(None, store, connection, prefix, self.namespace, work / self.namespace)  # type: ignore[arg-type]
        base_key = keys.engine_key(spec.parse(mutations.BASE))
        publisher.publish(MODEL, base_key, signing_pair(kube, self.namespace, MODEL))
        self.base: oracle.EndState | None = None
        self.deployment = names.triton(MODEL)

    def model(self) -> dict[str, Any]:
        found = self.kube.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, MODEL)
        return found if isinstance(found, dict) else {}

    def ready(self) -> bool:
        conditions = (self.model().get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def capture(self) -> oracle.EndState:
        state = oracle.capture(self.kube, self.namespace, MODEL, self.store)
        return dataclasses.replace(state, event_reasons=frozenset())  # Events are history, not state

    def settle_base(self) -> None:
        state = self.capture()
        for _ in range(20):
            time.sleep(0.5)
            again = self.capture()
            if again == state:
                break
            state = again
        self.base = state

    def replace_spec(self, raw: dict[str, Any]) -> int:
        """Replace the model's spec (retrying a conflict with the operator's status writes); the new generation."""
        for _ in range(20):
            body = self.model()
            body["spec"] = raw
            try:
                stored = self.kube.custom.replace_namespaced_custom_object(
                    crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, MODEL, body, field_validation="Strict"
                )
            except client.ApiException as error:
                if error.status == 409:
                    continue
                raise
            return int(stored["metadata"]["generation"])
        raise AssertionError(f"{self.namespace}: the spec could not be replaced for 20 conflicts in a row")

    def caught_up(self, generation: int) -> dict[str, Any] | None:
        """The model's status once the operator has observed `generation` and its status stopped changing."""
        deadline = time.monotonic() + CATCH_UP_S
        last: Any = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            status = self.model().get("status") or {}
            if (status.get("observedGeneration") or 0) >= generation:
                seen = [status.get("conditions"), status.get("revision")]
                if seen != last:
                    last, since = seen, time.monotonic()
                elif time.monotonic() - since >= 1.0:
                    return dict(status)
            time.sleep(0.2)
        return None

    def deployment_generation(self) -> int | None:
        try:
            found = client.AppsV1Api(self.kube.api).read_namespaced_deployment(self.deployment, self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return int(found.metadata.generation) if found.metadata is not None and found.metadata.generation else None

    def run(self, case: mutations.Case, operator: Operator, log_at: list[int]) -> Judged:
        judged = Judged(case.name, case.verdict, self.namespace)
        field = mutations.field_path(case.mutation.path)
        before = self.model().get("status") or {}
        deployment = self.deployment_generation()
        started = time.monotonic()
        try:
            generation = self.replace_spec(case.spec())
        except client.ApiException as error:
            judged.outcome = "rejected"
            judged.problems.append(f"a valid spec was refused ({error.status}): {_message(error)}")
            return judged
        status = self.caught_up(generation)
        if status is None:
            judged.problems.append(f"observedGeneration did not reach {generation} within {CATCH_UP_S:.0f}s")
            status = self.model().get("status") or {}
        else:
            judged.converge_s = round(time.monotonic() - started, 2)
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        for condition in conditions.values():
            said = f"{condition.get('reason')} {condition.get('message')}"
            if any(word in said for word in ERROR_WORDS):
                judged.problems.append(f"{condition['type']} says an exception: {said}")
        refusals = [c for c in conditions.values() if c["status"] != "True" and field in str(c.get("message"))]
        built = conditions.get("Built") or {}
        if refusals:
            judged.outcome = "refused"
            if self.deployment_generation() != deployment:
                judged.problems.append("refused by the operator, but the serving Deployment was changed")
        elif case.key_changes:
            judged.outcome = "building"
            if built.get("status") != "False" or "Build Job" not in str(built.get("message")):
                judged.problems.append(f"another engine key, but Built says {built}")
            if self.deployment_generation() != deployment:
                judged.problems.append("the serving Deployment changed before the new engine was built")
            if (status.get("revision") or {}).get("current") != (before.get("revision") or {}).get("current"):
                judged.problems.append("the current revision changed before the new engine was built")
        else:
            judged.outcome = "converged"
        judged.problems.extend(self._operator_health(operator, log_at))
        judged.back_s, back_problems = self.back()
        judged.problems.extend(back_problems)
        judged.problems.extend(self._operator_health(operator, log_at))
        judged.converged = not judged.problems
        return judged

    def back(self) -> tuple[float | None, list[str]]:
        """Restore the base spec; the end state must return to the base's."""
        assert self.base is not None
        started = time.monotonic()
        generation = self.replace_spec(mutations.BASE)
        if self.caught_up(generation) is None:
            return None, [f"back: observedGeneration did not reach {generation} within {CATCH_UP_S:.0f}s"]
        deadline = time.monotonic() + BACK_S
        state = self.capture()
        while state != self.base and time.monotonic() < deadline:
            time.sleep(0.5)
            state = self.capture()
        if state != self.base:
            return None, [f"back: {difference}" for difference in state.differences(self.base)]
        return round(time.monotonic() - started, 2), []

    @staticmethod
    def _operator_health(operator: Operator, log_at: list[int]) -> list[str]:
        problems = [] if operator.running() else ["the operator died"]
        with log_at_lock:
            log = operator.log()
            fresh, log_at[0] = log[log_at[0] :], len(log)
        if "Traceback" in fresh:
            problems.append(f"the operator logged a Traceback: {fresh[fresh.index('Traceback') :][:1500]}")
        return problems


log_at_lock = threading.Lock()


def run_valid(
    kube: Any, operator_kubeconfig: pathlib.Path, connection: Any, work: pathlib.Path, cases: list[mutations.Case]
) -> list[Judged]:
    """The valid cases on `WORKERS` models side by side, one operator watching them all."""
    prefix = f"m-{uuid.uuid4().hex[:8]}"
    uri = f"s3://{connection.bucket}/{prefix}"
    store = s3.S3Store(layout.parse_store_uri(uri), s3.Credentials.load(None, connection.environment()))
    secret = f"store-{prefix}"
    credentials_secret(kube, secret, connection)
    workers = [Worker(kube, store, connection, work, secret) for _ in range(WORKERS)]
    env = {"KESTREL_ENGINE_STORE": uri, "KESTREL_STORE_CREDENTIALS_SECRET": secret, "KESTREL_RESYNC_SECONDS": "1"}
    watched = ",".join(w.namespace for w in workers)
    operator = Operator(kube, operator_kubeconfig, work / "operator", watched, env)
    operator.start()
    try:
        if not campaign.wait(lambda: all(w.ready() for w in workers), campaign.FIRST_READY_S):
            raise AssertionError(f"the base models did not reach Ready:\n{operator.log()[-3000:]}")
        for worker in workers:
            worker.settle_base()
        todo: queue.Queue[mutations.Case] = queue.Queue()
        for case in cases:
            todo.put(case)
        judged: list[Judged] = []
        log_at = [len(operator.log())]

        def work_through(worker: Worker) -> None:
            while True:
                try:
                    case = todo.get_nowait()
                except queue.Empty:
                    return
                judged.append(worker.run(case, operator, log_at))

        threads = [threading.Thread(target=work_through, args=(w,), daemon=True) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return judged
    finally:
        operator.stop()
        for worker in workers:
            kube.core.delete_namespace(worker.namespace)
        kube.core.delete_namespaced_secret(secret, OPERATOR_NAMESPACE)


WORKERS = 4
