"""Canary analysis reads the canary's own pods, and the Argo form steps, pauses and analyses as the spec says."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import analysis, argo, autoscaling, owners, triton
from tests.unit.spec_support import UNMEASURED

OWNER = owners.Owner(name="cams", namespace="vision", uid="u-1")
SETTINGS = operator_settings.Settings(engine_store="s3://engines", prometheus_url="http://prom:9090")
KEY = "c0ffee00" * 8


def parse(rollout: dict[str, Any] | None = None, **sections: Any) -> specs.ModelDeploymentSpec:
    return specs.parse(
        {
            "model": {"source": {"uri": "file:///models/m.pt"}},
            "validation": UNMEASURED,
            "rollout": rollout or {},
            **sections,
        }
    )


CANARY = parse({"strategy": "canary", "canary": {"steps": [10, 50, 100], "interval": "3m"}})
STRICT = parse(
    {"strategy": "canary", "canary": {"steps": [20, 100], "analysis": {"maxErrorRate": 0.002, "maxP95LatencyMs": 25}}}
)


def steps(spec: specs.ModelDeploymentSpec) -> list[dict[str, Any]]:
    return argo.rollout(spec, OWNER, SETTINGS, KEY)["spec"]["strategy"]["canary"]["steps"]  # type: ignore[no-any-return]


def test_each_step_but_the_last_sets_weight_waits_the_interval_and_is_analysed() -> None:
    found = steps(CANARY)
    assert [s["setWeight"] for s in found if "setWeight" in s] == [10, 50]
    assert [s["pause"]["duration"] for s in found if "pause" in s] == ["180s", "180s"]
    assert [list(s) for s in found] == [["setWeight"], ["pause"], ["analysis"]] * 2
    analysed = found[2]["analysis"]
    assert analysed["templates"] == [{"templateName": "cams-triton"}]
    assert analysed["args"] == [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]


def test_rollout_carries_the_stable_deployments_name_template_and_selector() -> None:
    deployment = triton.deployment(CANARY, OWNER, SETTINGS, KEY, tls_checksum="x")
    rollout = argo.rollout(CANARY, OWNER, SETTINGS, KEY, tls_checksum="x")
    assert (rollout["apiVersion"], rollout["kind"]) == ("argoproj.io/v1alpha1", "Rollout")
    assert rollout["metadata"]["name"] == deployment["metadata"]["name"]
    assert rollout["spec"]["template"] == deployment["spec"]["template"]
    assert rollout["spec"]["selector"] == deployment["spec"]["selector"]
    assert rollout["spec"]["progressDeadlineSeconds"] == deployment["spec"]["progressDeadlineSeconds"]


@pytest.mark.parametrize("auto_rollback", [True, False])
def test_progress_deadline_aborts_only_when_auto_rollback_is_on(auto_rollback: bool) -> None:
    spec = parse({"strategy": "canary", "canary": {"steps": [100]}, "autoRollback": auto_rollback})
    assert argo.rollout(spec, OWNER, SETTINGS, KEY)["spec"]["progressDeadlineAbort"] is auto_rollback
    assert steps(spec) == []  # a single 100 % step is a plain promotion


def test_rollout_of_an_autoscaled_model_leaves_replicas_to_an_autoscaler_aimed_at_it() -> None:
    spec = parse({"strategy": "canary", "canary": {"steps": [50, 100]}}, serving={"autoscaling": {"min": 2, "max": 4}})
    assert "replicas" not in argo.rollout(spec, OWNER, SETTINGS, KEY)["spec"]
    hpa = autoscaling.autoscaler(spec, OWNER, SETTINGS, keda_available=False, target_kind="Rollout")
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": "cams-triton",
    }


def test_rolling_strategy_has_no_argo_form() -> None:
    with pytest.raises(ValueError, match="canary"):
        argo.rollout(parse(), OWNER, SETTINGS, KEY)


def metrics(spec: specs.ModelDeploymentSpec) -> dict[str, dict[str, Any]]:
    template = argo.analysis_template(spec, OWNER, SETTINGS)
    return {m["name"]: m for m in template["spec"]["metrics"]}


def test_analysis_bounds_the_error_rate_and_the_p95_latency_when_asked() -> None:
    assert set(metrics(CANARY)) == {"error-rate"}
    assert metrics(CANARY)["error-rate"]["successCondition"] == "result[0] <= 0.01"
    strict = metrics(STRICT)
    assert strict["error-rate"]["successCondition"] == "result[0] <= 0.002"
    assert strict["p95-latency-ms"]["successCondition"] == "result[0] <= 25.0"
    assert all(m["failureLimit"] == 0 for m in strict.values())
    assert all(m["provider"]["prometheus"]["address"] == "http://prom:9090" for m in strict.values())


def test_argo_analysis_reads_only_the_canary_pods_of_this_model() -> None:
    query = metrics(STRICT)["p95-latency-ms"]["provider"]["prometheus"]["query"]
    assert 'pod=~"cams-triton-{{args.canary-hash}}-.*"' in query
    assert 'namespace="vision",model="cams"' in query
    assert 'quantile="0.95"' in query


def test_native_canary_queries_select_the_canary_deployments_pods() -> None:
    pods = analysis.canary_pods(OWNER)
    assert pods == "cams-triton-canary-.*"
    query = analysis.error_rate(OWNER, pods, analysis.window(CANARY.rollout.canary))  # type: ignore[arg-type]
    assert f'pod=~"{pods}"' in query
    assert "[180s]" in query
    # No traffic in the window is no evidence of failure.
    assert query.endswith("or vector(0)")


@pytest.mark.parametrize(
    ("interval", "expected"), [("2m", "120s"), ("1.5m", "90s"), ("1h30m", "5400s"), ("500ms", "1s")]
)
def test_window_is_whole_seconds_as_prometheus_ranges_need(interval: str, expected: str) -> None:
    spec = parse({"strategy": "canary", "canary": {"steps": [100], "interval": interval}})
    assert spec.rollout.canary is not None
    assert analysis.window(spec.rollout.canary) == expected


def test_triton_exports_latency_quantiles_only_when_a_canary_bounds_them() -> None:
    def args(spec: specs.ModelDeploymentSpec) -> list[str]:
        return triton.deployment(spec, OWNER, SETTINGS, KEY)["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[no-any-return]

    assert "--metrics-config=summary_latencies=true" in args(STRICT)
    assert "--metrics-config=summary_latencies=true" not in args(CANARY)
    assert "--metrics-config=summary_latencies=true" not in args(parse())
