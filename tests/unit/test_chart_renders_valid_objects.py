"""The chart lints clean, renders objects valid for the test bed's Kubernetes, and refuses bad values clearly."""

from __future__ import annotations

import base64
import datetime
import os
import pathlib
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

import kestrel
from kestrel import settings as operator_settings
from kestrel.manifests import secrets
from kestrel.security import certificates, keyfiles, x25519
from tests.unit import helm_support
from tests.unit.helm_support import CHART, find, refused, render

KUBERNETES_VERSION = "1.34"  # the test bed's pinned release
NAMESPACED = ("watchNamespaces={vision,retail}",)
# What a platform team sets on day one: placement, priority, its own labels, a cloud identity, a registry.
PLATFORM: dict[str, Any] = {
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]
            }
        }
    },
    "priorityClassName": "platform-critical",
    "podLabels": {"team": "ml-platform", "cost-center": "42"},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/kestrel"}},
    "imagePullSecrets": ["regcred", {"name": "mirror"}],
}


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == kestrel.__version__, "Chart.yaml appVersion must be the package version"
    assert chart["version"] == kestrel.__version__


@pytest.mark.parametrize(
    "sets",
    [
        (),
        NAMESPACED,
        ("metrics.serviceMonitor.enabled=true", "createNamespace=true"),
        ("priorityClassName=platform-critical", "podLabels.team=ml", "serviceAccount.annotations.a=b"),
    ],
)
def test_helm_lint_is_clean(sets: tuple[str, ...]) -> None:
    done = helm_support.helm("lint", "--strict", str(CHART), *(f"--set={s}" for s in sets))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("sets", [(), NAMESPACED, ("createNamespace=true", "networkPolicy.enabled=false")])
def test_every_object_is_valid_for_kubernetes(sets: tuple[str, ...]) -> None:
    objects = render(*sets)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_platform_values_render_objects_valid_for_kubernetes() -> None:
    for obj in render(values=PLATFORM):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_validation_can_fail() -> None:
    deployment = find(render(), "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def test_operator_runs_alone_hardened_and_probed() -> None:
    objects = render()
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = _pod(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["args"][:3] == ["run", "--health-port=8080", "--metrics-port=9090"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == find(objects, "ServiceAccount")["metadata"]["name"]


def test_operator_pod_takes_the_platforms_placement_priority_and_labels() -> None:
    objects = render(values=PLATFORM)
    pod = _pod(objects)
    assert pod["affinity"] == PLATFORM["affinity"]
    assert pod["priorityClassName"] == "platform-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= {"team": "ml-platform", "cost-center": "42"}.items()
    # The chart's own labels stay: the Service (and every model's NetworkPolicy) selects the pod by them.
    assert find(objects, "Service")["spec"]["selector"].items() <= labels.items()
    assert labels.items() >= find(render(), "Deployment")["spec"]["template"]["metadata"]["labels"].items()


def test_no_placement_priority_or_extra_labels_by_default() -> None:
    objects = render()
    pod = _pod(objects)
    assert not {"affinity", "priorityClassName", "imagePullSecrets"} & set(pod)
    labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert {key.split("/")[0] for key in labels} == {"app.kubernetes.io", "helm.sh"}


def test_service_account_annotations_give_the_operator_a_cloud_identity() -> None:
    objects = render(values=PLATFORM)
    account = find(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == PLATFORM["serviceAccount"]["annotations"]
    assert _pod(objects)["serviceAccountName"] == account["metadata"]["name"]
    assert "annotations" not in find(render(), "ServiceAccount")["metadata"]


def test_metrics_service_selects_the_operator_pod_and_monitor_is_optional() -> None:
    objects = render()
    service = find(objects, "Service")
    labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"]
    monitor = find(render("metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_network_policy_admits_only_the_scrapers_to_the_metrics_port() -> None:
    policy = find(render("networkPolicy.metricsNamespaces={prom}"), "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prom"}}}]
    assert policy["spec"]["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize(
    "values", ["networkPolicy: {metricsNamespaces: []}", "networkPolicy: {metricsNamespaces: null}"]
)
def test_network_policy_without_scrapers_admits_nobody(tmp_path: pathlib.Path, values: str) -> None:
    # An ingress rule whose `from` is empty or null admits every source: no scrapers must mean no rule at all.
    (tmp_path / "values.yaml").write_text(values + "\n")
    done = helm_support.helm(
        "template", "kestrel", str(CHART), "--namespace=kestrel-system", f"--values={tmp_path / 'values.yaml'}"
    )
    assert done.returncode == 0, done.stderr
    policy = find([doc for doc in yaml.safe_load_all(done.stdout) if doc], "NetworkPolicy")
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == []


def test_replicas_elect_a_leader_on_a_lease_they_alone_may_write() -> None:
    objects = render("replicas=2")
    assert find(objects, "Deployment")["spec"]["replicas"] == 2
    env = {e["name"]: e["value"] for e in _pod(objects)["containers"][0]["env"]}
    assert env["KESTREL_LEADER_LEASE"] == "kestrel-operator"
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    assert roles["kestrel-operator-leader"]["metadata"]["namespace"] == "kestrel-system"
    assert roles["kestrel-operator-leader"]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    # One replica elects nobody (a restarted pod need not wait out its predecessor's Lease) unless asked to.
    single = render()
    assert "KESTREL_LEADER_LEASE" not in {e["name"] for e in _pod(single)["containers"][0]["env"]}
    assert not [o for o in single if o["kind"] == "Role"]
    forced = render("leaderElection=true")
    assert "KESTREL_LEADER_LEASE" in {e["name"] for e in _pod(forced)["containers"][0]["env"]}


def test_cluster_wide_mode_uses_one_cluster_role() -> None:
    objects = render()
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    role = find(objects, "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"secrets", "jobs", "deployments", "customresourcedefinitions"} <= resources
    binding = find(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kestrel-operator", "namespace": "kestrel-system"}
    ]


def test_namespaced_mode_uses_roles_in_each_watched_namespace() -> None:
    objects = render(*NAMESPACED)
    cluster_role = find(objects, "ClusterRole")
    cluster_resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert cluster_resources == {"customresourcedefinitions", "namespaces"}
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"}
    assert set(roles) == {
        ("vision", "kestrel-operator"),
        ("retail", "kestrel-operator"),
        ("kestrel-system", "kestrel-operator-self"),
    }
    assert {r for rule in roles[("kestrel-system", "kestrel-operator-self")]["rules"] for r in rule["resources"]} == {
        "secrets"
    }
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]
    env = {e["name"]: e["value"] for e in _pod(objects)["containers"][0]["env"]}
    assert env["KESTREL_WATCH_NAMESPACES"] == "vision,retail"


def test_own_namespace_among_the_watched_ones_needs_no_extra_role() -> None:
    objects = render("watchNamespaces={kestrel-system}")
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Role"] == ["kestrel-operator"]


def test_bring_your_own_ca_is_the_secret_the_operator_reads(tmp_path: pathlib.Path) -> None:
    ca = certificates.create_ca(now=datetime.datetime.now(datetime.UTC))
    (tmp_path / "ca.crt").write_bytes(ca.certificate_pem())
    (tmp_path / "ca.key").write_bytes(ca.private_key_pem())
    objects = render(files={"ca.certificate": tmp_path / "ca.crt", "ca.key": tmp_path / "ca.key"})
    secret = find(objects, "Secret")
    assert secret["metadata"]["name"] == secrets.CA_SECRET
    assert secret["metadata"]["namespace"] == "kestrel-system"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Decoded the way reconcilers/security/tls.py reads its CA: the same certificate and key come back.
    loaded = certificates.Issued.from_pem(secrets.decode(secret, "tls.crt"), secrets.decode(secret, "tls.key"))
    assert loaded.certificate == ca.certificate
    assert not [o for o in render() if o["kind"] == "Secret"]


def test_encryption_keys_are_secrets_the_loader_reads(tmp_path: pathlib.Path) -> None:
    raw = os.urandom(32)
    objects = render(
        "encryptionKeys[0].namespace=vision",
        "encryptionKeys[0].name=inspection-kek",
        f"encryptionKeys[0].key={base64.b64encode(raw).decode()}",
    )
    secret = find(objects, "Secret")
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == ("vision", "inspection-kek")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "stringData" not in secret
    # Mounted as a Secret volume, the key `kek` is the file the loader reads (the operator too, for the public key).
    (tmp_path / keyfiles.CURRENT_KEK).write_bytes(secrets.decode(secret, keyfiles.CURRENT_KEK))
    (loaded,) = keyfiles.read_kek_dir(tmp_path)
    assert loaded.key_id == x25519.PrivateKek(raw).key_id
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("engineStore=http://bucket/engines",), "engineStore"),
        (("resyncSeconds=0",), "resyncSeconds"),
        (("watchNamespaces={Vision}",), "watchNamespaces"),
        (("images.pullPolicy=Sometimes",), "pullPolicy"),
        (("images.digests.kestrel-loader=sha256:abc",), "kestrel-loader"),
        (("images.digests.kestrel-loadr=sha256:" + "a" * 64,), "kestrel-loadr"),
        (("replicas=0",), "replicas"),
        (("replicas=2", "leaderElection=false"), "replicas is 2 but leaderElection is false"),
        (("metrics.port=8080",), "healthPort and metrics.port are both 8080"),
        (("ca.certificate=-----BEGIN CERTIFICATE-----x",), "ca.certificate and ca.key go together"),
        (("metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"), "needs metrics.service.enabled"),
        (("podLabels.app\\.kubernetes\\.io/instance=other",), "podLabels.app.kubernetes.io/instance: the chart sets"),
        (("podLabels.helm\\.sh/chart=other",), "podLabels.helm.sh/chart: the chart sets"),
        (("priorityClassName=High",), "priorityClassName"),
        (("affinity.nodeSelector.pool=system",), "affinity"),
        (("serviceAccount.annotations.a=1",), "serviceAccount/annotations/a"),
        (("imagePullSecrets={Regcred}",), "imagePullSecrets/0"),
        (
            ("encryptionKeys[0].namespace=vision", "encryptionKeys[0].name=k", "encryptionKeys[0].key=c2hvcnQ="),
            "encryptionKeys/0/key",
        ),
    ],
)
def test_bad_values_fail_with_a_message_naming_them(sets: tuple[str, ...], message: str) -> None:
    assert message in refused(*sets)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://engines",
        "s3://kestrel-engines/engines",
        "pvc://engine-claim/prod/v1/",
        "http://engines/prod",
        "s3://",
        "s3://engines//prod",
        "s3://engines/../prod",
        "pvc://claim/./x",
        "file:///engines",
        "s3://engines/a//b",
        "s3://engines/.cache/x",
        "s3://engines/p?region=x",
    ],
)
def test_schema_accepts_the_engine_stores_the_operator_accepts(uri: str) -> None:
    # values.schema.json refuses at `helm install` what the operator would refuse at start-up, and nothing else.
    try:
        operator_settings.Store.parse(uri)
        operator_accepts = True
    except ValueError:
        operator_accepts = False
    done = helm_support.helm("template", "kestrel", str(CHART), f"--set=engineStore={uri}")
    assert (done.returncode == 0) == operator_accepts, done.stderr
