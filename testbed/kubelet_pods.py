"""One pod on the process kubelet: volumes, init containers, containers, probes, restarts, status, deletion.

A thread per pod. Its status goes to the API server whole (merge patch) whenever it changes, the way a
kubelet reports it: Pending while volumes are made and init containers run, Running with container states,
`Ready` from the readiness probes, Succeeded/Failed with exit codes and termination messages. Deleting the
pod runs preStop, SIGTERMs, SIGKILLs after the grace period, and then removes the object (grace 0).
Restart back-off is 1s doubling to 30s (the real kubelet's 10s to 5min would only slow the tests).

Pod IPs are names, not addresses: processes share the host's network, and EndpointSlices refuse loopback
addresses, so each pod gets a distinct IP from 10.246.0.0/16 (no route leads there). Reach a pod on
127.0.0.1 at its container ports, or for Triton at the ports in the `testbed.kestrel.dev/local-ports` annotation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from testbed import kubelet_containers as containers
from testbed.kubelet_api import Api, ApiError, Body
from testbed.kubelet_volumes import PodLayout, RefusedError, VolumeError

logger = logging.getLogger("testbed.kubelet")
TICK = 0.25
BACKOFF_START, BACKOFF_CAP = 1.0, 30.0
HALT_GRACE = 3.0
PORTS_ANNOTATION = "testbed.kestrel.dev/local-ports"


@dataclasses.dataclass
class Slot:
    """One container of the pod and what happened to it so far."""

    spec: Body
    init: bool = False
    launch: containers.Launch | None = None
    process: containers.Process | None = None
    state: Body = dataclasses.field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Body = dataclasses.field(default_factory=dict)
    terminated: Body = dataclasses.field(default_factory=dict)
    restarts: int = 0
    started: bool = False
    ready: bool = False
    exit_code: int | None = None
    restart_at: float | None = None
    probes: dict[str, containers.Prober] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def sidecar(self) -> bool:
        return self.init and self.spec.get("restartPolicy") == "Always"

    def status(self) -> Body:
        executable = self.launch.argv[0] if self.launch else ""
        return {
            "name": self.name,
            "image": self.spec["image"],
            "imageID": f"process://{executable}",
            "containerID": self.process.container_id if self.process else "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodWorker(threading.Thread):
    def __init__(
        self,
        api: Api,
        pod: Body,
        *,
        root: pathlib.Path,
        base_env: Mapping[str, str],
        allow_python: bool,
        on_exit: Callable[[str], None],
        pod_ip: str,
    ) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.api = api
        self.pod = pod
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.layout = PodLayout(root, pod, pod_ip)
        self.base_env = base_env
        self.allow_python = allow_python
        self.on_exit = on_exit
        self.policy = pod["spec"].get("restartPolicy", "Always")
        self.slots = [Slot(c, init=True) for c in pod["spec"].get("initContainers") or []]
        self.slots += [Slot(c) for c in pod["spec"]["containers"]]
        # The pod's network namespace, played on the host: container port -> local port, one map for all its
        # containers (a sidecar relays to Triton's port, a probe of one container may target another's).
        self.ports: dict[int, int] = {}
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.start_time = containers.now()
        self.initialized = False
        self._transitions: dict[str, tuple[str, str]] = {}
        self._published: str | None = None
        self._deleting = threading.Event()
        self._halting = threading.Event()
        self.grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.layout.namespace}/pods/{self.pod['metadata']['name']}"

    def delete(self, grace: float) -> None:
        """The pod object is being deleted: stop its containers gracefully, then finalise the deletion."""
        self.grace = grace
        self._deleting.set()

    @property
    def deleted(self) -> bool:
        return self._deleting.is_set()

    def halt(self) -> None:
        """The kubelet is stopping: kill the processes quickly, leave the pod object alone."""
        self._halting.set()

    def _stopping(self) -> bool:
        return self._deleting.is_set() or self._halting.is_set()

    # --- the pod's life ----------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._live()
        except RefusedError as refused:
            self._fail("Unsupported", str(refused))
        except Exception:
            logger.exception("Pod %s failed in the process kubelet", self.key)
            self._fail("KubeletError", "the process kubelet failed; see its log")
        finally:
            self._stop_all(HALT_GRACE if self._halting.is_set() else None)
            if self._deleting.is_set() and not self._halting.is_set():
                self._finalise()
            self.layout.remove()
            self.on_exit(self.layout.uid)

    def _live(self) -> None:
        self._publish()
        if not self._prepare():
            return
        for slot in self.slots:
            if not slot.init:
                continue
            self._start(slot)
            while not self._stopping() and not (slot.started if slot.sidecar else slot.exit_code == 0):
                self._tick()
                if self.phase == "Failed":
                    return
                time.sleep(TICK)
        if self._stopping():
            return
        self.initialized = True
        for slot in self.slots:
            if not slot.init:
                self._start(slot)
        while not self._stopping() and self.phase not in ("Succeeded", "Failed"):
            self._tick()
            time.sleep(TICK)

    def _prepare(self) -> bool:
        """Make the volumes and plan every container, waiting out missing Secrets and ConfigMaps."""
        ports = self.ports
        while not self._stopping():
            try:
                self.layout.materialise(self.api)
                for slot in self.slots:
                    slot.launch = slot.launch or containers.plan(
                        self.api,
                        self.layout,
                        slot.spec,
                        base_env=self.base_env,
                        allow_python=self.allow_python,
                        pod_ports=ports,
                    )
                    ports |= slot.launch.ports
            except VolumeError as missing:
                for slot in self.slots:
                    slot.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(missing)}}
                self._publish()
                time.sleep(1.0)
                continue
            if any(local != port for port, local in ports.items()):
                annotation = json.dumps({str(k): v for k, v in sorted(ports.items())})
                self.api.merge_patch(self.path, {"metadata": {"annotations": {PORTS_ANNOTATION: annotation}}})
            return True
        return False

    def _start(self, slot: Slot) -> None:
        assert slot.launch is not None
        if slot.process is not None:
            slot.restarts += 1
            slot.last_state = slot.terminated
        try:
            slot.process = containers.Process(slot.launch)
        except OSError as error:  # no such program or folder: the container cannot start at all
            raise RefusedError(f"container {slot.name!r} could not start: {error}") from error
        slot.state = {"running": {"startedAt": slot.process.started_at}}
        slot.exit_code = slot.restart_at = None
        slot.started = slot.ready = False
        spec = slot.spec
        slot.probes = {
            "startup": containers.Prober(spec.get("startupProbe"), spec, self.ports, initial=False),
            "liveness": containers.Prober(spec.get("livenessProbe"), spec, self.ports, initial=True),
            "readiness": containers.Prober(spec.get("readinessProbe"), spec, self.ports, initial=False),
        }
        logger.info("Started container %s of pod %s (%s)", slot.name, self.key, slot.process.container_id)

    def _tick(self) -> None:
        for slot in self.slots:
            if slot.process is None:
                continue
            if slot.exit_code is None:
                self._watch(slot)
            elif slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                self._start(slot)
        self._settle()
        self._publish()

    def _watch(self, slot: Slot) -> None:
        assert slot.process is not None
        code = slot.process.poll()
        if code is None:
            probes = slot.probes
            if not slot.started:
                probes["startup"].tick()
                slot.started = probes["startup"].result
                if probes["startup"].failed:
                    code = slot.process.stop(float(self.grace))
            else:
                probes["liveness"].tick()
                probes["readiness"].tick()
                slot.ready = probes["readiness"].result
                if probes["liveness"].failed:
                    logger.info("Killed container %s of pod %s: liveness probe failed", slot.name, self.key)
                    code = slot.process.stop(float(self.grace))
            if code is None:
                return
        self._exited(slot, code)

    def _exited(self, slot: Slot, code: int) -> None:
        assert slot.process is not None
        slot.exit_code = code
        slot.started = slot.ready = False
        slot.state = slot.terminated = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "message": slot.process.message(code),
                "startedAt": slot.process.started_at,
                "finishedAt": containers.now(),
                "containerID": slot.process.container_id,
            }
        }
        logger.info("Container %s of pod %s exited with code %d", slot.name, self.key, code)
        if slot.sidecar:
            policy = "Always"
        elif slot.init:  # a pod's `Always` restarts init containers only when they fail
            policy = "Never" if self.policy == "Never" else "OnFailure"
        else:
            policy = self.policy
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            delay = min(BACKOFF_START * 2**slot.restarts, BACKOFF_CAP)
            slot.restart_at = time.monotonic() + delay
            message = f"back-off {delay:.0f}s restarting failed container {slot.name}"
            slot.state, slot.last_state = (
                {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                slot.terminated,
            )

    def _settle(self) -> None:
        """Pod phase from the containers: a failed init container, or every regular container finished."""
        for slot in self.slots:
            if slot.init and not slot.sidecar and slot.exit_code not in (None, 0) and slot.restart_at is None:
                self.phase = "Failed"
                return
        if not self.initialized:
            return
        regular = [s for s in self.slots if not s.init]
        if all(s.exit_code is not None and s.restart_at is None for s in regular):
            self.phase = "Succeeded" if all(s.exit_code == 0 for s in regular) else "Failed"
        else:
            self.phase = "Running"

    # --- the end -----------------------------------------------------------------------------------------

    def _stop_all(self, grace: float | None) -> None:
        """Stop regular containers before sidecars; with `grace` None, run preStop within the pod's grace."""
        deadline = time.monotonic() + (self.grace if grace is None else grace)
        ordered = [s for s in self.slots if not s.init] + [s for s in self.slots if s.init]
        for slot in ordered:
            if slot.process is None or slot.exit_code is not None:
                continue
            if grace is None and slot.launch is not None:
                containers.pre_stop(slot.spec, self.ports, deadline - time.monotonic())
            code = slot.process.stop(max(deadline - time.monotonic(), 0.0))
            slot.exit_code = code
            logger.info("Stopped container %s of pod %s (exit code %d)", slot.name, self.key, code)

    def _finalise(self) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
        body["preconditions"] = {"uid": self.layout.uid}
        try:
            self.api.request("DELETE", self.path, body=body, missing_ok=True)
            logger.info("Deleted pod %s after its containers stopped", self.key)
        except ApiError as error:
            if error.status != 409:  # 409: a newer pod of the same name; ours is gone already
                logger.warning("Could not finalise the deletion of pod %s: %s", self.key, error)

    def _fail(self, reason: str, message: str) -> None:
        logger.warning("Failed pod %s: %s", self.key, message)
        self.phase, self.reason, self.message = "Failed", reason, message
        for slot in self.slots:
            if "terminated" not in slot.state:
                slot.state = {"waiting": {"reason": reason, "message": message}}
        self._publish()

    # --- status --------------------------------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool, reason: str | None = None) -> Body:
        status = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            self._transitions[kind] = (status, containers.now())
        condition: dict[str, Any] = {"type": kind, "status": status, "lastTransitionTime": self._transitions[kind][1]}
        if not ok and reason:
            condition["reason"] = reason
        return condition

    def _publish(self) -> None:
        regular = [s for s in self.slots if not s.init]
        ready = self.phase == "Running" and all(s.ready for s in regular)
        unready = "PodCompleted" if self.phase in ("Succeeded", "Failed") else "ContainersNotReady"
        status: Body = {
            "phase": self.phase,
            "conditions": [
                self._condition("PodReadyToStartContainers", True),
                self._condition("Initialized", self.initialized, "ContainersNotInitialized"),
                self._condition("ContainersReady", ready, unready),
                self._condition("Ready", ready, unready),
                self._condition("PodScheduled", True),
            ],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.layout.pod_ip,
            "podIPs": [{"ip": self.layout.pod_ip}],
            "startTime": self.start_time,
            "initContainerStatuses": [s.status() for s in self.slots if s.init],
            "containerStatuses": [s.status() for s in regular],
            "reason": self.reason,
            "message": self.message,
        }
        text = json.dumps(status, sort_keys=True)
        if text == self._published:
            return
        try:
            if self.api.merge_patch(f"{self.path}/status", {"status": status}) is not None:
                self._published = text
        except ApiError as error:
            logger.warning("Could not update the status of pod %s: %s", self.key, error)
