"""The real node: a kubelet with its own containerd, runc, CNI, kube-proxy and CoreDNS, running real pods here.

Where the process kubelet (testbed/kubelet.py) runs containers as host processes and ignores securityContext,
read-only root filesystems, resources and image names, this node runs Kestrel's own images under runc, so pod
hardening, probes, memory volumes, TLS and the install path are proven as a cluster would run them.

What it is, on this machine (facts measured in ../shared/notes/real-node.md):
- `kestrel-node0`, a bridge holding only the node's address `NODE_IP`/32 (the kernel has no `dummy` module); the
  kubelet, CoreDNS and (for pods) the API server listen there, and the `kubernetes` Service points at it;
- a containerd of its own (own config, socket, state; its content store is cached beside the test bed's binaries
  so imported images survive a restart), with `restrict_oom_score_adj` (this VM refuses negative scores), runc,
  CNI `bridge` + `host-local` + `portmap` + `loopback` on `kestrel-cni0` (`POD_SUBNET`), and the pause image;
- kubelet and kube-proxy (iptables mode) from the control plane's own kubernetes module, CoreDNS serving
  `cluster.local` from the API, crictl for inspecting and removing pods.

The node carries the label and taint `kestrel.dev/real-node=true` (NoSchedule): only pods that tolerate it run here,
so the kwok and process-kubelet suites never land a pod on it. On the test bed's `down`, `remove_pods()` removes every
pod through the CRI and, once the processes are stopped, `cleanup()` unmounts what the kubelet mounted, removes the
iptables rules and both bridges.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from testbed import build, components, host, pki
from testbed.ports import free_port

NODE_NAME = "real-0"
NODE_LABEL = "kestrel.dev/real-node"
NODE_BRIDGE = "kestrel-node0"
NODE_IP = "10.250.0.1"
POD_BRIDGE = "kestrel-cni0"
POD_SUBNET = "10.251.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
SANDBOX_IMAGE = f"registry.k8s.io/pause:{components.PAUSE}"
CNI_NETWORK = "kestrel-testbed"

# What a pod needs to run here: the toleration of the node's taint and a selector for it.
TOLERATION = {"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
NODE_SELECTOR = {NODE_LABEL: "true"}

# Stopped before the pods are removed through the CRI (a running kubelet would start them again).
PROCESSES_BEFORE_PODS = ("coredns", "kube-proxy", "kubelet")

Starter = Callable[[str, list[str]], None]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]

# What CoreDNS's kubernetes plugin reads (upstream's deployment manifest grants the same).
COREDNS_RBAC: list[dict[str, Any]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:coredns"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "system:coredns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}],
    },
]


def containerd_root() -> pathlib.Path:
    """containerd's persistent root (content store, snapshots): imported images are kept between test beds."""
    return components.cache_root() / "realnode" / "containerd"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done


class RealNode:
    """The real node's files and processes under `home` (a fresh folder per test bed); see the module docstring."""

    def __init__(self, home: pathlib.Path, pki_dir: pathlib.Path, server_port: int) -> None:
        self.home = home
        self.pki_dir = pki_dir
        self.server_port = server_port
        self.state = home / "containerd-state"
        self.socket = home / "containerd.sock"
        self.kubelet_root = home / "kubelet"
        self.cni_conf = home / "cni"
        self.ipam = home / "ipam"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    # --- start ---------------------------------------------------------------------------------------------

    def start(self, start: Starter, kubectl: Kubectl) -> None:
        """Start containerd, kubelet, kube-proxy and CoreDNS through `start` (which records their PIDs)."""
        host.require()
        for component in components.REAL_NODE:
            build.build(component)
        for folder in (self.home, self.state, self.kubelet_root, self.cni_conf, self.ipam, containerd_root()):
            folder.mkdir(parents=True, exist_ok=True)
        self._network()
        self._containerd(start)
        self._import(components.PAUSE_IMAGE.binary("pause.tar"))
        self._apply(kubectl, "kubernetes-endpoints", [self._kubernetes_endpoints()])
        self._apply(kubectl, "coredns-rbac", COREDNS_RBAC)
        self._kubelet(start)
        self._kube_proxy(start)
        self._coredns(start)
        self._wait("DNS answers for kubernetes.default", self._dns_ready, 60)

    def _network(self) -> None:
        if _run("ip", "link", "show", NODE_BRIDGE, check=False).returncode != 0:
            _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        _run("ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_BRIDGE)
        _run("ip", "link", "set", NODE_BRIDGE, "up")
        # Routing for pods, and bridged pod-to-pod replies through conntrack (a ClusterIP whose endpoint shares
        # the client's bridge), as kube-proxy requires.
        for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
            pathlib.Path("/proc/sys", key).write_text("1\n")
        conflist = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": POD_BRIDGE,
                    "isGateway": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.ipam),
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }
        (self.cni_conf / "10-kestrel.conflist").write_text(json.dumps(conflist, indent=2))

    def _containerd(self, start: Starter) -> None:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = "\n".join(
            [
                "version = 2",
                f'root = "{containerd_root()}"',
                f'state = "{self.state}"',
                "[grpc]",
                f'  address = "{self.socket}"',
                "[ttrpc]",
                f'  address = "{self.socket}.ttrpc"',
                "[debug]",
                f'  address = "{self.socket}.debug"',
                f"[{cri}]",
                # This VM refuses negative oom_score_adj values; without the clamp runc fails every sandbox.
                "  restrict_oom_score_adj = true",
                f'  sandbox_image = "{SANDBOX_IMAGE}"',
                f"[{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"[{cri}.cni]",
                '  bin_dir = "/usr/lib/cni"',
                f'  conf_dir = "{self.cni_conf}"',
                # Other plugins would otherwise take their default folders under /var/lib and /run.
                '[plugins."io.containerd.internal.v1.opt"]',
                f'  path = "{self.home / "opt"}"',
                "",
            ]
        )
        path = self.home / "containerd.toml"
        path.write_text(config)
        start("containerd", ["containerd", f"--config={path}"])
        self._wait("containerd's socket", lambda: _run(*self._ctr("version"), check=False).returncode == 0, 30)

    def _ctr(self, *args: str) -> list[str]:
        return ["ctr", f"--address={self.socket}", "--namespace=k8s.io", *args]

    def _import(self, archive: pathlib.Path) -> None:
        _run(*self._ctr("images", "import", "--no-unpack", str(archive)))

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = str(components.CRICTL.binary("crictl"))
        return _run(
            binary, f"--runtime-endpoint={self.endpoint}", f"--image-endpoint={self.endpoint}", *args, check=check
        )

    def _kubeconfig(self, name: str) -> pathlib.Path:
        """A kubeconfig for the identity `name` that the control plane issued (testbed.cluster)."""
        return pki.write_kubeconfig(
            self.home / f"{name}.kubeconfig",
            f"https://127.0.0.1:{self.server_port}",
            self.pki_dir / "serving-ca.crt",
            name,
            self.pki_dir / f"{name}.crt",
            self.pki_dir / f"{name}.key",
        )

    def _apply(self, kubectl: Kubectl, name: str, objects: list[dict[str, Any]]) -> None:
        manifest = self.home / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump_all(objects))
        kubectl("apply", "--server-side", "--field-manager=testbed", "-f", str(manifest))

    def _kubernetes_endpoints(self) -> dict[str, Any]:
        """Point the `kubernetes` Service at the API server's address on the node (its reconciler is off)."""
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "testbed.kestrel.dev",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.server_port, "protocol": "TCP"}],
        }

    def _kubelet(self, start: Starter) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "tlsCertFile": str(self.pki_dir / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(self.pki_dir / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.pki_dir / "client-ca.crt")},
            },
            # Only the API server holds a client certificate of the test bed's client CA that the kubelet sees.
            "authorization": {"mode": "AlwaysAllow"},
            # cgroup v1 controllers plus a cgroup2 mount: the cgroupfs driver, and v1 allowed.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": self.endpoint,
            "clusterDNS": [NODE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "registerWithTaints": [{key: TOLERATION[key] for key in ("key", "value", "effect")}],
            # The images are imported, never pulled: garbage-collecting one would break the next pod that needs it.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "enforceNodeAllocatable": [],
            "evictionHard": {"memory.available": "100Mi"},
            "serializeImagePulls": False,
            "maxPods": 50,
            "nodeStatusUpdateFrequency": "4s",
            "shutdownGracePeriod": "0s",
        }
        path = self.home / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        start(
            "kubelet",
            [
                str(components.KUBE_NODE.binary("kubelet")),
                f"--config={path}",
                f"--kubeconfig={self._kubeconfig('kubelet')}",
                f"--root-dir={self.kubelet_root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--node-labels={NODE_LABEL}=true",
                "--v=1",
            ],
        )

    def _kube_proxy(self, start: Starter) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self._kubeconfig("kube-proxy"))},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_SUBNET,
            "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Zero leaves the host's conntrack limits alone: the test bed changes no machine-wide tuning it
            # does not need.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        path = self.home / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        start("kube-proxy", [str(components.KUBE_NODE.binary("kube-proxy")), f"--config={path}", "--v=1"])

    def _coredns(self, start: Starter) -> None:
        corefile = self.home / "Corefile"
        corefile.write_text(
            "\n".join(
                [
                    f"{CLUSTER_DOMAIN}:53 in-addr.arpa:53 {{",
                    f"    bind {NODE_IP}",
                    "    errors",
                    f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{",
                    f"        kubeconfig {self._kubeconfig('coredns')} testbed",
                    "        pods insecure",
                    "    }",
                    "    cache 5",
                    "}",
                    # Nothing outside the cluster resolves on the test bed: answer at once instead of timing out.
                    ".:53 {",
                    f"    bind {NODE_IP}",
                    "    template ANY ANY {",
                    "        rcode NXDOMAIN",
                    "    }",
                    "}",
                    "",
                ]
            )
        )
        start("coredns", [str(components.COREDNS_SERVER.binary("coredns")), "-conf", str(corefile)])

    def _dns_ready(self) -> bool:
        return resolve(f"kubernetes.default.svc.{CLUSTER_DOMAIN}", NODE_IP) is not None

    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.3)
        raise TimeoutError(f"Timed out after {timeout:.0f}s waiting for {what}; logs are beside the test bed's")

    # --- stop ----------------------------------------------------------------------------------------------

    def remove_pods(self) -> None:
        """Stop and remove every pod sandbox through the CRI (which also tears down their networks)."""
        if self.socket.exists():
            self.crictl("rmp", "--all", "--force", check=False)

    def cleanup(self) -> None:
        """After every process stopped: unmount, remove rules, bridges and files; never fails."""
        for mount in reversed(_mounts_under((self.home, containerd_root(), pathlib.Path("/run/netns")))):
            if mount.startswith("/run/netns") and "cni-" not in mount:
                continue
            _run("umount", "-l", mount, check=False)
        proxy = components.KUBE_NODE.binary("kube-proxy")
        if proxy.exists():
            _run(str(proxy), "--cleanup", check=False)
        _remove_kubelet_chains()
        for bridge in (POD_BRIDGE, NODE_BRIDGE):
            _run("ip", "link", "delete", bridge, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def _remove_kubelet_chains() -> None:
    """The kubelet's own iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT), which
    `kube-proxy --cleanup` leaves: first the rules that jump to any KUBE- chain, then the chains."""
    for binary in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listed = _run(binary, "-t", table, "-S", check=False).stdout.splitlines()
            chains = [line.split()[1] for line in listed if line.startswith("-N KUBE-")]
            for line in listed:
                words = shlex.split(line)
                if (
                    words[:1] == ["-A"]
                    and not words[1].startswith("KUBE-")
                    and any(w.startswith("KUBE-") for w in words)
                ):
                    _run(binary, "-t", table, "-D", *words[1:], check=False)
            for chain in chains:
                _run(binary, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(binary, "-t", table, "-X", chain, check=False)


def _mounts_under(roots: Sequence[pathlib.Path]) -> list[str]:
    prefixes = tuple(str(root) + "/" for root in roots)
    found = []
    for line in pathlib.Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefixes):
            found.append(target)
    return found


def new_home() -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix="kestrel-realnode-"))


def resolve(name: str, server: str, *, timeout: float = 2.0) -> str | None:
    """The first A record of `name` from the DNS server at `server`:53, or None (no answer, NXDOMAIN, timeout)."""
    query_id = int.from_bytes(os.urandom(2), "big")
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (server, 53))
            reply = sock.recv(4096)
        except OSError:
            return None
    answer_id, flags, _, answers = struct.unpack(">HHHH", reply[:8])
    if answer_id != query_id or flags & 0x000F or not answers:
        return None
    offset = 12 + len(question) + 4
    for _ in range(answers):
        offset = _skip_name(reply, offset)
        kind, _klass, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if kind == 1 and length == 4:
            return socket.inet_ntoa(reply[offset : offset + 4])
        offset += length
    return None


def _skip_name(packet: bytes, offset: int) -> int:
    while packet[offset]:
        if packet[offset] & 0xC0 == 0xC0:
            return offset + 2
        offset += packet[offset] + 1
    return offset + 1
