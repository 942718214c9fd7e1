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

import dataclasses
import json
import pathlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import client

from kestrel.api import crd, keys, spec
from kestrel.storage import layout, s3
from testbed import fault_proxy, minio
from tests.cluster.engine_store_support import StoreBed, credentials_secret, signing_pair
from tests.cluster_fixtures import OPERATOR_NAMESPACE, Cluster, Operator
from tests.faults import oracle
from tests.unit.spec_support import UNMEASURED

MODEL = "cams"
CONVERGE_S = 120.0  # issue 20: converge within 2 minutes of the fault
FIRST_READY_S = 90.0


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

    def create_cache_hit(self) -> None:
        """The model, its signing pair and its engine in the store, before any operator runs."""
        raw = model_spec()
        self.kube.create_mdep(self.namespace, MODEL, raw)
        self.store.publish(MODEL, keys.engine_key(spec.parse(raw)), signing_pair(self.kube, self.namespace, MODEL))
        credentials_secret(self.kube, self.secret, self.bed.connection)

    def model(self) -> dict[str, Any]:
        body = self.kube.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, MODEL)
        return body if isinstance(body, dict) else {}

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


def fault_free(bed: Bed) -> tuple[oracle.EndState, int]:
    """The oracle's end state of create -> Ready, and how many writes the operator made until Ready."""
    run = Run(bed, "fault-free")
    try:
        run.create_cache_hit()
        run.operator.start()
        if not wait(run.ready, FIRST_READY_S):
            raise AssertionError(f"the fault-free run did not reach Ready:\n{run.operator.log()[-3000:]}")
        writes = run.proxy.writes
        state = settled(run)
        return state, writes
    finally:
        run.close()


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


Arm = Callable[["Run"], None]


def fault_case(bed: Bed, expected: oracle.EndState, name: str, label: str, arm: Arm, heal_after: float = 0.0) -> Case:
    """create -> Ready with a fault `arm` sets up before the operator starts. The fault has struck when the operator
    died (it is then started again, as its Deployment would), or when the proxy's log says it acted; faults that
    last (stale reads, an outage) are lifted `heal_after` seconds after the operator's start at the latest. The case
    converges when Ready and the oracle's end state equal the fault-free run's within CONVERGE_S of the fault."""
    run = Run(bed, label)
    case = Case(name, run.namespace)
    try:
        run.create_cache_hit()
        arm(run)
        run.operator.start()
        started = time.monotonic()
        wait(lambda: not run.operator.running() or run.ready() or len(run.proxy.actions) > run.proxy.writes, 60.0)
        if heal_after:
            time.sleep(max(0.0, heal_after - (time.monotonic() - started)))
        wait(lambda: not run.proxy.refusing() and not run.paused(), 60.0)  # an outage runs its whole length
        case.writes_before_fault = run.proxy.writes
        before = oracle.generated(bed.kube, run.namespace)
        healed = time.monotonic()
        run.proxy.clear()
        case.struck = not run.operator.running() or any(not a.what.startswith("write ") for a in run.proxy.actions)
        if not run.operator.running():
            run.operator.start()
            case.restarted = True
        converged = wait(run.ready, CONVERGE_S)
        state = settled(run, expected, timeout=max(5.0, CONVERGE_S - (time.monotonic() - healed)))
        case.differences = state.differences(expected) if converged else ["never Ready", *state.differences(expected)]
        after = oracle.generated(bed.kube, run.namespace)
        case.regenerated = sorted(name for name, digest in before.items() if after.get(name) not in (None, digest))
        case.converged = converged and not case.differences and not case.regenerated
        case.converge_s = round(time.monotonic() - healed, 1) if case.converged else None
        case.proxy_log = run.proxy.log_text()
        return case
    finally:
        (run.work / "case.json").write_text(json.dumps(dataclasses.asdict(case), indent=2, default=str))
        run.close()


def crash_case(bed: Bed, expected: oracle.EndState, crash_at: int) -> Case:
    """The operator killed right after its `crash_at`-th write, before it sees the answer; then started again."""

    def arm(run: Run) -> None:
        run.proxy.after_write(crash_at, run.operator.kill)

    return fault_case(bed, expected, f"create->Ready, crash after write {crash_at}", f"crash-{crash_at:02d}", arm)


def dropped_event_case(bed: Bed, expected: oracle.EndState, resource: str, index: int) -> Case:
    """The `index`-th event of the operator's watch on `resource` never reaches it."""

    def arm(run: Run) -> None:
        run.proxy.drop_event(resource, index)

    name = f"create->Ready, watch event {index} of {resource} dropped"
    return fault_case(bed, expected, name, f"drop-{resource}-{index}", arm)


def stale_reads_case(bed: Bed, expected: oracle.EndState, age: float, lasting: float) -> Case:
    """Every read the operator makes during its first `lasting` seconds is answered from a snapshot `age` s old
    where one exists."""

    def arm(run: Run) -> None:
        run.proxy.stale_reads(age)

    name = f"create->Ready, reads {age:.0f}s stale for {lasting:.0f}s"
    return fault_case(bed, expected, name, f"stale-{age:.0f}", arm, heal_after=lasting)


def outage_case(bed: Bed, expected: oracle.EndState, after: int, seconds: float) -> Case:
    """The API server unreachable for `seconds`, from the operator's `after`-th write on (that write unanswered)."""

    def arm(run: Run) -> None:
        run.proxy.after_write(after, lambda: run.proxy.refuse(seconds))

    name = f"create->Ready, API server unreachable {seconds:.0f}s from write {after}"
    return fault_case(bed, expected, name, f"outage-{after:02d}", arm, heal_after=seconds + 1)


def etcd_outage_case(bed: Bed, expected: oracle.EndState, after: int, seconds: float) -> Case:
    """etcd stopped for `seconds` from the operator's `after`-th write on (that write answered as usual)."""

    def arm(run: Run) -> None:
        run.proxy.after_write(after, lambda: run.pause_etcd(seconds), answer=True)

    name = f"create->Ready, etcd stopped {seconds:.0f}s from write {after}"
    return fault_case(bed, expected, name, f"etcd-{after:02d}", arm, heal_after=seconds + 1)
