"""The Helm chart lints clean, and the real API server accepts everything it renders, in both RBAC modes."""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import yaml

from tests.cluster_fixtures import Cluster

pytestmark = pytest.mark.cluster

CHART = pathlib.Path(__file__).parents[2] / "charts" / "kestrel"


def helm(kube: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kube.bed.bin_dir / "helm"), *args], capture_output=True, text=True, check=False)


def test_helm_lint_is_clean(kube: Cluster) -> None:
    linted = helm(kube, "lint", "--strict", str(CHART))
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_rendered_chart_passes_server_side_dry_run(kube: Cluster, namespace: str, mode: str) -> None:
    sets = [f"--set=watchNamespaces={{{namespace}}}"] if mode == "namespaced" else []
    rendered = helm(kube, "template", "dry", str(CHART), f"--namespace={namespace}", *sets)
    assert rendered.returncode == 0, rendered.stderr
    applied = kube.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=kestrel-tests",
        f"--namespace={namespace}",
        "-f",
        "-",
        stdin=rendered.stdout,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered.stdout) if doc}
    expected = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "NetworkPolicy"}
    if mode == "namespaced":
        expected |= {"Role", "RoleBinding"}
    assert kinds == expected
    for kind in ("serviceaccount", "clusterrole.rbac.authorization.k8s.io", "deployment.apps"):
        assert kind in applied.stdout


def test_operator_role_has_no_wildcards(kube: Cluster) -> None:
    rendered = helm(kube, "template", "kestrel", str(CHART), "--show-only=templates/rbac.yaml")
    assert rendered.returncode == 0, rendered.stderr
    for doc in yaml.safe_load_all(rendered.stdout):
        for rule in doc.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule
