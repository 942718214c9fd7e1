"""`helm install` creates the operator and its RBAC, `helm upgrade` changes them, `helm uninstall` leaves no orphans.

kwok runs the operator's pod on a fake node and reports it Ready, so the Deployment becomes available as in a
real cluster; that the chart's operator really runs is shown on the real node (tests/realnode/). Each test
installs its own release into its own namespace: release-named ClusterRoles do not collide with the `kestrel`
release the operator suites use.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import uuid
from typing import Any

import pytest

from kestrel.api import crd
from tests.cluster_fixtures import Cluster

pytestmark = pytest.mark.cluster

CHART = pathlib.Path(__file__).parents[2] / "charts" / "kestrel"
NAMESPACED_KINDS = "deployments,services,serviceaccounts,roles,rolebindings,networkpolicies,secrets,configmaps"


def helm(kube: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kube.bed.bin_dir / "helm"), f"--kubeconfig={kube.bed.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _get(kube: Cluster, *args: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(kube.kubectl("get", *args, "-o", "json").stdout)
    return loaded


def _env(kube: Cluster, namespace: str, release: str) -> dict[str, str]:
    deployment = _get(kube, "deployment", f"{release}-operator", f"--namespace={namespace}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def _available(kube: Cluster, namespace: str, release: str) -> bool:
    status = _get(kube, "deployment", f"{release}-operator", f"--namespace={namespace}")["status"]
    return any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions", []))


def _labelled(kube: Cluster, kinds: str, release: str, *scope: str) -> list[str]:
    found = kube.kubectl("get", kinds, *scope, f"--selector=app.kubernetes.io/instance={release}", "-o", "name")
    return found.stdout.split()


@pytest.fixture
def release() -> str:
    return f"k{uuid.uuid4().hex[:8]}"


PLATFORM_VALUES = """
imagePullSecrets: [registry-pull]
serviceAccount:
  annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/kestrel"}
podLabels: {team: platform}
affinity:
  nodeAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        preference: {matchExpressions: [{key: node-role.kubernetes.io/system, operator: Exists}]}
logFormat: json
"""


def test_install_upgrade_uninstall(with_crd: Cluster, pod_namespace: str, release: str, tmp_path: pathlib.Path) -> None:
    kube, namespace = with_crd, pod_namespace
    platform = tmp_path / "platform.yaml"
    platform.write_text(PLATFORM_VALUES)
    priority = f"{release}-operators"
    kube.kubectl("create", "priorityclass", priority, "--value=1000000")
    try:
        installed = helm(kube, "install", release, str(CHART), f"--namespace={namespace}", "--wait", "--timeout=180s")
        assert installed.returncode == 0, installed.stderr
        assert "kubectl get mdep -w" in installed.stdout  # NOTES.txt tells the next step
        assert _available(kube, namespace, release)
        assert _env(kube, namespace, release)["KESTREL_RESYNC_SECONDS"] == "30"
        assert _labelled(kube, "clusterroles,clusterrolebindings", release) == [
            f"clusterrole.rbac.authorization.k8s.io/{release}-operator",
            f"clusterrolebinding.rbac.authorization.k8s.io/{release}-operator",
        ]

        # Upgrade to namespace-scoped mode with another resync interval: a new pod (Recreate), Roles instead.
        upgraded = helm(
            kube,
            "upgrade",
            release,
            str(CHART),
            f"--namespace={namespace}",
            "--reuse-values",
            "--set=resyncSeconds=60",
            f"--set=watchNamespaces={{{namespace}}}",
            f"--values={platform}",
            f"--set=priorityClassName={priority}",
            "--wait",
            "--timeout=180s",
        )
        assert upgraded.returncode == 0, upgraded.stderr
        env = _env(kube, namespace, release)
        assert env["KESTREL_RESYNC_SECONDS"] == "60"
        assert env["KESTREL_WATCH_NAMESPACES"] == namespace
        assert _available(kube, namespace, release)
        role = _get(kube, "role", f"{release}-operator", f"--namespace={namespace}")
        assert {r for rule in role["rules"] for r in rule["resources"]} >= {"secrets", "jobs", "deployments"}
        cluster_role = _get(kube, "clusterrole", f"{release}-operator")
        assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
            "customresourcedefinitions",
            "namespaces",
        }
        revision = json.loads(helm(kube, "history", release, f"--namespace={namespace}", "-o", "json").stdout)
        assert [r["revision"] for r in revision] == [1, 2]
        # The platform values reached the objects the API server admitted, and the operator's pod.
        assert env["KESTREL_LOG_FORMAT"] == "json" and env["KESTREL_IMAGE_PULL_SECRETS"] == "registry-pull"
        account = _get(kube, "serviceaccount", "kestrel-operator", f"--namespace={namespace}")
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/kestrel")
        (pod,) = _get(kube, "pods", f"--namespace={namespace}", "--selector=team=platform")["items"]
        assert pod["spec"]["priorityClassName"] == priority and pod["spec"]["priority"] == 1000000
        assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-pull"}]
        assert pod["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    finally:
        kube.kubectl("delete", "priorityclass", priority, check=False)
        uninstalled = helm(kube, "uninstall", release, f"--namespace={namespace}", "--wait", "--timeout=120s")
    assert uninstalled.returncode == 0, uninstalled.stderr
    assert _labelled(kube, NAMESPACED_KINDS, release, f"--namespace={namespace}") == []
    assert _labelled(kube, "clusterroles,clusterrolebindings", release) == []
    # Helm never deletes the CRDs it installed from crds/: deleting one would delete every ModelDeployment.
    assert kube.kubectl("get", "crd", crd.CRD_NAME, check=False).returncode == 0


def test_bad_values_fail_the_install_and_install_nothing(with_crd: Cluster, namespace: str, release: str) -> None:
    refused = helm(
        with_crd, "install", release, str(CHART), f"--namespace={namespace}", "--set=engineStore=ftp://engines"
    )
    assert refused.returncode != 0
    assert "engineStore" in refused.stderr
    assert helm(with_crd, "status", release, f"--namespace={namespace}").returncode != 0
    assert _labelled(with_crd, "clusterroles", release) == []


CHART_README = CHART / "README.md"


def test_the_readmes_crd_upgrade_takes_over_the_fields_helm_wrote(with_crd: Cluster) -> None:
    """charts/kestrel/README.md's CRD command, as written, updates a CRD whose fields Helm's manager owns (as after
    `helm install`): without --force-conflicts the same apply is refused with a conflict."""
    kube = with_crd
    (command,) = re.findall(
        r"`(kubectl apply --server-side --force-conflicts -f charts/[^`]+)`", CHART_README.read_text()
    )
    # An older CRD, written by Helm's field manager: here one description differs from the chart's.
    stored = _get(kube, "crd", crd.CRD_NAME)
    schema = stored["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    new_description = schema["description"]
    schema["description"] = "An older Kestrel's description."
    kube.kubectl("replace", "--field-manager=helm", "-f", "-", stdin=json.dumps(stored))

    def run(line: str) -> subprocess.CompletedProcess[str]:
        argv = line.split()
        return subprocess.run(
            [str(kube.bed.bin_dir / "kubectl"), f"--kubeconfig={kube.bed.kubeconfig}", *argv[1:]],
            cwd=CHART.parents[1],
            capture_output=True,
            text=True,
            check=False,
        )

    refused = run(command.replace(" --force-conflicts", ""))
    assert refused.returncode != 0 and "conflict" in refused.stderr.lower(), refused.stderr
    upgraded = run(command)
    assert upgraded.returncode == 0, upgraded.stderr
    after = _get(kube, "crd", crd.CRD_NAME)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert after["description"] == new_description
