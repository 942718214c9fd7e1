"""The process kubelet: one real node, `local-0`, whose pods run as local processes.

kwok fakes every other node; this one exists so that the operator's real code path (a build Job, a loader init
container, a Triton server) runs for real in the end-to-end tests and the demo. It registers the Node (labels
`kestrel.dev/local=true`, `kubernetes.io/hostname=local-0`; no kwok annotation), renews its Lease in
`kube-node-lease` every few seconds, refreshes its Ready condition, watches the pods bound to it and gives each
a `kubelet_pods.PodWorker` thread. How images, volumes and paths map: see `kubelet_containers` and
`kubelet_volumes`.

    python -m testbed.kubelet --kubeconfig .testbed/kubeconfig --node local-0
    with ProcessKubelet(api, node="local-0") as kubelet: ...     # or .start() / .stop()
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import pathlib
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from types import TracebackType

from testbed.kubelet_api import Api, ApiError, Body
from testbed.kubelet_pods import PodWorker

logger = logging.getLogger("testbed.kubelet")
LOCAL_LABEL = "kestrel.dev/local"
LEASE_NAMESPACE = "kube-node-lease"
WATCH_SECONDS = 30  # the server ends each watch after this long; stop() interrupts it sooner
JOIN_SECONDS = 20.0


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProcessKubelet:
    """Register a node and run the pods bound to it until stop(); a context manager too."""

    def __init__(
        self,
        api: Api,
        *,
        node: str = "local-0",
        root: pathlib.Path | None = None,
        env: Mapping[str, str] | None = None,
        allow_python: bool = False,
        capacity: Mapping[str, str] | None = None,
        lease_seconds: int = 40,
        renew_seconds: float = 5.0,
        status_seconds: float = 20.0,
    ) -> None:
        self.api = api
        self.node = node
        self._own_root = root is None
        self.root = root or pathlib.Path(tempfile.mkdtemp(prefix="kestrel-kubelet-"))
        self.env = dict(env or {})  # what an image's ENV would set, given to every container
        self.allow_python = allow_python
        self.capacity = dict(capacity or {"cpu": "16", "memory": "64Gi", "pods": "30", "ephemeral-storage": "100Gi"})
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.status_seconds = status_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._finalised: set[str] = set()
        self._pods = 0  # numbers pod IPs
        self._threads: list[threading.Thread] = []
        self._ready_since = _now()
        self._node_uid = ""

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> ProcessKubelet:
        self._register()
        self._renew_lease()
        for name, target in (("heartbeat", self._heartbeat), ("pods", self._watch_pods)):
            thread = threading.Thread(target=target, name=f"kubelet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("Started process kubelet for node %s in %s", self.node, self.root)
        return self

    def stop(self, *, deregister: bool = False) -> None:
        """Stop every pod's processes (the pod objects stay), the watch and the heartbeat; all bounded."""
        self._stop.set()
        self.api.close_watches()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.halt()
        for thread in [*workers, *self._threads]:
            thread.join(JOIN_SECONDS)
            if thread.is_alive():
                logger.warning("Thread %s did not stop within %.0fs", thread.name, JOIN_SECONDS)
        if deregister:
            # Pods bound to a deleted node are garbage-collected by the controller-manager.
            self.api.request("DELETE", f"/api/v1/nodes/{self.node}", missing_ok=True)
            self.api.request("DELETE", self._lease_path, missing_ok=True)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        logger.info("Stopped process kubelet for node %s", self.node)

    def __enter__(self) -> ProcessKubelet:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def log_dir(self) -> pathlib.Path:
        """Container logs, `<namespace>_<pod>_<uid>/<container>.log`, kept after their pods end."""
        return self.root / "logs"

    def running_pods(self) -> list[str]:
        with self._lock:
            return sorted(w.key for w in self._workers.values())

    # --- the node -----------------------------------------------------------------------------------------

    def _register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            LOCAL_LABEL: "true",
            "type": "process",
        }
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": labels}}
        try:
            created = self.api.request("POST", "/api/v1/nodes", body=body) or {}
        except ApiError as error:
            if error.status != 409:
                raise
            created = self.api.merge_patch(f"/api/v1/nodes/{self.node}", {"metadata": {"labels": labels}}) or {}
        self._node_uid = created.get("metadata", {}).get("uid", "")
        self._node_status()
        logger.info("Registered node %s", self.node)

    def _node_status(self) -> None:
        heartbeat = _now()
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
            ("Ready", "True", "KubeletReady"),
        ]
        status: Body = {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                {
                    "type": kind,
                    "status": value,
                    "reason": reason,
                    "message": "process kubelet is posting ready status" if kind == "Ready" else reason,
                    "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": self._ready_since,
                }
                for kind, value, reason in conditions
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "process kubelet (Kestrel test bed)",
                "containerRuntimeVersion": "process://",
                "kubeletVersion": "v0.0.0-process",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self.api.merge_patch(f"/api/v1/nodes/{self.node}/status", {"status": status})

    @property
    def _lease_path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.node}"

    def _renew_lease(self) -> None:
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": self.lease_seconds, "renewTime": _micro_now()}
        if self.api.merge_patch(self._lease_path, {"spec": spec}) is not None:
            return
        owner = {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self._node_uid}
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
            "spec": spec,
        }
        self.api.request("POST", self._lease_path.rsplit("/", 1)[0], body=lease)

    def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(self.renew_seconds):
            try:
                self._renew_lease()
                if time.monotonic() - last_status >= self.status_seconds:
                    self._node_status()
                    last_status = time.monotonic()
            except Exception:
                logger.exception("Could not renew the heartbeat of node %s", self.node)

    # --- the pods -----------------------------------------------------------------------------------------

    def _watch_pods(self) -> None:
        query = {"fieldSelector": f"spec.nodeName={self.node}"}
        while not self._stop.is_set():
            try:
                listing = self.api.request("GET", "/api/v1/pods", query=query) or {}
                for pod in listing.get("items", []):
                    self._sync(pod)
                version = listing["metadata"]["resourceVersion"]
                while not self._stop.is_set() and version:
                    version = self._follow(query, version)
            except Exception:
                if self._stop.is_set():
                    return  # stop() cut the watch short
                logger.exception("Pod watch of node %s failed; listing again", self.node)
                self._stop.wait(1.0)

    def _follow(self, query: dict[str, str], version: str) -> str:
        """One watch from `version`; the version to go on from, or '' to list again (it expired)."""
        watch_query = {**query, "resourceVersion": version, "allowWatchBookmarks": "true"}
        for event in self.api.watch("/api/v1/pods", watch_query, WATCH_SECONDS):
            pod = event["object"]
            if event["type"] == "ERROR":
                return ""  # 410 Gone and friends: list afresh
            version = pod["metadata"]["resourceVersion"]
            if event["type"] == "DELETED":
                self._gone(pod)
            elif event["type"] != "BOOKMARK":
                self._sync(pod)
            if self._stop.is_set():
                break
        return version

    def _sync(self, pod: Body) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        deleting = bool(meta.get("deletionTimestamp"))
        with self._lock:
            worker = self._workers.get(uid)
            if worker is not None:
                if deleting:
                    worker.delete(float(meta.get("deletionGracePeriodSeconds") or 0))
                return
            if not deleting:
                if uid not in self._finished and not _finished(pod):
                    self._run(pod)
                return
            if uid in self._finalised:
                return  # a finalizer (the Job controller's) holds it; our part is done
            self._finalised.add(uid)
        # Deleted while no process runs for it (finished, or before we started): finalise it as a kubelet does.
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.api.request("DELETE", path, body=body, missing_ok=True)
        except ApiError as error:
            logger.warning("Could not finalise the deletion of pod %s: %s", path, error)

    def _run(self, pod: Body) -> None:
        worker = PodWorker(
            self.api,
            pod,
            root=self.root / "pods",
            base_env=self.env,
            allow_python=self.allow_python,
            on_exit=self._exited,
            pod_ip=f"10.246.{self._pods // 250}.{self._pods % 250 + 1}",
        )
        self._pods = (self._pods + 1) % 64000
        self._workers[pod["metadata"]["uid"]] = worker
        logger.info("Accepted pod %s", worker.key)
        worker.start()

    def _gone(self, pod: Body) -> None:
        with self._lock:
            worker = self._workers.get(pod["metadata"]["uid"])
        if worker is not None:
            worker.halt()  # deleted outright (grace 0 by someone): nothing left to finalise

    def _exited(self, uid: str) -> None:
        with self._lock:
            worker = self._workers.pop(uid, None)
            self._finished.add(uid)
            if worker is not None and worker.deleted:
                self._finalised.add(uid)


def _finished(pod: Body) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default="local-0")
    parser.add_argument("--root", type=pathlib.Path, help="where pods live (default: a fresh temporary folder)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="given to every container")
    parser.add_argument("--allow-python-image", action="store_true", help="tests only: map `python` images")
    parser.add_argument("--deregister", action="store_true", help="delete the Node and its Lease on exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s: %(message)s")
    env = dict(item.split("=", 1) for item in args.env)
    kubelet = ProcessKubelet(
        Api.from_kubeconfig(args.kubeconfig),
        node=args.node,
        root=args.root,
        env=env,
        allow_python=args.allow_python_image,
    )
    # Blocked before any thread starts (threads inherit the mask), so that only sigwait() receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    kubelet.start()
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        kubelet.stop(deregister=args.deregister)
    return 0


if __name__ == "__main__":
    if os.name != "posix":
        sys.exit("the process kubelet needs a POSIX system")
    sys.exit(main())
