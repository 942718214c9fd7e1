"""The operator's per-build and per-model series: build duration by outcome (once per finished Job, timed by the
cluster), the server certificate's expiry, and every series of a model removed when it is deleted."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import prometheus_client
import pytest
from cryptography import x509

from kestrel import operator_metrics
from kestrel.manifests import names, secrets
from kestrel.reconcilers.engine import engine, storage
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube, body, reconcile_tls

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
STARTED, ENDED = "2026-12-07T10:00:00Z", "2026-12-07T10:05:30Z"


def _builds(outcome: str) -> tuple[float, float]:
    count = prometheus_client.REGISTRY.get_sample_value("kestrel_build_duration_seconds_count", {"outcome": outcome})
    total = prometheus_client.REGISTRY.get_sample_value("kestrel_build_duration_seconds_sum", {"outcome": outcome})
    return count or 0.0, total or 0.0


def _finished(kube: FakeKube, obj: dict[str, Any], kind: str, message: str | None) -> None:
    terminated: dict[str, Any] = {"exitCode": 0 if kind == "Complete" else 1}
    if message is not None:
        terminated["message"] = message
    job_status: dict[str, Any] = {
        "startTime": STARTED,
        "conditions": [{"type": kind, "status": "True", "lastTransitionTime": ENDED}],
    }
    if kind == "Complete":
        job_status["completionTime"] = ENDED
    pod_status = {
        "phase": "Succeeded" if kind == "Complete" else "Failed",
        "containerStatuses": [{"name": "build", "state": {"terminated": terminated}}],
    }
    support.running_build(kube, obj, pod_status, job_status)


def _pass(kube: FakeKube, obj: dict[str, Any], mount: pathlib.Path) -> None:
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, support.settings(mount), storage.Access())
    obj["status"] = ctx.status.to_wire()


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    return tmp_path / "mnt"


@pytest.mark.parametrize(
    ("kind", "passed", "outcome"),
    [("Complete", True, "succeeded"), ("Failed", False, "gate_failed"), ("Failed", None, "failed")],
)
def test_a_finished_build_is_timed_once_by_its_outcome(
    mount: pathlib.Path, kind: str, passed: bool | None, outcome: str
) -> None:
    kube, obj = FakeKube(), support.body()
    report = None if passed is None else support.build_result(support.key_of(obj), passed=passed)
    _finished(kube, obj, kind, report.to_termination_message() if report else None)
    before = _builds(outcome)
    _pass(kube, obj, mount)
    _pass(kube, obj, mount)  # the next pass sees the same finished Job: not counted again
    count, total = _builds(outcome)
    assert (count - before[0], total - before[1]) == (1.0, 330.0)


def test_the_server_certificates_expiry_is_exported_and_goes_with_tls_and_the_model() -> None:
    kube = FakeKube()
    reconcile_tls(kube, body({"mode": "operator"}), NOW)
    server = kube.secret("vision", names.tls_secret("cams"))
    assert server is not None, "the TLS pass wrote no server Secret"
    served = secrets.decode(server, "tls.crt")
    expiry = x509.load_pem_x509_certificate(served).not_valid_after_utc.timestamp()
    labels = {"namespace": "vision", "name": "cams"}
    sample = "kestrel_certificate_expiry_timestamp_seconds"
    assert prometheus_client.REGISTRY.get_sample_value(sample, labels) == expiry
    reconcile_tls(kube, body({"mode": "disabled"}), NOW)
    assert prometheus_client.REGISTRY.get_sample_value(sample, labels) is None

    reconcile_tls(kube, body({"mode": "operator"}), NOW)
    operator_metrics.READY.labels("vision", "cams").set(1)
    operator_metrics.forget_model("vision", "cams")
    assert prometheus_client.REGISTRY.get_sample_value(sample, labels) is None
    assert prometheus_client.REGISTRY.get_sample_value("kestrel_model_deployment_ready", labels) is None
    operator_metrics.forget_model("vision", "cams")  # a model with no series left: nothing to remove, no error
