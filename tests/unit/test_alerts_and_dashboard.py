"""Kestrel's alerting rules pass `promtool check rules` and their unit tests (tests/alerts/alerts.test.yaml), the
Grafana dashboard is the one testbed/dashboard.py writes, and every query of both names only series that Kestrel's
operator or a real Triton exports. The chart renders both, when asked."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import prometheus_client
import pytest
import yaml

from kestrel import operator_metrics  # noqa: F401 - registers the operator's series in the default registry
from testbed import build, components, dashboard
from tests.unit.helm_support import find, render

ROOT = pathlib.Path(__file__).parents[2]
DRIFT_METRICS = ROOT / "tests" / "fixtures" / "triton-metrics" / "drift-blank-images.txt"
ALERTS = ROOT / "charts" / "kestrel" / "files" / "alerts.yaml"
DASHBOARD = ROOT / "charts" / "kestrel" / "files" / "dashboard.json"
ALERT_TESTS = ROOT / "tests" / "alerts" / "alerts.test.yaml"
TRITON_METRICS = ROOT / "tests" / "fixtures" / "triton-metrics" / "summary-latencies.txt"  # a real Triton's text
SERIES = re.compile(r"\b((?:kestrel|nv)_[a-z0-9_]+)\b")


def _queries() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())["groups"]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [rule["expr"] for group in rules for rule in group["rules"]] + [
        target["expr"] for panel in panels for target in panel["targets"]
    ]


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def _exported() -> set[str]:
    """The operator's series names by their metric's type (a labelled one has no sample until first used), and the
    names a real Triton's /metrics carries (with a Kestrel-built model: its kestrel_* series too)."""
    operator = {
        family.name + suffix
        for family in prometheus_client.REGISTRY.collect()
        if family.name.startswith("kestrel_")
        for suffix in SUFFIXES[family.type]
    }
    triton = set(re.findall(r"^(nv_[a-z0-9_]+)", TRITON_METRICS.read_text(), re.MULTILINE))
    triton |= set(re.findall(r"^(kestrel_[a-z0-9_]+)", DRIFT_METRICS.read_text(), re.MULTILINE))
    return operator | triton


def test_every_query_names_only_exported_series() -> None:
    named = {name for query in _queries() for name in SERIES.findall(query)}
    assert named, "no query was read"
    assert not named - _exported(), f"queries name series nobody exports: {sorted(named - _exported())}"


def test_the_dashboard_is_the_generated_one() -> None:
    expected = json.dumps(dashboard.dashboard(), indent=2) + "\n"
    assert DASHBOARD.read_text() == expected, "run: make dashboard"


@pytest.mark.slow
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    build.build(components.PROMTOOL)  # cached with the test bed's components
    promtool = str(components.PROMTOOL.home / "bin" / "promtool")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_the_chart_renders_the_rules_and_the_dashboard_only_when_asked() -> None:
    plain = render()
    assert not [o for o in plain if o["kind"] == "PrometheusRule"]
    assert not [o for o in plain if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    objects = render(
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.labels.release=prometheus",
        "metrics.grafanaDashboard.enabled=true",
    )
    rule = find(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    (board,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["kestrel.json"]) == json.loads(DASHBOARD.read_text())
