"""Fixtures of the suites that use the test bed (tests/cluster, tests/e2e), wired in by tests/conftest.py.

The test bed is started once per session (or reused when `make testbed-up` already runs one)."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client, config

from kestrel.api import crd
from testbed import cluster
from testbed import operator as operator_process
from tests.cluster.operator_support import NODE_LABEL

ROOT = pathlib.Path(__file__).parents[1]
CRD_FILE = ROOT / "crds" / "modeldeployments.kestrel.dev.yaml"
CHART = ROOT / "charts" / "kestrel"
OPERATOR_NAMESPACE = "kestrel-system"


@dataclasses.dataclass
class Cluster:
    bed: cluster.Testbed
    api: client.ApiClient

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.bed.bin_dir / "kubectl"), f"--kubeconfig={self.bed.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            input=stdin,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def wait_established(self, name: str, timeout: float = 60) -> None:
        """Wait until the CRD `name` is Established.

        Not `kubectl wait`: right after creation the CRD has no conditions yet, and kubectl fails instead of waiting.
        """
        extensions = client.ApiextensionsV1Api(self.api)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = extensions.read_custom_resource_definition(name).status
            found = (status.conditions if status is not None else None) or []
            if any(c.type == "Established" and c.status == "True" for c in found):
                return
            time.sleep(0.2)
        raise AssertionError(f"{name} was not Established within {timeout:.0f}s")

    def create_mdep(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": crd.API_VERSION, "kind": crd.KIND, "metadata": {"name": name}, "spec": spec}
        created = self.custom.create_namespaced_custom_object(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, body, field_validation="Strict"
        )
        return cast(dict[str, Any], created)  # the custom objects API types what it returns as object


@pytest.fixture(scope="session")
def kube() -> Iterator[Cluster]:
    bed = cluster.Testbed()
    started = bed.up()
    try:
        api = config.new_client_from_config(config_file=str(bed.kubeconfig))
        yield Cluster(bed=bed, api=api)
    finally:
        if started:
            bed.down()


@pytest.fixture(scope="session")
def with_crd(kube: Cluster) -> Cluster:
    # The checkout's CRD, taking over what a bench or an earlier checkout applied to the same test bed.
    kube.kubectl("apply", "--server-side", "--field-manager=kestrel-tests", "--force-conflicts", "-f", str(CRD_FILE))
    kube.wait_established(crd.CRD_NAME)
    return kube


def _fresh_namespace(kube: Cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture
def namespace(kube: Cluster) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards."""
    name = _fresh_namespace(kube)
    yield name
    kube.core.delete_namespace(name)


@pytest.fixture(scope="session")
def shared_namespace(kube: Cluster) -> str:
    """A namespace for tests that create nothing that outlives them (rejected specs)."""
    return _fresh_namespace(kube)


@pytest.fixture
def pod_namespace(kube: Cluster, namespace: str) -> str:
    """A namespace that can run pods: the controller-manager has created its `default` ServiceAccount."""
    kube.kubectl("wait", "--for=create", "serviceaccount/default", f"--namespace={namespace}", "--timeout=60s")
    return namespace


@pytest.fixture(scope="session")
def operator_kubeconfig(with_crd: Cluster, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A kubeconfig for the chart's ServiceAccount, bound to the chart's ClusterRole and nothing else."""
    operator_process.install_rbac(with_crd.bed, OPERATOR_NAMESPACE)
    return operator_process.kubeconfig(
        with_crd.bed, tmp_path_factory.mktemp("operator") / "kubeconfig", OPERATOR_NAMESPACE
    )


class Operator(operator_process.OperatorProcess):
    """`kestrel run` as a subprocess against the test bed, the way it runs in a pod: under the chart's RBAC."""

    def __init__(
        self,
        kube: Cluster,
        kubeconfig: pathlib.Path,
        log_dir: pathlib.Path,
        watch: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {
            "KESTREL_ENGINE_STORE": "s3://engines/kestrel",
            "KESTREL_RESYNC_SECONDS": "1",
            # The cluster suite's pods run on kwok nodes, where no Triton answers a smoke inference or /metrics:
            # the serving checks are off here, explicitly; tests/e2e runs them against a real Triton.
            "KESTREL_SERVING_CHECKS": "false",
        }
        if watch:
            env["KESTREL_WATCH_NAMESPACES"] = watch
        # A test's own store and its credentials Secret (KESTREL_ENGINE_STORE, KESTREL_STORE_CREDENTIALS_SECRET).
        env.update(extra_env or {})
        super().__init__(kubeconfig, log_dir, env)
        self.kube = kube


@pytest.fixture
def operator(
    request: pytest.FixtureRequest, with_crd: Cluster, operator_kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> Iterator[Operator]:
    """The operator; it watches only the test's `namespace` when the test has one, so that suites running at the
    same time (a developer's, or the end-to-end one) do not reconcile each other's objects."""
    watch = request.getfixturevalue("namespace") if "namespace" in request.fixturenames else None
    running = Operator(with_crd, operator_kubeconfig, tmp_path, watch)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def manual_node(kube: Cluster, namespace: str) -> Iterator[str]:
    """A Ready node without kwok: its pods stay where the test puts them."""
    name = f"manual-{namespace}"
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "10"}
    kube.core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels={NODE_LABEL: namespace, "kubernetes.io/arch": "amd64"}),
            status=client.V1NodeStatus(
                capacity=capacity,
                allocatable=capacity,
                conditions=[
                    client.V1NodeCondition(
                        type="Ready",
                        status="True",
                        reason="KubeletReady",
                        message="test kubelet",
                        last_heartbeat_time=now,
                        last_transition_time=now,
                    )
                ],
            ),
        )
    )
    yield name
    kube.core.delete_node(name)
