"""The chart's values reach the operator: its environment parses into the Settings the values describe."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import access, owners, triton
from tests.unit.helm_support import CHART, find, helm, refused, render
from tests.unit.spec_support import UNMEASURED

# Read by kestrel/settings.py into the rest of the Configuration (Kopf's settings, the pools), not into Settings.
OPERATOR_VARIABLES = {
    f"{operator_settings.PREFIX}{name}"
    for name in ("WATCH_NAMESPACES", "RESYNC_SECONDS", "TRUST_SECONDS", "WORKERS", "LOG_FORMAT")
}
# Read by kestrel/settings.py into Settings as lists (comma-separated), each item checked.
LIST_VARIABLES = {
    f"{operator_settings.PREFIX}{name}" for name in ("IMAGE_PULL_SECRETS", "SCRAPER_NAMESPACES", "POD_MONITOR_LABELS")
}


def _env(objects: list[dict[str, Any]]) -> dict[str, str]:
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    # A variable without a value is set to "" in the container (the chart writes an empty list so).
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _settable() -> set[str]:
    """The variables operator_settings.from_environment reads into Settings (string and true/false fields)."""
    return {
        f"{operator_settings.PREFIX}{f.name.upper()}"
        for f in dataclasses.fields(operator_settings.Settings)
        if f.type in ("str", "str | None", "bool")
    }


def test_every_variable_the_chart_sets_is_read_by_the_operator() -> None:
    env = _env(
        render(
            "storeCredentialsSecret=store-creds",
            "imagePullSecrets={regcred}",
            "modelMetrics.podMonitor.labels.release=prometheus",
        )
    )
    assert set(env) >= LIST_VARIABLES
    unknown = set(env) - _settable() - OPERATOR_VARIABLES - LIST_VARIABLES
    assert not unknown, f"the chart sets variables the operator ignores: {sorted(unknown)}"
    # And every string setting the operator reads has a value in the chart.
    assert _settable() <= set(env), sorted(_settable() - set(env))


def test_default_values_give_the_operators_own_defaults() -> None:
    # The chart and the operator agree on images, store and Prometheus: installing with no values changes nothing.
    parsed = operator_settings.from_environment(_env(render(namespace="kestrel-system")))
    defaults = operator_settings.Settings(engine_store=parsed.settings.engine_store)
    assert parsed.settings == defaults
    assert parsed.watch_namespaces == ()


def test_values_reach_the_settings() -> None:
    objects = render(
        "engineStore=pvc://engines/prod",
        "storeCredentialsSecret=store-creds",
        "images.registry=registry.example.com/ml",
        "images.tag=1.2.3",
        "images.triton=registry.example.com/triton:24.10",
        "prometheusUrl=http://prometheus.obs.svc:9090",
        "watchNamespaces={vision,retail}",
        namespace="ml-ops",
    )
    parsed = operator_settings.from_environment(_env(objects))
    settings = parsed.settings
    assert settings.engine_store == "pvc://engines/prod"
    assert settings.store_credentials_secret == "store-creds"
    assert settings.operator_namespace == "ml-ops"
    assert settings.builder_image == "registry.example.com/ml/kestrel-builder:1.2.3"
    assert settings.builder_gpu_image == "registry.example.com/ml/kestrel-builder:1.2.3-gpu"
    assert settings.loader_image == "registry.example.com/ml/kestrel-loader:1.2.3"
    assert settings.triton_image == "registry.example.com/triton:24.10"
    assert settings.triton_cpu_image == "registry.example.com/ml/kestrel-triton-cpu:1.2.3"
    assert settings.prometheus_url == "http://prometheus.obs.svc:9090"
    assert parsed.watch_namespaces == ("vision", "retail")
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/ml/kestrel-operator:1.2.3"


def test_digests_pin_each_of_kestrels_images_that_names_one() -> None:
    operator, builder, gpu = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64
    objects = render(
        "images.registry=registry.example.com/ml",
        "images.tag=1.2.3",
        f"images.digests.kestrel-operator={operator}",
        f"images.digests.kestrel-builder={builder}",
        f"images.digests.kestrel-builder-gpu={gpu}",
    )
    settings = operator_settings.from_environment(_env(objects)).settings
    assert settings.builder_image == f"registry.example.com/ml/kestrel-builder:1.2.3@{builder}"
    assert settings.builder_gpu_image == f"registry.example.com/ml/kestrel-builder:1.2.3-gpu@{gpu}"
    # An image without a digest keeps its tag alone.
    assert settings.loader_image == "registry.example.com/ml/kestrel-loader:1.2.3"
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"registry.example.com/ml/kestrel-operator:1.2.3@{operator}"


def test_a_models_network_policy_admits_the_operator_pod_the_chart_runs() -> None:
    # Any release name: the models' policies admit the operator by the labels its own release gives its pod.
    objects = render(namespace="ml-ops", release="vision-ops")
    settings = operator_settings.from_environment(_env(objects)).settings
    spec = specs.parse({"model": {"source": {"uri": "file:///models/m.pt"}}, "validation": UNMEASURED})
    owner = owners.Owner(name="cams", namespace="vision", uid="u-1")
    pod_labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for rule in access.network_policy(spec, owner, settings)["spec"]["ingress"]:
        (operator,) = [peer for peer in rule["from"] if "podSelector" in peer]
        assert operator["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ml-ops"}
        assert operator["podSelector"]["matchLabels"].items() <= pod_labels.items()
    # And no other release's operator: the selector names this release.
    other = find(render(namespace="ml-ops", release="other"), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not operator["podSelector"]["matchLabels"].items() <= other.items()


def test_serving_checks_can_be_turned_off_and_nothing_else_is_read_as_false() -> None:
    assert operator_settings.from_environment(_env(render())).settings.serving_checks is True
    assert operator_settings.from_environment(_env(render("servingChecks=false"))).settings.serving_checks is False
    env = _env(render()) | {f"{operator_settings.PREFIX}SERVING_CHECKS": "off"}
    with pytest.raises(ValueError, match="KESTREL_SERVING_CHECKS='off': expected true or false"):
        operator_settings.from_environment(env)


def test_resync_interval_reaches_the_timer() -> None:
    assert operator_settings.from_environment(_env(render("resyncSeconds=45"))).resync_interval == 45.0


def test_trust_window_and_workers_reach_the_operator() -> None:
    env = _env(render())
    assert f"{operator_settings.PREFIX}TRUST_SECONDS" not in env  # unset: three resyncs
    assert operator_settings.from_environment(env).trust == 90.0
    configured = operator_settings.from_environment(_env(render("trustSeconds=0", "workers=32")))
    assert (configured.trust, configured.workers, configured.side_threads) == (0.0, 32, 4)


def test_pull_secrets_reach_the_operator_pod_and_every_pod_it_creates() -> None:
    objects = render("imagePullSecrets[0]=regcred", "imagePullSecrets[1].name=mirror.example.com")
    expected = [{"name": "regcred"}, {"name": "mirror.example.com"}]
    assert find(objects, "Deployment")["spec"]["template"]["spec"]["imagePullSecrets"] == expected
    settings = operator_settings.from_environment(_env(objects)).settings
    assert settings.image_pull_secrets == ("regcred", "mirror.example.com")
    # From the chart's values to a pod the operator creates: the settings the chart gives the operator.
    spec = specs.parse({"model": {"source": {"uri": "file:///models/m.pt"}}, "validation": UNMEASURED})
    owner = owners.Owner(name="cams", namespace="vision", uid="u-1")
    pod = triton.deployment(spec, owner, settings, "ab" * 32)["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == expected


def test_a_parent_charts_global_pull_secrets_come_first_and_are_checked() -> None:
    """As a subchart, the chart takes `global.imagePullSecrets` (the convention of charts that share pull Secrets)
    before its own, once each; a global entry that is no Secret name fails the render and names both values."""
    objects = render("global.imagePullSecrets[0].name=corp", "imagePullSecrets[0]=regcred", "imagePullSecrets[1]=corp")
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "corp"}, {"name": "regcred"}]
    assert operator_settings.from_environment(_env(objects)).settings.image_pull_secrets == ("corp", "regcred")
    message = refused("global.imagePullSecrets[0]=Corp")
    assert "global.imagePullSecrets / imagePullSecrets" in message and '"Corp" is not a Secret name' in message


def test_no_pull_secrets_by_default() -> None:
    objects = render()
    assert "imagePullSecrets" not in find(objects, "Deployment")["spec"]["template"]["spec"]
    assert f"{operator_settings.PREFIX}IMAGE_PULL_SECRETS" not in _env(objects)


@pytest.mark.parametrize("name", ["regcred", "mirror.example.com", "a" * 253, "RegCred", "reg_cred", "a..b", "a" * 254])
def test_schema_accepts_the_pull_secret_names_the_operator_accepts(name: str) -> None:
    env = {
        f"{operator_settings.PREFIX}ENGINE_STORE": "s3://engines",
        f"{operator_settings.PREFIX}IMAGE_PULL_SECRETS": name,
    }
    try:
        operator_settings.from_environment(env)
        operator_accepts = True
    except ValueError:
        operator_accepts = False
    done = helm("template", "kestrel", str(CHART), f"--set=imagePullSecrets[0]={name}")
    assert (done.returncode == 0) == operator_accepts, done.stderr


def test_log_format_reaches_the_operator() -> None:
    name = f"{operator_settings.PREFIX}LOG_FORMAT"
    assert operator_settings.from_environment(_env(render())).log_format == "text"
    assert operator_settings.from_environment(_env(render("logFormat=json"))).log_format == "json"
    with pytest.raises(ValueError, match="KESTREL_LOG_FORMAT='logfmt': expected one of text, json"):
        operator_settings.from_environment(_env(render()) | {name: "logfmt"})
    assert "logFormat" in refused("logFormat=logfmt")
