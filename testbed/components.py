"""Pinned upstream components of the test bed and where their binaries are cached.

Each component is cached in its own folder, so pinning a new version of one never rebuilds the others.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

KUBERNETES = "v1.34.4"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
HELM = "v3.21.4"
# MinIO tags its releases RELEASE.<date>, which are not semver, so the module proxy knows it only by
# pseudo-version; the one pinned here is the newest the proxy serves (the repository's last commit, 2026-02-12).
# Its go.mod has no replace directives, so `go install minio@version` builds it as upstream's Makefile does.
MINIO = "v0.0.0-20260212201848-7aac2a2c5b7c"
# The real node's DNS (Service names for pods) and the CRI client that inspects and tears down its pods.
COREDNS = "v1.13.1"  # the version testbed/go/coredns/go.mod requires
CRI_TOOLS = "v1.34.0"
# The sandbox ("pause") image, compiled from build/pause/linux/pause.c of the pinned kubernetes module.
PAUSE = "3.10"

GO_DIR = pathlib.Path(__file__).resolve().parent / "go"


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    version: str
    binaries: tuple[str, ...]
    # Bumped when the build itself changes (flags, copied files), so only this component is rebuilt.
    revision: int = 1

    @property
    def home(self) -> pathlib.Path:
        suffix = f"-r{self.revision}" if self.revision > 1 else ""
        return cache_root() / f"{self.name}-{self.version}{suffix}"

    @property
    def bin_dir(self) -> pathlib.Path:
        return self.home / "bin"

    def binary(self, name: str) -> pathlib.Path:
        return self.bin_dir / name

    def is_built(self) -> bool:
        return all(self.binary(b).is_file() for b in self.binaries)


def cache_root() -> pathlib.Path:
    override = os.environ.get("KESTREL_TESTBED_CACHE")
    if override:
        return pathlib.Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(xdg) / "kestrel" / "testbed"


KUBE = Component("kubernetes", KUBERNETES, ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"))
ETCD_SERVER = Component("etcd", ETCD, ("etcd",))
KWOK_CONTROLLER = Component("kwok", KWOK, ("kwok",))
# r2: helm's default Kubernetes version (used by `helm template` and lint) set as its Makefile does.
HELM_CLI = Component("helm", HELM, ("helm",), revision=2)
# The Kubernetes minor of the client-go that helm's go.mod requires; helm's Makefile derives it the same way.
HELM_KUBE_MINOR = "36"

# The S3-compatible server of the engine store's s3:// path; started only when a test asks for it.
MINIO_SERVER = Component("minio", MINIO, ("minio",))

# The real node (testbed/realnode.py): a kubelet and kube-proxy from the same module as the control plane (a
# component of their own, so adding them never rebuilt the cached control plane), CoreDNS, crictl and the
# pause image. Built only when a real node is asked for.
KUBE_NODE = Component("kubernetes-node", KUBERNETES, ("kubelet", "kube-proxy"))
COREDNS_SERVER = Component("coredns", COREDNS, ("coredns",))
CRICTL = Component("cri-tools", CRI_TOOLS, ("crictl",))
PAUSE_IMAGE = Component("pause", f"{PAUSE}-{KUBERNETES}", ("pause", "pause.tar"))

REAL_NODE = (KUBE_NODE, COREDNS_SERVER, CRICTL, PAUSE_IMAGE)
# Lint tools: built by `make lint` (`python -m testbed.build actionlint`), never by `make testbed`.
# actionlint checks .github/workflows; it runs shellcheck on `run:` scripts only where shellcheck is on PATH.
ACTIONLINT = Component("actionlint", "v1.7.12", ("actionlint",))
LINT = (ACTIONLINT,)
# promtool checks and unit-tests the chart's alerting rules (tests/unit/test_alerts_and_dashboard.py); built with the
# test bed (`make testbed`), cached like it. Prometheus 3.x's Go module is tagged v0.3xx.
PROMETHEUS_VERSION = "v0.316.0"
PROMTOOL = Component("promtool", PROMETHEUS_VERSION, ("promtool",))
# The Prometheus server that scrapes the real node's Triton pods as a PodMonitor says and evaluates the KEDA and
# canary-analysis queries Kestrel writes (testbed/prometheus.py). Built with Kubernetes service discovery only and
# with the real node's components (`make testbed`), as only the real-node suites start it.
PROMETHEUS = Component("prometheus", PROMETHEUS_VERSION, ("prometheus",))
MONITORING = (PROMETHEUS,)

# grpcurl: docs/calling-the-endpoint.md's generic gRPC call, run by the end-to-end suite against a real Triton.
GRPCURL = Component("grpcurl", "v1.9.4", ("grpcurl",))

ALL = (KUBE, ETCD_SERVER, KWOK_CONTROLLER, HELM_CLI, MINIO_SERVER, PROMTOOL, GRPCURL)
