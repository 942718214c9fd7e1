"""Writes charts/kestrel/files/dashboard.json, Kestrel's Grafana dashboard, from the panels listed here.

`python -m testbed.dashboard > charts/kestrel/files/dashboard.json` (make dashboard); a unit test fails when the
committed file differs, and checks that every query names only series Kestrel or Triton exports.
"""

from __future__ import annotations

import json
from typing import Any

# (title, unit, panel type, [(legend, PromQL)]): the operator's series first, then Triton's per model.
PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    (
        "Models Ready",
        "none",
        "stat",
        [("ready", "sum(kestrel_model_deployment_ready)"), ("total", "count(kestrel_model_deployment_ready)")],
    ),
    ("Models not Ready", "none", "table", [("{{namespace}}/{{name}}", "kestrel_model_deployment_ready == 0")]),
    (
        "Builds by outcome (1 h)",
        "none",
        "timeseries",
        [("{{outcome}}", "sum by (outcome) (increase(kestrel_build_duration_seconds_count[1h]))")],
    ),
    (
        "Build duration",
        "s",
        "timeseries",
        [
            (
                "p50",
                "histogram_quantile(0.5, sum by (le) (rate(kestrel_build_duration_seconds_bucket[6h])))",
            ),
            (
                "p95",
                "histogram_quantile(0.95, sum by (le) (rate(kestrel_build_duration_seconds_bucket[6h])))",
            ),
        ],
    ),
    (
        "Warnings by reason (1 h): gate failures, rollbacks, held-up builds",
        "none",
        "timeseries",
        [("{{reason}}", 'sum by (reason) (increase(kestrel_events_total{type="Warning"}[1h]))')],
    ),
    (
        "Days until the server certificate expires",
        "d",
        "table",
        [("{{namespace}}/{{name}}", "(kestrel_certificate_expiry_timestamp_seconds - time()) / 86400")],
    ),
    (
        "Inferences per second",
        "reqps",
        "timeseries",
        [("{{namespace}}/{{model}}", "sum by (namespace, model) (rate(nv_inference_request_success[5m]))")],
    ),
    (
        "Failed inferences per second",
        "reqps",
        "timeseries",
        [("{{namespace}}/{{model}}", "sum by (namespace, model) (rate(nv_inference_request_failure[5m]))")],
    ),
    (
        "Mean queue time",
        "ms",
        "timeseries",
        [
            (
                "{{namespace}}/{{model}}",
                "sum by (namespace, model) (rate(nv_inference_queue_duration_us[5m]))"
                " / sum by (namespace, model) (rate(nv_inference_request_success[5m])) / 1000",
            )
        ],
    ),
    (
        "Operator: reconcile passes per second",
        "ops",
        "timeseries",
        [("{{result}}", "sum by (result) (rate(kestrel_reconciles_total[5m]))")],
    ),
    (
        "Operator: API requests per second",
        "reqps",
        "timeseries",
        [("{{verb}} {{resource}}", "sum by (verb, resource) (rate(kestrel_api_requests_total[5m]))")],
    ),
]


def dashboard() -> dict[str, Any]:
    panels = []
    for index, (title, unit, kind, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "title": title,
                "type": kind,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
                    for n, (legend, expr) in enumerate(queries)
                ],
            }
        )
    return {
        "uid": "kestrel",
        "title": "Kestrel",
        "tags": ["kestrel", "triton"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


def main() -> None:
    print(json.dumps(dashboard(), indent=2))


if __name__ == "__main__":
    main()
