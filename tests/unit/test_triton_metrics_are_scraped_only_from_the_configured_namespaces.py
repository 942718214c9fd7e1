"""Who may scrape a model's Triton metrics: the namespaces of KESTREL_SCRAPER_NAMESPACES (the chart's
modelMetrics.scrapeNamespaces), `monitoring` when unset, none when empty, and always the operator's own pods.

The operator's own metrics have a list of their own (networkPolicy.metricsNamespaces): neither list moves the other.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.reconcilers import context
from kestrel.reconcilers.security import access
from tests.unit import tls_fake_kube
from tests.unit.helm_support import find, render

VARIABLE = f"{operator_settings.PREFIX}SCRAPER_NAMESPACES"
STORE = {f"{operator_settings.PREFIX}ENGINE_STORE": "s3://engines"}
T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)


def _env(objects: list[dict[str, Any]]) -> dict[str, str]:
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    # A variable without a value is set to "" in the container, which is how the API server stores value "".
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _applied_policy(settings: operator_settings.Settings) -> dict[str, Any]:
    """The NetworkPolicy the access reconciler applies for a model under `settings`."""
    kube = tls_fake_kube.FakeKube()
    obj = tls_fake_kube.body({"mode": "disabled"})
    access.reconcile(context.Context.load(kube, obj, T0), settings)
    (policy,) = [body for key, body in kube.objects.items() if key[1] == "NetworkPolicy"]
    return policy


def _metrics_peers(policy: dict[str, Any]) -> tuple[list[str], bool]:
    """The namespaces whose every pod may reach the metrics port, and whether the operator's pods may."""
    (rule,) = [r for r in policy["spec"]["ingress"] if r["ports"] == [{"port": "metrics", "protocol": "TCP"}]]
    namespaces: list[str] = []
    operator = False
    for peer in rule["from"]:
        if "podSelector" in peer:
            operator = peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
            continue
        (expression,) = peer["namespaceSelector"]["matchExpressions"]
        assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "In")
        namespaces += expression["values"]
    return namespaces, operator


def test_unset_means_monitoring_as_before() -> None:
    assert operator_settings.from_environment(STORE).settings.scraper_namespaces == ("monitoring",)


def test_names_are_read_in_order_once_each() -> None:
    settings = operator_settings.from_environment({**STORE, VARIABLE: " prom, observability,,prom "}).settings
    assert settings.scraper_namespaces == ("prom", "observability")


def test_an_empty_value_admits_no_namespace_but_the_operator() -> None:
    settings = operator_settings.from_environment({**STORE, VARIABLE: ""}).settings
    assert settings.scraper_namespaces == ()
    assert _metrics_peers(_applied_policy(settings)) == ([], True)


@pytest.mark.parametrize("value", ["Monitoring", "prom_1", "-prom", "a" * 64, "prom.svc", "prom ops"])
def test_a_bad_namespace_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=rf"^{VARIABLE}=.*is not a namespace name"):
        operator_settings.from_environment({**STORE, VARIABLE: f"monitoring,{value}"})


def test_the_applied_policy_admits_exactly_the_configured_namespaces_to_metrics() -> None:
    settings = operator_settings.from_environment({**STORE, VARIABLE: "prom,observability"}).settings
    policy = _applied_policy(settings)
    assert _metrics_peers(policy) == (["observability", "prom"], True)
    # Clients are fenced apart: no scraper namespace reaches the inference ports through this list.
    (clients,) = [r for r in policy["spec"]["ingress"] if r["ports"] != [{"port": "metrics", "protocol": "TCP"}]]
    assert "prom" not in str(clients["from"])


def test_chart_default_keeps_monitoring() -> None:
    env = _env(render())
    assert env[VARIABLE] == "monitoring"
    assert operator_settings.from_environment(env).settings.scraper_namespaces == ("monitoring",)


def test_chart_value_reaches_the_models_network_policy() -> None:
    settings = operator_settings.from_environment(
        _env(render("modelMetrics.scrapeNamespaces={prom,observability}"))
    ).settings
    assert _metrics_peers(_applied_policy(settings)) == (["observability", "prom"], True)


@pytest.mark.parametrize(
    "values", [{"modelMetrics": {"scrapeNamespaces": []}}, {"modelMetrics": {"scrapeNamespaces": None}}]
)
def test_chart_empty_list_means_no_namespace_not_the_default(values: dict[str, Any]) -> None:
    objects = render(values=values)
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    (variable,) = [e for e in container["env"] if e["name"] == VARIABLE]
    assert variable == {"name": VARIABLE}  # set, without a value: not the default
    assert operator_settings.from_environment(_env(objects)).settings.scraper_namespaces == ()


def test_the_operators_own_metrics_list_is_another_one() -> None:
    objects = render("networkPolicy.metricsNamespaces={ops}", "modelMetrics.scrapeNamespaces={prom}")
    (rule,) = find(objects, "NetworkPolicy")["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]
    assert operator_settings.from_environment(_env(objects)).settings.scraper_namespaces == ("prom",)
