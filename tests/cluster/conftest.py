"""The test bed, started once per session (or reused when `make testbed-up` already runs one)."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from kestrel.api import crd
from testbed import cluster

CRD_FILE = pathlib.Path(__file__).parents[2] / "crds" / "modeldeployments.kestrel.dev.yaml"


@dataclasses.dataclass
class Cluster:
    bed: cluster.Testbed
    api: client.ApiClient

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bed.bin_dir / "kubectl"), f"--kubeconfig={self.bed.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            input=stdin,
        )

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def create_mdep(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": crd.API_VERSION, "kind": crd.KIND, "metadata": {"name": name}, "spec": spec}
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, body, field_validation="Strict"
        )
        return created


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
    kube.kubectl("apply", "--server-side", "--field-manager=kestrel-tests", "-f", str(CRD_FILE))
    kube.kubectl("wait", "--for=condition=Established", f"crd/{crd.CRD_NAME}", "--timeout=60s")
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
