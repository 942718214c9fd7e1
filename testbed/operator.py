"""The operator on the test bed as it runs in a pod: `kestrel run` under the chart's ServiceAccount and RBAC only.

The chart's ServiceAccount and (Cluster)Roles are rendered with the test bed's helm and applied; the operator
process then gets a kubeconfig holding nothing but a token of that account, so whatever it does beyond its RBAC
fails here as it would in a cluster. Used by the cluster tests and by `make demo`.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import urllib.request
from collections.abc import Mapping

import yaml

from testbed import cluster, service_proxy
from testbed.ports import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kestrel"
NAMESPACE = "kestrel-system"
RBAC_TEMPLATES = ("templates/serviceaccount.yaml", "templates/rbac.yaml")


def service_account() -> str:
    """The ServiceAccount the chart creates for the operator (its default values)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return str(values["serviceAccount"]["name"])


def install_rbac(bed: cluster.Testbed, namespace: str = NAMESPACE) -> None:
    """Apply the chart's ServiceAccount and RBAC, exactly as `helm install` would render them."""
    rendered = subprocess.run(
        [
            str(bed.bin_dir / "helm"),
            "template",
            "kestrel",
            str(CHART),
            f"--namespace={namespace}",
            *(f"--show-only={template}" for template in RBAC_TEMPLATES),
            "--set=leaderElection=true",  # the Lease Role too: tests/cluster/test_operator_replicas_fail_over.py
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bed.kubectl("create", "namespace", namespace, check=False)
    applied = subprocess.run(
        [str(bed.bin_dir / "kubectl"), f"--kubeconfig={bed.kubeconfig}", "apply", "--server-side", "-f", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        check=False,
    )
    if applied.returncode != 0:
        raise RuntimeError(f"applying the chart's RBAC failed: {applied.stderr.strip()}")


def kubeconfig(bed: cluster.Testbed, path: pathlib.Path, namespace: str = NAMESPACE) -> pathlib.Path:
    """A kubeconfig for the operator's ServiceAccount (a two-hour token) and nothing else."""
    token = bed.kubectl("create", "token", service_account(), f"--namespace={namespace}", "--duration=2h").stdout
    admin = yaml.safe_load(bed.kubeconfig.read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token.strip()}}]
    admin["contexts"][0]["context"]["user"] = "operator"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(admin))
    path.chmod(0o600)
    return path


class OperatorProcess:
    """`kestrel run` as a subprocess; `env` adds the operator's KESTREL_* settings.

    `network` makes Services and pods reachable from outside the pod network, as the operator's serving checks
    need (its address map becomes KESTREL_ADDRESS_MAP); it runs from the first start() until stop().
    """

    def __init__(
        self,
        kubeconfig: pathlib.Path,
        log_dir: pathlib.Path,
        env: Mapping[str, str],
        network: service_proxy.ServiceProxy | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.env = dict(env)
        self.network = network
        self._network_started = False
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_port = 0

    def start(self) -> OperatorProcess:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port()
        if self.network is not None:
            if not self._network_started:
                self.network.start()
                self._network_started = True
            self.env["KESTREL_ADDRESS_MAP"] = str(self.network.map_file)
        with (self.log_dir / f"operator-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kestrel.cli", "run", "--health-port=0", f"--metrics-port={self.metrics_port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env},
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.network is not None and self._network_started:
            self.network.stop()
            self._network_started = False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))
