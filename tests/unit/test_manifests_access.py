"""Only allowed namespaces reach client ports, plain HTTP stays in the pod, only allowed subjects read the key."""

from __future__ import annotations

from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import access, owners, triton
from tests.unit.spec_support import UNMEASURED

OWNER = owners.Owner(name="cams", namespace="vision", uid="u-1")
SETTINGS = operator_settings.Settings(
    engine_store="s3://engines", operator_namespace="kestrel", scraper_namespaces=("prom",)
)


def parse(**sections: Any) -> specs.ModelDeploymentSpec:
    return specs.parse({"model": {"source": {"uri": "file:///models/m.pt"}}, "validation": UNMEASURED, **sections})


# The operator's own pods, as the chart labels them (release "kestrel"), in the operator's namespace.
OPERATOR_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kestrel"}},
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "kestrel",
            "app.kubernetes.io/instance": "kestrel",
            "app.kubernetes.io/component": "operator",
        }
    },
}


def rules(
    spec: specs.ModelDeploymentSpec, settings: operator_settings.Settings = SETTINGS
) -> list[tuple[list[str], list[Any]]]:
    """Each ingress rule's whole namespaces and ports; every rule also admits the operator's pods, and only them."""
    policy = access.network_policy(spec, OWNER, settings)
    found = []
    for rule in policy["spec"]["ingress"]:
        *namespaces, operator = rule["from"]
        assert operator == OPERATOR_PEER
        values: list[str] = []
        for peer in namespaces:
            assert set(peer) == {"namespaceSelector"}
            (expression,) = peer["namespaceSelector"]["matchExpressions"]
            assert expression["key"] == "kubernetes.io/metadata.name"
            values = expression["values"]
        found.append((values, [p["port"] for p in rule["ports"]]))
    return found


def test_clients_reach_grpc_and_the_tls_proxy_but_never_plain_http_while_tls_is_on() -> None:
    (clients, client_ports), (scrapers, metrics_ports) = rules(parse())
    assert client_ports == ["grpc", "https"]
    assert clients == ["vision"]  # this namespace by default; of the operator's, its pods alone (smoke test)
    assert (scrapers, metrics_ports) == (["prom"], ["metrics"])


def test_no_other_pod_of_the_operators_namespace_is_admitted() -> None:
    policy = access.network_policy(parse(), OWNER, SETTINGS)
    for rule in policy["spec"]["ingress"]:
        whole = [p for p in rule["from"] if "podSelector" not in p]
        assert all("kestrel" not in p["namespaceSelector"]["matchExpressions"][0]["values"] for p in whole)
        # A peer with a namespaceSelector and no podSelector admits every pod there: the operator's has both.
        (operator,) = [p for p in rule["from"] if "podSelector" in p]
        assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_the_operator_is_found_by_its_release_name() -> None:
    settings = operator_settings.Settings(
        engine_store="s3://engines", operator_namespace="ml-ops", operator_instance="ml"
    )
    policy = access.network_policy(parse(), OWNER, settings)
    operator = policy["spec"]["ingress"][0]["from"][-1]
    assert operator["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "ml-ops"}}
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "ml"


def test_without_scrapers_only_the_operator_reaches_metrics() -> None:
    settings = operator_settings.Settings(
        engine_store="s3://engines", operator_namespace="kestrel", scraper_namespaces=()
    )
    _, (scrapers, metrics_ports) = rules(parse(), settings)
    assert (scrapers, metrics_ports) == ([], ["metrics"])


def test_plain_http_is_admitted_only_when_tls_is_disabled_explicitly() -> None:
    (_, client_ports), _ = rules(parse(security={"tls": {"mode": "disabled"}}))
    assert client_ports == ["grpc", "http"]


def test_allowed_namespaces_replace_the_default() -> None:
    (clients, _), _ = rules(parse(security={"access": {"allowedNamespaces": ["apps", "edge"]}}))
    assert clients == ["apps", "edge"]


def test_policy_selects_every_triton_pod_of_the_model() -> None:
    policy = access.network_policy(parse(), OWNER, SETTINGS)
    selector = policy["spec"]["podSelector"]["matchLabels"].items()
    for track_labels in (
        triton.deployment(parse(), OWNER, SETTINGS, "k" * 64)["spec"]["template"]["metadata"]["labels"],
        triton.canary_deployment(parse(), OWNER, SETTINGS, "k" * 64, replicas=1)["spec"]["template"]["metadata"][
            "labels"
        ],
    ):
        assert selector <= track_labels.items()


def test_role_reads_exactly_the_api_key_secret_and_the_ca_bundle_and_nothing_else() -> None:
    key, ca = access.api_key_role(OWNER)["rules"]
    assert key == {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["cams-api-key"], "verbs": ["get"]}
    assert ca == {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cams-ca"], "verbs": ["get"]}


def test_binding_names_the_allowed_groups_and_service_accounts() -> None:
    spec = parse(security={"access": {"allowedGroups": ["ops"], "allowedServiceAccounts": ["apps/gateway"]}})
    binding = access.api_key_role_binding(spec, OWNER)
    assert binding is not None
    assert binding["roleRef"]["name"] == access.api_key_role(OWNER)["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "ops"},
        {"kind": "ServiceAccount", "name": "gateway", "namespace": "apps"},
    ]


def test_nobody_allowed_means_no_binding() -> None:
    assert access.api_key_role_binding(parse(), OWNER) is None
