"""Start and stop the local control plane: etcd, kube-apiserver, controller-manager, scheduler and kwok.

Usage: python -m testbed.cluster up [--foreground] [--minio] [--real-node] | down | status

`up` writes `.testbed/kubeconfig`, links `.testbed/bin/kubectl` and `.testbed/bin/helm`, and returns once
the API server is ready, the `default` namespace and its ServiceAccount exist and the fake nodes are
Ready. A second `up` while one runs says so and does nothing (but start MinIO if asked). Every process is
recorded by PID in `.testbed/state.json`; `down` stops exactly those. The API server's flags follow
controller-runtime's envtest, with RBAC authorization on. With `--minio` (`up(minio=True)`) it also starts
MinIO for the engine store's s3:// path (see `testbed.minio`); `Testbed.minio()` gives its endpoint, bucket
and credentials.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from testbed import build, components, nodes, pki, realnode
from testbed import minio as minio_server
from testbed.ports import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".testbed"
SERVICE_CIDR = "10.0.0.0/16"  # room for every suite and bench/scale.py at N = 1,000 (a Service each)
# The controller-manager's and scheduler's own client rate limits (defaults 20 and 50 requests/s). At the defaults
# the controller-manager alone needs ~240 s to turn 1,000 plain Deployments into available pods on this test bed
# (measured, no operator running), so bench/scale.py would time the test bed's throttle, not Kestrel. Clusters that
# host thousands of workloads raise these the same way.
CONTROL_PLANE_CLIENT_LIMITS = ("--kube-api-qps=200", "--kube-api-burst=400")
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
STOP_TIMEOUT = 15.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    return True


class Testbed:
    """One local control plane, rooted at a state folder."""

    def __init__(self, state_dir: pathlib.Path = STATE_DIR) -> None:
        self.state_dir = state_dir
        self.state_file = state_dir / "state.json"
        self.kubeconfig = state_dir / "kubeconfig"
        self.bin_dir = state_dir / "bin"
        self.log_dir = state_dir / "logs"
        self.pki_dir = state_dir / "pki"
        self._processes: list[dict[str, Any]] = []
        self._facts: dict[str, Any] = {}

    # --- state -------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any] | None:
        if not self.state_file.exists():
            return None
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def running(self) -> bool:
        state = self.state()
        if not state or "server" not in state:
            return False
        return all(_alive(p["pid"]) for p in state["processes"]) and self._ready(state["server"])

    def pause(self, name: str, seconds: float) -> threading.Thread:
        """Stop the test bed's process `name` (SIGSTOP) for `seconds`, then let it go on (SIGCONT), on a thread of its
        own: etcd paused is etcd gone for its clients, and back with all its data (the fault campaign's outage)."""
        state = self.state() or {}
        pid = next((p["pid"] for p in state.get("processes", []) if p["name"] == name), None)
        if pid is None:
            raise RuntimeError(f"the test bed runs no process called {name!r}")

        def pause_then_resume() -> None:
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(seconds)
            finally:
                os.kill(pid, signal.SIGCONT)

        thread = threading.Thread(target=pause_then_resume, name=f"pause-{name}", daemon=True)
        thread.start()
        return thread

    def _save(self, **facts: Any) -> None:
        self._facts.update(facts)
        state = {"processes": self._processes, **self._facts}
        self.state_file.write_text(json.dumps(state, indent=2))

    # --- health ------------------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "serving-ca.crt"))
        context.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        return context

    def _get(self, server: str, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(server + path, context=self._ssl_context(), timeout=5) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return 0, b""

    def _ready(self, server: str) -> bool:
        return self._get(server, "/readyz")[0] == 200

    def _wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_processes()
            if check():
                return
            time.sleep(0.3)
        raise TimeoutError(f"Timed out after {timeout:.0f}s waiting for {what}; logs are in {self.log_dir}")

    def _check_processes(self) -> None:
        for process in self._processes:
            if not _alive(process["pid"]):
                log = pathlib.Path(process["log"])
                lines = log.read_text(errors="replace").splitlines() if log.exists() else []
                if _runtime_race(lines) and process.get("argv") and not process.get("restarted"):
                    # Go's map-race detector ended the process in start-up (seen in kubelet 1.34.4's DRA plugin
                    # manager): a race of the binary, not of this configuration. Started again once, said in the log.
                    self._restart(process)
                    continue
                raise RuntimeError(
                    f"{process['name']} exited during start-up; last lines of {log}:\n" + "\n".join(lines[-15:])
                )

    def _restart(self, process: dict[str, Any]) -> None:
        print(f"{process['name']} crashed in start-up on a Go runtime map race; starting it once more", flush=True)
        with pathlib.Path(process["log"]).open("ab") as log:
            started = subprocess.Popen(
                process["argv"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        process.update(pid=started.pid, restarted=True)
        self._save()

    # --- processes ---------------------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> None:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            # A new session keeps the control plane alive when the starter's terminal or pytest is interrupted;
            # `down` (or the starter's own cleanup) stops it by PID.
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self._processes.append({"name": name, "pid": process.pid, "log": str(log_path), "argv": list(argv)})
        self._save()

    def _kubeconfig(self, path: pathlib.Path, server: str, user: str, cert: pathlib.Path, key: pathlib.Path) -> None:
        pki.write_kubeconfig(path, server, self.pki_dir / "serving-ca.crt", user, cert, key)

    def up(
        self,
        *,
        gpu_nodes: int = 2,
        cpu_nodes: int = 2,
        edge_nodes: int = 1,
        minio: bool = False,
        real_node: bool = False,
    ) -> bool:
        """Start the control plane (and MinIO, the real node if asked); return False when one was already running."""
        if self.running():
            print(f"Test bed already running; kubeconfig: {self.kubeconfig}", flush=True)
            if minio and "minio" not in (self.state() or {}):
                self._processes, self._facts = self._loaded()
                self._start_minio()
            if real_node and "real_node" not in (self.state() or {}):
                self._processes, self._facts = self._loaded()
                self._start_real_node()
            return False
        if self.state():
            self.down(quiet=True)
        for component in components.ALL:
            if minio or component is not components.MINIO_SERVER:
                build.build(component)
        started = time.monotonic()
        for folder in (self.state_dir, self.bin_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.pki_dir, ignore_errors=True)
        self.pki_dir.mkdir()
        self._processes = []
        self._facts = {}
        try:
            server = self._start_all(gpu_nodes, cpu_nodes, edge_nodes)
            if minio:
                self._start_minio()
            if real_node:
                self._start_real_node()
        except BaseException:
            self.down(quiet=True)
            raise
        print(
            f"Test bed up in {time.monotonic() - started:.1f}s at {server}; kubeconfig: {self.kubeconfig}", flush=True
        )
        return True

    def _start_all(self, gpu_nodes: int, cpu_nodes: int, edge_nodes: int) -> str:
        serving_ca = pki.Authority(self.pki_dir, "serving")
        client_ca = pki.Authority(self.pki_dir, "client")
        serving_cert, serving_key = serving_ca.issue(
            "apiserver",
            common_name="kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            # The real node's pods reach the API server through the `kubernetes` Service at the node's address.
            ip_addresses=("127.0.0.1", pki.SERVICE_IP, realnode.NODE_IP),
        )
        admin = client_ca.issue("admin", common_name="kestrel-testbed-admin", organization="system:masters")
        # The API server's identity towards kubelets (logs, exec, port-forward).
        kubelet_client = client_ca.issue(
            "apiserver-kubelet-client", common_name="kube-apiserver-kubelet-client", organization="system:masters"
        )
        self._node_certificates(serving_ca, client_ca)
        manager = client_ca.issue("controller-manager", common_name="system:kube-controller-manager")
        scheduler = client_ca.issue("scheduler", common_name="system:kube-scheduler")
        sa_private, sa_public = pki.service_account_keys(self.pki_dir)

        etcd_port, etcd_peer_port, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        self._kubeconfig(self.kubeconfig, server, "admin", *admin)
        self._kubeconfig(self.state_dir / "controller-manager.kubeconfig", server, "controller-manager", *manager)
        self._kubeconfig(self.state_dir / "scheduler.kubeconfig", server, "scheduler", *scheduler)

        # etcd keeps its data in memory (tmpfs) and skips fsync: the test bed is disposable and disk-bound
        # fsyncs dominate API latency on small machines.
        data_root = (
            pathlib.Path("/dev/shm") if pathlib.Path("/dev/shm").is_dir() else pathlib.Path(tempfile.gettempdir())
        )
        etcd_dir = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-testbed-etcd-", dir=data_root))
        self._save(etcd_dir=str(etcd_dir))
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._start(
            "etcd",
            [
                str(components.ETCD_SERVER.binary("etcd")),
                f"--data-dir={etcd_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        kube = components.KUBE
        self._start(
            "kube-apiserver",
            [
                str(kube.binary("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                "--advertise-address=127.0.0.1",
                # All addresses: the real node's pods reach it at the node's address (the `kubernetes` Service).
                "--bind-address=0.0.0.0",
                f"--secure-port={api_port}",
                f"--cert-dir={self.pki_dir}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={client_ca.cert_path}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={sa_public}",
                f"--service-account-signing-key-file={sa_private}",
                # Node: kubelets may read what their own pods need (Secrets, ServiceAccount tokens), as in a cluster.
                "--authorization-mode=Node,RBAC",
                f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
                f"--kubelet-certificate-authority={serving_ca.cert_path}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )
        self._wait("kube-apiserver /readyz", lambda: self._ready(server), timeout=120)
        self._save(server=server, api_port=api_port)

        self._start(
            "kube-controller-manager",
            [
                str(kube.binary("kube-controller-manager")),
                f"--kubeconfig={self.state_dir / 'controller-manager.kubeconfig'}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--root-ca-file={serving_ca.cert_path}",
                f"--service-account-private-key-file={sa_private}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                *CONTROL_PLANE_CLIENT_LIMITS,
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
                "--v=1",
            ],
        )
        self._start(
            "kube-scheduler",
            [
                str(kube.binary("kube-scheduler")),
                f"--kubeconfig={self.state_dir / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={self.state_dir / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={self.state_dir / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                *CONTROL_PLANE_CLIENT_LIMITS,
                "--v=1",
            ],
        )
        stages = self.state_dir / "kwok-stages.yaml"
        stages.write_text(nodes.kwok_stages(components.KWOK_CONTROLLER.home / "stages"))
        self._start(
            "kwok",
            [
                str(components.KWOK_CONTROLLER.binary("kwok")),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={stages}",
                f"--manage-nodes-with-annotation-selector={nodes.FAKE_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.240.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )
        self._link_tools()
        self._wait("the default namespace", lambda: self._get(server, "/api/v1/namespaces/default")[0] == 200, 60)
        node_file = self.state_dir / "nodes.yaml"
        node_file.write_text(nodes.render(gpu_nodes=gpu_nodes, cpu_nodes=cpu_nodes, edge_nodes=edge_nodes))
        self.kubectl("apply", "--server-side", "--field-manager=testbed", "-f", str(node_file))
        self._wait("fake nodes to be Ready", lambda: self._nodes_ready(server), timeout=60)
        self._wait(
            "the default ServiceAccount",
            lambda: self._get(server, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            60,
        )
        return server

    def _node_certificates(self, serving_ca: pki.Authority, client_ca: pki.Authority) -> None:
        """The real node's identities, made with the control plane (the CAs' keys are not kept)."""
        node = realnode.NODE_NAME
        client_ca.issue("kubelet", common_name=f"system:node:{node}", organization="system:nodes")
        serving_ca.issue(
            "kubelet-serving", common_name=node, server=True, dns_names=(node,), ip_addresses=(realnode.NODE_IP,)
        )
        # The identity the default RBAC policy binds to system:node-proxier.
        client_ca.issue("kube-proxy", common_name="system:kube-proxy")
        client_ca.issue("coredns", common_name="system:coredns")

    # --- the real node, optional ---------------------------------------------------------------------------

    def _start_real_node(self) -> None:
        if "api_port" not in self._facts:
            raise RuntimeError("this test bed was started before it could host a real node: run `make testbed-down`")
        node = realnode.RealNode(realnode.new_home(), self.pki_dir, int(self._facts["api_port"]))
        self._save(real_node={"home": str(node.home)})
        started = time.monotonic()
        node.start(self._start, self.kubectl)
        self._wait("the real node to be Ready", lambda: self._node_ready(realnode.NODE_NAME), timeout=120)
        print(f"Real node {realnode.NODE_NAME} Ready in {time.monotonic() - started:.1f}s", flush=True)

    def real_node(self) -> realnode.RealNode | None:
        """The running real node, if `up(real_node=True)` started one."""
        state = self.state() or {}
        if "real_node" not in state:
            return None
        return realnode.RealNode(pathlib.Path(state["real_node"]["home"]), self.pki_dir, int(state["api_port"]))

    def _node_ready(self, name: str) -> bool:
        status, body = self._get(str(self._facts["server"]), f"/api/v1/nodes/{name}")
        if status != 200:
            return False
        return _is_ready(json.loads(body))

    # --- MinIO (the engine store's s3:// path), optional ---------------------------------------------------

    def _loaded(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        state = dict(self.state() or {})
        return list(state.pop("processes", [])), state

    def _start_minio(self) -> None:
        # Reachable from the real node's pods too, at the node address (`Testbed.minio(for_pods=True)`).
        server = minio_server.MinioServer(log_dir=self.log_dir, listen="0.0.0.0")
        connection = server.start()
        assert server.process is not None
        self._processes.append({"name": "minio", "pid": server.process.pid, "log": str(server.log_path)})
        # The state file now holds MinIO's generated root credentials: readable by its owner only.
        self.state_file.touch(mode=0o600)
        self.state_file.chmod(0o600)
        self._save(minio={"root": str(server.root), **dataclasses.asdict(connection)})
        print(f"MinIO up at {connection.endpoint}, bucket {connection.bucket}", flush=True)

    def minio(self, *, for_pods: bool = False) -> minio_server.Connection | None:
        """The running MinIO's endpoint, bucket and credentials, if `up(minio=True)` started one; `for_pods`: the
        endpoint as the real node's pods reach it (the node address)."""
        facts = (self.state() or {}).get("minio")
        if not facts:
            return None
        endpoint = facts["endpoint"]
        if for_pods:
            endpoint = endpoint.replace("127.0.0.1", realnode.NODE_IP)
        return minio_server.Connection(
            endpoint, facts["access_key"], facts["secret_key"], facts["bucket"], facts["region"]
        )

    def _nodes_ready(self, server: str) -> bool:
        status, body = self._get(server, "/api/v1/nodes")
        if status != 200:
            return False
        items = json.loads(body)["items"]
        return bool(items) and all(_is_ready(n) for n in items)

    def _link_tools(self) -> None:
        for tool, component in (("kubectl", components.KUBE), ("helm", components.HELM_CLI)):
            link = self.bin_dir / tool
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(component.binary(tool))

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(components.KUBE.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def secret_value(self, namespace: str, name: str, key: str) -> bytes:
        """One value of a Secret, decoded."""
        found = json.loads(self.kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)
        return base64.b64decode(found["data"][key])

    def down(self, *, quiet: bool = False) -> None:
        """Stop every process the state file names, newest first, and remove etcd's data."""
        state = self.state() or {"processes": self._processes}
        processes = list(state.get("processes", []))
        node = self.real_node()
        if node is not None:
            # The kubelet first (it would restart what is removed), then every pod through the CRI while
            # containerd still runs, then containerd; the control plane after.
            for process in reversed(processes):
                if process["name"] in realnode.PROCESSES_BEFORE_PODS:
                    _stop(process["pid"])
            node.remove_pods()
        for process in reversed(processes):
            _stop(process["pid"])
        if node is not None:
            node.cleanup()
        if state.get("etcd_dir"):
            shutil.rmtree(state["etcd_dir"], ignore_errors=True)
        if state.get("minio"):
            shutil.rmtree(state["minio"]["root"], ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        self._processes = []
        self._facts = {}
        if not quiet:
            print("Test bed stopped", flush=True)


def _is_ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


def _stop(pid: int) -> None:
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--foreground", action="store_true", help="with up: stay until interrupted, then stop")
    parser.add_argument("--gpu-nodes", type=int, default=2, help="fake GPU nodes per GPU product")
    parser.add_argument("--cpu-nodes", type=int, default=2, help="fake CPU nodes")
    parser.add_argument("--edge-nodes", type=int, default=1, help="fake arm64 Jetson nodes")
    parser.add_argument("--minio", action="store_true", help="with up: also start MinIO (the s3:// engine store)")
    parser.add_argument("--real-node", action="store_true", help="with up: also start the real node (testbed.realnode)")
    args = parser.parse_args(argv)
    bed = Testbed()
    if args.action == "down":
        bed.down()
    elif args.action == "status":
        print("running" if bed.running() else "stopped")
        return 0 if bed.running() else 1
    else:
        started = bed.up(
            gpu_nodes=args.gpu_nodes,
            cpu_nodes=args.cpu_nodes,
            edge_nodes=args.edge_nodes,
            minio=args.minio,
            real_node=args.real_node,
        )
        if args.foreground and started:
            try:
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            finally:
                bed.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _runtime_race(lines: list[str]) -> bool:
    """Whether a Go process's log ends in the runtime's fatal error for a concurrent map access."""
    return any(line.startswith("fatal error: concurrent map") for line in lines)
