"""The PodMonitor settings, from the chart's modelMetrics.podMonitor to the operator's environment to Settings: on by
default, its interval and labels checked at start-up (naming the variable) and by the chart's schema alike."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kestrel import settings as operator_settings
from tests.unit.helm_support import CHART, find, helm, refused, render

STORE = {f"{operator_settings.PREFIX}ENGINE_STORE": "s3://engines"}
LABELS = f"{operator_settings.PREFIX}POD_MONITOR_LABELS"
INTERVAL = f"{operator_settings.PREFIX}POD_MONITOR_INTERVAL"


def _env(objects: list[dict[str, Any]]) -> dict[str, str]:
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _accepted(env: dict[str, str]) -> bool:
    try:
        operator_settings.from_environment({**STORE, **env})
    except ValueError:
        return False
    return True


def test_on_every_thirty_seconds_without_labels_by_default() -> None:
    settings = operator_settings.from_environment(STORE).settings
    assert (settings.pod_monitor, settings.pod_monitor_interval, settings.pod_monitor_labels) == (True, "30s", ())
    from_chart = operator_settings.from_environment(_env(render())).settings
    assert (from_chart.pod_monitor, from_chart.pod_monitor_interval, from_chart.pod_monitor_labels) == (True, "30s", ())


def test_chart_values_reach_the_settings() -> None:
    objects = render(
        "modelMetrics.podMonitor.enabled=false",
        "modelMetrics.podMonitor.interval=1m30s",
        "modelMetrics.podMonitor.labels.release=prometheus",
        "modelMetrics.podMonitor.labels.example\\.com/team=vision",
    )
    settings = operator_settings.from_environment(_env(objects)).settings
    assert settings.pod_monitor is False
    assert settings.pod_monitor_interval == "1m30s"
    # In key order, as the chart joins them.
    assert settings.pod_monitor_labels == (("example.com/team", "vision"), ("release", "prometheus"))


def test_labels_are_read_in_order_and_may_have_empty_values() -> None:
    settings = operator_settings.from_environment(
        {**STORE, LABELS: " release=prometheus, example.com/tier= ,,"}
    ).settings
    assert settings.pod_monitor_labels == (("release", "prometheus"), ("example.com/tier", ""))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("release", "is not a label key=value"),
        ("my release=prometheus", "is not a label key=value"),
        ("release=prom etheus", "is not a label key=value"),
        ("release=" + "p" * 64, "is not a label key=value"),
        ("Example.com/team=x", "is not a label key=value"),
        ("release=a,release=b", "is given twice"),
        ("kestrel.dev/model=other", "Kestrel sets its app.kubernetes.io/ and kestrel.dev/ labels itself"),
        ("app.kubernetes.io/name=other", "Kestrel sets its app.kubernetes.io/ and kestrel.dev/ labels itself"),
    ],
)
def test_a_bad_label_is_refused_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{LABELS}=.*{re.escape(message)}"):
        operator_settings.from_environment({**STORE, LABELS: value})


@pytest.mark.parametrize("value", ["30s", "1m30s", "500ms", "2h", "1h0m5s"])
def test_intervals_the_crd_accepts_are_accepted(value: str) -> None:
    assert _accepted({INTERVAL: value})


@pytest.mark.parametrize("value", ["30", "", "1s1m", "thirty", "30 s", "-1s"])
def test_an_interval_the_crd_would_refuse_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=rf"^{INTERVAL}=.*expected a duration"):
        operator_settings.from_environment({**STORE, INTERVAL: value})


def test_the_switch_is_true_or_false_only() -> None:
    assert (
        operator_settings.from_environment(
            {**STORE, f"{operator_settings.PREFIX}POD_MONITOR": "false"}
        ).settings.pod_monitor
        is False
    )
    with pytest.raises(ValueError, match="KESTREL_POD_MONITOR='no': expected true or false"):
        operator_settings.from_environment({**STORE, f"{operator_settings.PREFIX}POD_MONITOR": "no"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("release", "prometheus"),
        ("example.com/team", "vision"),
        ("tier", ""),
        ("my release", "x"),
        ("release", "prom etheus"),
        ("Example.com/team", "x"),
        ("kestrel.dev/model", "x"),
        ("app.kubernetes.io/part-of", "x"),
    ],
)
def test_chart_accepts_the_labels_the_operator_accepts(key: str, value: str) -> None:
    escaped = key.replace(".", "\\.")  # --set splits keys at unescaped dots
    done = helm("template", "kestrel", str(CHART), f"--set-string=modelMetrics.podMonitor.labels.{escaped}={value}")
    assert (done.returncode == 0) == _accepted({LABELS: f"{key}={value}"}), done.stderr


@pytest.mark.parametrize("value", ["30s", "1m30s", "500ms", "30", "1s1m", "thirty"])
def test_chart_accepts_the_intervals_the_operator_accepts(value: str) -> None:
    done = helm("template", "kestrel", str(CHART), f"--set-string=modelMetrics.podMonitor.interval={value}")
    assert (done.returncode == 0) == _accepted({INTERVAL: value}), done.stderr


def test_chart_refuses_kestrels_own_labels_with_a_message_naming_the_value() -> None:
    message = refused("modelMetrics.podMonitor.labels.kestrel\\.dev/model=other")
    assert "modelMetrics.podMonitor.labels.kestrel.dev/model: Kestrel sets" in message
