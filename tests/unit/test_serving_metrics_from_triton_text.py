"""Triton's /metrics pages, as a real `tritonserver` wrote them (tests/fixtures/triton-metrics/), read into numbers.

The fixtures come from one server that answered three requests and failed one (wrong input shape): once with
Triton's default counters only, once with `--metrics-config=summary_latencies=true`.
"""

from __future__ import annotations

import pathlib

import pytest

from kestrel.serving import metrics

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures" / "triton-metrics"


def _page(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


def test_counters_only_give_requests_failures_and_a_mean_queue_time_but_no_p50() -> None:
    found = metrics.model_reading(metrics.parse(_page("counters-only")), "add")
    assert (found.success, found.failure, found.requests) == (3, 1, 4)
    assert found.queue_p50_ms() is None, "no summary latencies: no quantile may be made up"
    mean = found.queue_mean_ms()
    assert mean == pytest.approx(found.queue_us / 3 / 1000)
    assert mean is not None and mean > 0


def test_summary_latencies_give_the_p50_queue_and_p95_request_time() -> None:
    found = metrics.model_reading(metrics.parse(_page("summary-latencies")), "add")
    assert (found.success, found.failure) == (3, 1)
    assert found.queue_p50_ms() == pytest.approx(0.010)  # nv_inference_queue_summary_us{quantile="0.5"} 10
    assert found.request_p95_ms() == pytest.approx(0.292)
    assert found.queue_mean_ms() == pytest.approx(66 / 3 / 1000)


def test_versions_add_up_and_quantiles_take_the_worst_version() -> None:
    page = "\n".join(
        [
            "# TYPE nv_inference_request_success counter",
            'nv_inference_request_success{model="m",version="1"} 5',
            'nv_inference_request_success{model="m",version="2"} 7',
            'nv_inference_request_success{model="other",version="1"} 100',
            "# TYPE nv_inference_request_failure counter",
            'nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 1',
            'nv_inference_request_failure{model="m",reason="REJECTED",version="2"} 2',
            "# TYPE nv_inference_queue_summary_us summary",
            'nv_inference_queue_summary_us{model="m",version="1",quantile="0.5"} 300',
            'nv_inference_queue_summary_us{model="m",version="2",quantile="0.5"} 900',
            'nv_inference_queue_summary_us{model="m",version="3",quantile="0.5"} NaN',
            "",
        ]
    )
    found = metrics.parse(page)
    assert sorted(found) == ["m", "other"]
    assert (found["m"].success, found["m"].failure) == (12, 3)
    assert found["m"].queue_p50_ms() == pytest.approx(0.9)


def test_pods_combine_by_adding_counters_and_keeping_the_slowest_quantile() -> None:
    one = metrics.Reading("m", success=10, failure=1, queue_us=1000, quantiles={(metrics.QUEUE_SUMMARY, 0.5): 40})
    two = metrics.Reading("m", success=30, failure=0, queue_us=5000, quantiles={(metrics.QUEUE_SUMMARY, 0.5): 90})
    found = metrics.combine([one, two])
    assert (found.success, found.failure, found.sources) == (40, 1, 2)
    assert found.queue_mean_ms() == pytest.approx(6000 / 40 / 1000)
    assert found.queue_p50_ms() == pytest.approx(0.09)
    with pytest.raises(metrics.MetricsError, match="different models"):
        metrics.combine([one, metrics.Reading("n")])


def test_a_page_without_the_model_or_not_prometheus_text_is_an_error() -> None:
    with pytest.raises(metrics.MetricsError, match="no nv_inference_request_success series for model 'cams'"):
        metrics.model_reading(metrics.parse(_page("counters-only")), "cams")
    with pytest.raises(metrics.MetricsError, match="not Prometheus text"):
        metrics.parse("nv_inference_request_success{model=} what\n")
