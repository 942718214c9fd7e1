"""The fault campaign's runner: one scenario, one fault, a namespace and an operator of its own, judged by the oracle.

Each case gets a fresh namespace, its own store prefix (`s3://engines/<namespace>`) and credentials Secret, and a
fresh operator (`kestrel run` under the chart's RBAC, watching that namespace only) whose every request goes through
a `FaultProxy`. The scenario's `prepare` runs before the operator starts; the fault is armed; the operator starts;
once the fault has struck (or the scenario finished without it striking) the proxy stops faulting and, if the
operator was killed, a new one is started, as a Deployment's pod would be. The case converges when the scenario's
`done` holds and the oracle's end state equals the fault-free run's; it fails when that has not happened within
`CONVERGE_S` of the fault, and says what differs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from kubernetes import client

from kestrel.api import crd, keys, spec
from kestrel.manifests import names
from kestrel.storage import layout, s3
from testbed import fault_proxy, minio
from tests.cluster.engine_store_support import StoreBed, credentials_secret, signing_pair
from tests.cluster_fixtures import OPERATOR_NAMESPACE, Cluster, Operator
from tests.faults import oracle
from tests.unit.spec_support import UNMEASURED

MODEL = "cams"
CONVERGE_S = 120.0  # issue 20: converge within 2 minutes of the fault
FIRST_READY_S = 90.0


def updated_spec() -> dict[str, Any]:
    """The spec update of the update scenario: a change of the engine (its batch size), so a new revision."""
    raw = model_spec()
    raw["engine"] = {**raw["engine"], "batch": {"max": 4}}
    return raw


def model_spec() -> dict[str, Any]:
    """A cache-hit model on the test bed's kwok CPU nodes (kwok marks its pods ready); accuracy is not what the
    campaign checks."""
    return {
        "model": {"source": {"uri": "file:///models/shapes.pt"}, "imgsz": 320},
        "validation": UNMEASURED,
        "engine": {"format": "onnx"},
        "target": {"environment": "cpu"},
    }


@dataclasses.dataclass
class Case:
    """One run: what it did and what it found."""

    name: str
    namespace: str
    writes_before_fault: int = 0
    struck: bool = False
    restarted: bool = False
    converged: bool = False
    converge_s: float | None = None
    differences: list[str] = dataclasses.field(default_factory=list)
    regenerated: list[str] = dataclasses.field(default_factory=list)
    proxy_log: str = ""


@dataclasses.dataclass
class Bed:
    """What every case shares: the test bed, the operator's kubeconfig (its token), MinIO, a folder for logs."""

    kube: Cluster
    operator_kubeconfig: pathlib.Path
    connection: minio.Connection
    work: pathlib.Path

    def token(self) -> str:
        return str(yaml.safe_load(self.operator_kubeconfig.read_text())["users"][0]["user"]["token"])


class Run:
    """One case's namespace, store, proxy and operator; `close()` removes what it made."""

    def __init__(self, bed: Bed, label: str) -> None:
        self.bed = bed
        self.kube = bed.kube
        self.namespace = f"f-{uuid.uuid4().hex[:8]}"
        self.kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        self.secret = f"store-{self.namespace}"
        uri = f"s3://{bed.connection.bucket}/{self.namespace}"
        self.work = bed.work / label
        self.proxy = fault_proxy.FaultProxy.for_kubeconfig(bed.kube.bed.kubeconfig).start()
        kubeconfig = self.proxy.kubeconfig(self.work / "kubeconfig", bed.token())
        self.operator = Operator(
            bed.kube,
            kubeconfig,
            self.work / "operator",
            self.namespace,
            {"KESTREL_ENGINE_STORE": uri, "KESTREL_STORE_CREDENTIALS_SECRET": self.secret},
        )
        engines = s3.S3Store(layout.parse_store_uri(uri), s3.Credentials.load(None, bed.connection.environment()))
        self.store = StoreBed(self.operator, engines, bed.connection, self.secret, self.namespace, self.work)
        self.pausing: threading.Thread | None = None
        self.renewed_from: str | None = None
        self.rolled_from: int | None = None

    def create_cache_hit(self) -> None:
        """The model, its signing pair and its engine in the store, before any operator runs."""
        raw = model_spec()
        self.kube.create_mdep(self.namespace, MODEL, raw)
        self.store.publish(MODEL, keys.engine_key(spec.parse(raw)), signing_pair(self.kube, self.namespace, MODEL))
        credentials_secret(self.kube, self.secret, self.bed.connection)

    def publish_update(self) -> None:
        """The engine of the updated spec too, so that the update is a cache hit (no build on kwok)."""
        signer = self.store_signer()
        self.store.publish(MODEL, keys.engine_key(spec.parse(updated_spec())), signer)

    def store_signer(self) -> ed25519.Ed25519PrivateKey:
        secret = self.kube.core.read_namespaced_secret(names.signing_secret(MODEL), self.namespace)
        pem = base64.b64decode((secret.data or {})["signing.key"])
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key

    def update(self) -> None:
        patch = {"spec": updated_spec()}
        custom = self.kube.custom
        custom.patch_namespaced_custom_object(crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, MODEL, patch)

    def delete(self) -> None:
        self.kube.custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, MODEL)

    def model(self) -> dict[str, Any]:
        try:
            body = self.kube.custom.get_namespaced_custom_object(
                crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, MODEL
            )
        except client.ApiException as error:
            if error.status == 404:
                return {}
            raise
        return body if isinstance(body, dict) else {}

    def renew_certificate(self) -> None:
        """The runbook's "issue a new server certificate now": delete the Secret (docs/runbooks.md)."""
        self.renewed_from = self.certificate()
        self.rolled_from = self.triton_generation(complete=False)
        self.kube.core.delete_namespaced_secret(names.tls_secret(MODEL), self.namespace)

    def triton_generation(self, *, complete: bool = True) -> int | None:
        """The Triton Deployment's generation (with `complete`, only once its rollout is complete: None while it
        rolls); None when it is absent."""
        try:
            found = client.AppsV1Api(self.kube.api).read_namespaced_deployment(names.triton(MODEL), self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        meta, status, wanted = found.metadata, found.status, (found.spec.replicas if found.spec else None) or 1
        if meta is not None and not complete:
            return meta.generation
        if meta is None or status is None or status.observed_generation != meta.generation:
            return None
        done = (status.updated_replicas or 0) == wanted and (status.available_replicas or 0) >= wanted
        return meta.generation if done else None

    def certificate(self) -> str | None:
        try:
            secret = self.kube.core.read_namespaced_secret(names.tls_secret(MODEL), self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        found = (secret.data or {}).get("tls.crt")
        return None if found is None else str(found)

    def renewed(self) -> bool:
        """A new certificate, and the pods rolled onto it (the Deployment's template changed and its rollout is
        complete), and the model Ready."""
        found = self.certificate()
        if found is None or found == self.renewed_from or not self.ready():
            return False
        generation = self.triton_generation()
        return generation is not None and self.rolled_from is not None and generation > self.rolled_from

    def gone(self) -> bool:
        return not self.model()

    def rolled_out(self) -> bool:
        revision = (self.model().get("status") or {}).get("revision") or {}
        return self.ready() and revision.get("current") == keys.engine_key(spec.parse(updated_spec()))

    def ready(self) -> bool:
        conditions = (self.model().get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def pause_etcd(self, seconds: float) -> None:
        """etcd stopped for `seconds` (SIGSTOP, then SIGCONT), said in the proxy's log."""
        self.proxy.note(f"etcd stopped for {seconds:.0f}s")
        self.pausing = self.kube.bed.pause("etcd", seconds)

    def paused(self) -> bool:
        return self.pausing is not None and self.pausing.is_alive()

    def capture(self) -> oracle.EndState:
        return oracle.capture(self.kube, self.namespace, MODEL, self.store.store)

    def close(self) -> None:
        self.operator.stop()
        self.proxy.stop()
        for name, namespace in ((self.secret, OPERATOR_NAMESPACE),):
            try:
                self.kube.core.delete_namespaced_secret(name, namespace)
            except client.ApiException as error:
                if error.status != 404:
                    raise
        self.kube.core.delete_namespace(self.namespace)


def wait(check: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


Arm = Callable[["Run"], None]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """What a case does: `prepare` before the operator starts, then (when `act` is set) waits for Ready without a
    fault and calls `act`; the fault is armed just before `act` (or before the start), and `done` says when the
    scenario has reached its end."""

    name: str
    prepare: Callable[[Run], None]
    done: Callable[[Run], bool]
    act: Callable[[Run], None] | None = None


def _update(run: Run) -> None:
    # Published now, not before the start: the first rollout collects the model's engines other than the one it
    # serves (reconcilers/engine/garbage.py), and one published beforehand would go with them.
    run.publish_update()
    run.update()


CREATE = Scenario("create->Ready", Run.create_cache_hit, Run.ready)
UPDATE = Scenario("update->rolled out", Run.create_cache_hit, Run.rolled_out, _update)
DELETE = Scenario("delete->collected", Run.create_cache_hit, Run.gone, Run.delete)
RENEW = Scenario("certificate renewal->rolled out", Run.create_cache_hit, Run.renewed, Run.renew_certificate)
SCENARIOS = (CREATE, UPDATE, DELETE, RENEW)


def fault_free(bed: Bed, scenario: Scenario = CREATE) -> tuple[oracle.EndState, int]:
    """The oracle's end state of `scenario`, and how many writes the operator made in it (after Ready, for a
    scenario that acts once Ready) until its end."""
    run = Run(bed, f"fault-free-{scenario.name.split('->')[0]}")
    try:
        scenario.prepare(run)
        run.operator.start()
        start = _act(run, scenario)
        if not wait(lambda: scenario.done(run), FIRST_READY_S):
            raise AssertionError(f"the fault-free run of {scenario.name} did not end:\n{run.operator.log()[-3000:]}")
        writes = run.proxy.writes - start
        state = settled(run)
        return state, writes
    finally:
        run.close()


def _act(run: Run, scenario: Scenario, arm: Arm | None = None) -> int:
    """Wait for Ready without a fault, arm the fault, act; the write count where the scenario's own part began."""
    if scenario.act is None:
        return 0
    if not wait(run.ready, FIRST_READY_S):
        raise AssertionError(f"{scenario.name}: the model was not Ready before the act:\n{run.operator.log()[-3000:]}")
    start = run.proxy.writes
    if arm is not None:
        arm(run)
    scenario.act(run)
    return start


def settled(run: Run, expected: oracle.EndState | None = None, timeout: float = 30.0) -> oracle.EndState:
    """The end state once two captures a second apart agree (and, given `expected`, equal it), or the last one."""
    deadline = time.monotonic() + timeout
    state = run.capture()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        again = run.capture()
        if again == state and (expected is None or not again.differences(expected)):
            return again
        state = again
    return state


def fault_case(
    bed: Bed,
    expected: oracle.EndState,
    name: str,
    label: str,
    arm: Arm,
    heal_after: float = 0.0,
    scenario: Scenario = CREATE,
) -> Case:
    """`scenario` with a fault `arm` sets up before the operator starts (or, for a scenario that acts once Ready,
    just before it acts). The fault has struck when the operator died (it is then started again, as its Deployment
    would), or when the proxy's log says it acted; faults that last (stale reads, an outage) are lifted
    `heal_after` seconds after the start at the latest. The case converges when the scenario is done and the
    oracle's end state equals the fault-free run's within CONVERGE_S of the fault."""
    run = Run(bed, label)
    case = Case(f"{scenario.name}, {name}", run.namespace)
    try:
        scenario.prepare(run)
        if scenario.act is None:
            arm(run)
        run.operator.start()
        armed_at = _act(run, scenario, arm)  # the write count the fault's N counts from
        started = time.monotonic()

        def faulted() -> bool:  # the proxy says what it did once it is done (fault_proxy.FaultProxy.actions)
            return any(not a.what.startswith("write ") for a in run.proxy.actions)

        wait(lambda: not run.operator.running() or scenario.done(run) or faulted(), 60.0)
        if heal_after:
            time.sleep(max(0.0, heal_after - (time.monotonic() - started)))
        wait(lambda: not run.proxy.refusing() and not run.paused(), 60.0)  # an outage runs its whole length
        case.writes_before_fault = run.proxy.writes - armed_at
        before = oracle.generated(bed.kube, run.namespace)
        healed = time.monotonic()
        run.proxy.clear()
        case.struck = not run.operator.running() or any(not a.what.startswith("write ") for a in run.proxy.actions)
        if not run.operator.running():
            run.operator.start()
            case.restarted = True
        converged = wait(lambda: scenario.done(run), CONVERGE_S)
        state = settled(run, expected, timeout=max(5.0, CONVERGE_S - (time.monotonic() - healed)))
        case.differences = state.differences(expected) if converged else ["never done", *state.differences(expected)]
        after = oracle.generated(bed.kube, run.namespace)
        case.regenerated = sorted(name for name, digest in before.items() if after.get(name) not in (None, digest))
        case.converged = converged and not case.differences and not case.regenerated
        case.converge_s = round(time.monotonic() - healed, 1) if case.converged else None
        case.proxy_log = run.proxy.log_text()
        return case
    finally:
        (run.work / "case.json").write_text(json.dumps(dataclasses.asdict(case), indent=2, default=str))
        run.close()


def crash_case(bed: Bed, expected: oracle.EndState, crash_at: int, scenario: Scenario = CREATE) -> Case:
    """The operator killed right after its `crash_at`-th write, before it sees the answer; then started again."""

    def arm(run: Run) -> None:
        run.proxy.after_write(crash_at, run.operator.kill)

    label = f"crash-{scenario.name.split('->')[0]}-{crash_at:02d}"
    return fault_case(bed, expected, f"crash after write {crash_at}", label, arm, scenario=scenario)


def dropped_event_case(bed: Bed, expected: oracle.EndState, resource: str, index: int) -> Case:
    """The `index`-th event of the operator's watch on `resource` never reaches it."""

    def arm(run: Run) -> None:
        run.proxy.drop_event(resource, index)

    name = f"watch event {index} of {resource} dropped"
    return fault_case(bed, expected, name, f"drop-{resource}-{index}", arm)


def stale_reads_case(bed: Bed, expected: oracle.EndState, age: float, lasting: float) -> Case:
    """Every read the operator makes during its first `lasting` seconds is answered from a snapshot `age` s old
    where one exists."""

    def arm(run: Run) -> None:
        run.proxy.stale_reads(age)

    name = f"reads {age:.0f}s stale for {lasting:.0f}s"
    return fault_case(bed, expected, name, f"stale-{age:.0f}", arm, heal_after=lasting)


def outage_case(bed: Bed, expected: oracle.EndState, after: int, seconds: float) -> Case:
    """The API server unreachable for `seconds`, from the operator's `after`-th write on (that write unanswered)."""

    def arm(run: Run) -> None:
        run.proxy.after_write(after, lambda: run.proxy.refuse(seconds))

    name = f"API server unreachable {seconds:.0f}s from write {after}"
    return fault_case(bed, expected, name, f"outage-{after:02d}", arm, heal_after=seconds + 1)


def etcd_outage_case(bed: Bed, expected: oracle.EndState, after: int, seconds: float) -> Case:
    """etcd stopped for `seconds` from the operator's `after`-th write on (that write answered as usual)."""

    def arm(run: Run) -> None:
        run.proxy.after_write(after, lambda: run.pause_etcd(seconds), answer=True)

    name = f"etcd stopped {seconds:.0f}s from write {after}"
    return fault_case(bed, expected, name, f"etcd-{after:02d}", arm, heal_after=seconds + 1)
