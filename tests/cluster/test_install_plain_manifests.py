"""`kubectl apply --server-side -f deploy/kestrel.yaml` is accepted whole and its operator Deployment becomes
available; applying again changes nothing.

kwok runs the operator's pod on a fake node and reports it Ready: this shows the file installs, in order, and has
no drift. That the operator really runs from it is shown on the real node
(tests/realnode/test_plain_manifests_run_the_operator.py). The file is applied as generated, with only its
namespace and object names moved aside (tests/cluster/install_support.py) so the operator suites' own `kestrel`
install is left alone.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.cluster import install_support
from tests.cluster_fixtures import Cluster

pytestmark = pytest.mark.cluster

PLAIN = pathlib.Path(__file__).parents[2] / "deploy" / "kestrel.yaml"


def test_kubectl_apply_installs_the_operator_deployment_and_applying_again_changes_nothing(with_crd: Cluster) -> None:
    kube = with_crd
    text, namespace, prefix = install_support.isolated(PLAIN.read_text())
    crds, objects = install_support.split(text)
    assert next(o["kind"] for o in objects) == "Namespace", "the namespace must be created before what lives in it"
    try:
        install_support.apply_crds(kube, crds)
        applied = kube.kubectl("apply", "--server-side", "-f", "-", stdin=install_support.dump(objects), check=False)
        assert applied.returncode == 0, applied.stderr
        assert f"deployment.apps/{prefix}-operator serverside-applied" in applied.stdout
        kube.kubectl("rollout", "status", f"deployment/{prefix}-operator", f"--namespace={namespace}", "--timeout=180s")
        deployment = kube.kubectl("get", "deployment", f"{prefix}-operator", f"--namespace={namespace}", "-o", "yaml")
        assert f"serviceAccountName: {prefix}-operator" in deployment.stdout

        # Idempotent: a server-side diff of the same file finds nothing to change.
        diff = kube.kubectl("diff", "--server-side", "-f", "-", stdin=text, check=False)
        assert diff.returncode == 0, diff.stdout + diff.stderr
    finally:
        install_support.cleanup(kube, namespace, prefix)
