"""Namespace-scoped mode for real: the operator, holding only the chart's Roles, reconciles what it watches.

The chart is rendered with `watchNamespaces`, its ServiceAccount and RBAC applied, and `kestrel run` started
with a token of that account and the environment the chart's Deployment sets. It must build and certify a
model in the watched namespace (its CA goes into its own namespace through the `-self` Role), leave a model
elsewhere alone, and never be refused by the API server.
"""

from __future__ import annotations

import pathlib
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from kestrel.manifests import names, secrets
from testbed import operator as operator_process
from tests.cluster import install_support
from tests.cluster.operator_support import condition, get_mdep, jobs, mdep_spec, wait_for
from tests.cluster_fixtures import Cluster

pytestmark = pytest.mark.cluster

CHART = pathlib.Path(__file__).parents[2] / "charts" / "kestrel"


@pytest.fixture
def watched(kube: Cluster) -> Iterator[str]:
    name = f"w-{uuid.uuid4().hex[:8]}"
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    kube.core.delete_namespace(name)


def _install_rbac(kube: Cluster, release: str, operator_namespace: str, watched: str) -> None:
    rendered = subprocess.run(
        [
            str(kube.bed.bin_dir / "helm"),
            "template",
            release,
            str(CHART),
            f"--namespace={operator_namespace}",
            f"--set=watchNamespaces={{{watched}}}",
            "--show-only=templates/serviceaccount.yaml",
            "--show-only=templates/rbac.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kube.kubectl("apply", "--server-side", "--field-manager=kestrel-tests", "-f", "-", stdin=rendered)


def test_operator_with_roles_only_reconciles_its_namespaces(
    with_crd: Cluster, namespace: str, watched: str, tmp_path: pathlib.Path
) -> None:
    kube, operator_namespace = with_crd, namespace
    release = f"ns{uuid.uuid4().hex[:8]}"
    _install_rbac(kube, release, operator_namespace, watched)
    kubeconfig = operator_process.kubeconfig(kube.bed, tmp_path / "kubeconfig", operator_namespace)
    # What the chart's Deployment sets in this mode (tests/unit/test_chart_values_map_onto_operator_settings.py).
    env = {
        "KESTREL_ENGINE_STORE": "s3://engines/kestrel",
        "KESTREL_RESYNC_SECONDS": "1",
        "KESTREL_WATCH_NAMESPACES": watched,
        "KESTREL_OPERATOR_NAMESPACE": operator_namespace,
        "KESTREL_SERVING_CHECKS": "false",  # kwok pods: no Triton to send a smoke inference to
    }
    running = operator_process.OperatorProcess(kubeconfig, tmp_path / "logs", env).start()
    try:
        kube.create_mdep(watched, "cams", mdep_spec(watched))
        kube.create_mdep(operator_namespace, "ignored", mdep_spec(operator_namespace))

        wait_for("the build Job in the watched namespace", lambda: jobs(kube, watched), timeout=60)
        certified = wait_for(
            "CertificateReady=True",
            lambda: (c := condition(get_mdep(kube, watched, "cams"), "CertificateReady")) and c["status"] == "True",
            timeout=60,
        )
        assert certified
        kube.core.read_namespaced_secret(secrets.CA_SECRET, operator_namespace)  # the CA, in its own namespace
        kube.core.read_namespaced_secret(names.signing_secret("cams"), watched)

        time.sleep(3)  # several resync periods: the unwatched model stays untouched
        assert "status" not in get_mdep(kube, operator_namespace, "ignored")
        assert not jobs(kube, operator_namespace)
        log = running.log()
        assert "forbidden" not in log.lower(), log[-3000:]
    finally:
        # The watched model carries Kopf's finalizer: delete it while the operator still runs.
        install_support.delete_model(kube, watched, "cams")
        running.stop()
        kube.kubectl(
            "delete",
            "clusterrole,clusterrolebinding",
            f"--selector=app.kubernetes.io/instance={release}",
            "--ignore-not-found",
            check=False,
        )
