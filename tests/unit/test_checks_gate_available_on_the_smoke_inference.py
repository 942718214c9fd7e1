"""The checks reconciler's decisions, pass by pass against an in-memory API with a fake smoke check and fake
/metrics pages: when the smoke inference runs, what a failure does to Available, and when status changes.

The smoke check itself (gRPC, TLS, Triton) runs for real in tests/e2e/test_serving_end_to_end.py.
"""

from __future__ import annotations

import base64
import datetime
import pathlib
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature

from kestrel.api import conditions
from kestrel.manifests import context as manifest_context
from kestrel.manifests import labels, names, secrets, transport
from kestrel.reconcilers import checks, context
from kestrel.security import certificates
from kestrel.serving import smoke
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
KEY = "ab" * 32
PAGE = (pathlib.Path(__file__).parents[1] / "fixtures" / "triton-metrics" / "summary-latencies.txt").read_text()


class Checker:
    """Records each smoke request; answers with `outcome`."""

    def __init__(self) -> None:
        self.outcome = smoke.Outcome(True, "answered", 4.2)
        self.targets: list[smoke.Target] = []

    def __call__(self, target: smoke.Target, timeout: float) -> smoke.Outcome:
        assert 0 < timeout <= 30
        self.targets.append(target)
        return self.outcome


class Pages:
    """Each pod's /metrics page by URL; a URL without a page is unreachable."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.reads = 0

    def __call__(self, url: str) -> str:
        self.reads += 1
        if url not in self.pages:
            raise OSError(f"connection refused: {url}")
        return self.pages[url]


def _secret(namespace: str, name: str, data: dict[str, bytes]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded}


def _pod(name: str, ip: str, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "vision", "labels": labels.selector("cams", "triton")},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


@pytest.fixture
def kube() -> FakeKube:
    found = FakeKube()
    found.put(_secret("vision", names.tls_secret("cams"), {"ca.crt": b"CA PEM", "tls.crt": b"x", "tls.key": b"y"}))
    found.put(_secret("vision", names.api_key_secret("cams"), {transport.API_KEY_FIELD: b"s3cret-key"}))
    found.put(_pod("cams-triton-1", "10.0.0.1"))
    return found


def _object(available: str = "True", progressing: str = "False", tls: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = body(tls or {"mode": "operator"})
    obj["status"] = {
        "revision": {"current": KEY},
        "conditions": [
            {
                "type": "Available",
                "status": available,
                "reason": "Serving",
                "message": "Engine abababab: up",
                "lastTransitionTime": "2026-03-01T07:00:00Z",
            },
            {
                "type": "Progressing",
                "status": progressing,
                "reason": "RolloutComplete",
                "message": "",
                "lastTransitionTime": "2026-03-01T07:00:00Z",
            },
        ],
    }
    return obj


def _pass(
    kube: FakeKube,
    obj: dict[str, Any],
    now: datetime.datetime,
    check: Checker,
    pages: Pages,
    settings: manifest_context.Settings = SETTINGS,
    available: conditions.ConditionStatus = "True",
) -> context.Context:
    """One pass: serving (played here) sets Available as it would, then the checks; status carries over."""
    ctx = context.Context.load(kube, obj, now)
    ctx.set(conditions.AVAILABLE, available, "Serving", "Engine abababab: up")
    checks.reconcile(ctx, settings, check, pages)
    obj["status"] = ctx.status.to_wire()
    return ctx


def _available(ctx: context.Context) -> conditions.Condition:
    found = ctx.condition(conditions.AVAILABLE)
    assert found is not None
    return found


def test_a_passing_smoke_runs_once_per_revision_and_keeps_available(kube: FakeKube) -> None:
    check, pages, obj = Checker(), Pages(), _object()
    ctx = _pass(kube, obj, T0, check, pages)
    assert _available(ctx).status == "True"
    smoke_status = ctx.status.serving and ctx.status.serving.smoke
    assert smoke_status and smoke_status.passed is True and smoke_status.revision == KEY
    assert smoke_status.latency_ms == 4.2 and smoke_status.checked_at == T0
    assert ("Normal", checks.SMOKE_PASSED) in [(kind, reason) for kind, reason, _ in ctx.events]
    (target,) = check.targets
    # The Service's DNS name, TLS against the model's CA, the API key in Triton's gRPC header; never logged.
    assert target.address == f"{names.service('cams')}.vision.svc:{transport.GRPC_PORT}"
    assert target.server_name == f"{names.service('cams')}.vision.svc"
    assert target.ca_pem == b"CA PEM" and target.client_cert_pem is None
    assert target.headers == {"triton-grpc-protocol-kestrel-api-key": "s3cret-key"}
    assert "s3cret-key" not in repr(target)
    _pass(kube, obj, T0 + datetime.timedelta(seconds=30), check, pages)
    assert len(check.targets) == 1, "a revision that passed is not checked again"


def test_no_smoke_while_the_rollout_is_in_progress_or_nothing_is_available(kube: FakeKube) -> None:
    check, pages = Checker(), Pages()
    _pass(kube, _object(progressing="True"), T0, check, pages)
    _pass(kube, _object(), T0, check, pages, available="False")
    assert check.targets == []


def test_a_failing_smoke_makes_available_false_once_and_is_retried_each_pass(kube: FakeKube) -> None:
    check, pages, obj = Checker(), Pages(), _object()
    check.outcome = smoke.Outcome(False, "cams at x: inference failed: StatusCode.UNAVAILABLE")
    first = _pass(kube, obj, T0, check, pages)
    found = _available(first)
    assert (found.status, found.reason) == ("False", checks.SMOKE_FAILED)
    assert "Smoke inference of engine abababab failed: cams at x: inference failed" in found.message
    assert [(k, r) for k, r, _ in first.events] == [("Warning", checks.SMOKE_FAILED)]
    second = _pass(kube, obj, T0 + datetime.timedelta(seconds=30), check, pages)
    assert len(check.targets) == 2, "a failed smoke is retried on the next pass"
    assert _available(second).last_transition_time == found.last_transition_time, "one transition, not one a pass"
    assert second.events == [], "the same failure again is not a new Warning"
    check.outcome = smoke.Outcome(True, "answered", 3.0)
    third = _pass(kube, obj, T0 + datetime.timedelta(seconds=60), check, pages)
    assert (_available(third).status, _available(third).reason) == ("True", "Serving")
    assert obj["status"]["serving"]["smoke"]["passed"] is True


def test_a_new_revision_is_checked_again(kube: FakeKube) -> None:
    check, pages, obj = Checker(), Pages(), _object()
    _pass(kube, obj, T0, check, pages)
    obj["status"]["revision"]["current"] = "cd" * 32
    _pass(kube, obj, T0, check, pages)
    assert len(check.targets) == 2
    assert obj["status"]["serving"]["smoke"]["revision"] == "cd" * 32


@pytest.mark.parametrize("mode", ["operator", "cert-manager"])
def test_mutual_tls_gets_a_client_certificate_from_the_models_own_client_ca(kube: FakeKube, mode: str) -> None:
    operator_ca, client_ca = certificates.create_ca(now=T0), certificates.create_ca(now=T0)
    kube.put(
        _secret(
            SETTINGS.operator_namespace,
            secrets.CA_SECRET,
            {"tls.crt": operator_ca.certificate_pem(), "tls.key": operator_ca.private_key_pem()},
        )
    )
    kube.put(
        _secret(
            "vision",
            names.client_ca_secret("cams"),
            {"tls.crt": client_ca.certificate_pem(), "tls.key": client_ca.private_key_pem()},
        )
    )
    check = Checker()
    tls = {"mode": mode, "mutual": True} | ({"issuerRef": {"name": "ca"}} if mode == "cert-manager" else {})
    _pass(kube, _object(tls=tls), T0, check, Pages())
    (target,) = check.targets
    assert target.client_cert_pem and target.client_key_pem
    issued = certificates.Issued.from_pem(target.client_cert_pem, target.client_key_pem)
    issued.certificate.verify_directly_issued_by(client_ca.certificate)
    with pytest.raises(InvalidSignature):
        issued.certificate.verify_directly_issued_by(operator_ca.certificate)


def test_missing_secrets_fail_the_smoke_with_their_names(kube: FakeKube) -> None:
    kube.delete("v1", "Secret", "vision", names.api_key_secret("cams"), owner=None)
    check = Checker()
    ctx = _pass(kube, _object(), T0, check, Pages())
    assert check.targets == []
    assert _available(ctx).reason == checks.SMOKE_FAILED
    assert f"Secret vision/{names.api_key_secret('cams')} has no 'api-key'" in _available(ctx).message


def test_checks_off_say_so_in_status_and_in_available(kube: FakeKube) -> None:
    check, pages, obj = Checker(), Pages(), _object()
    off = manifest_context.Settings(engine_store=SETTINGS.engine_store, serving_checks=False)
    ctx = _pass(kube, obj, T0, check, pages, settings=off)
    assert check.targets == [] and pages.reads == 0
    assert _available(ctx).status == "True"
    assert "not run: the operator's serving checks are off" in _available(ctx).message
    assert obj["status"]["serving"]["smoke"] == {"revision": KEY, "message": checks.OFF}


def test_metrics_are_summed_over_ready_pods_and_written_only_when_they_change(kube: FakeKube) -> None:
    kube.put(_pod("cams-triton-2", "10.0.0.2"))
    kube.put(_pod("cams-triton-3", "10.0.0.3", ready=False))
    pages, obj = Pages(), _object()
    page = PAGE.replace('model="add"', 'model="cams"')
    pages.pages = {"http://10.0.0.1:8002/metrics": page, "http://10.0.0.2:8002/metrics": page}
    ctx = _pass(kube, obj, T0, Checker(), pages)
    found = ctx.status.serving and ctx.status.serving.metrics
    assert found and (found.requests, found.failures, found.pods) == (8, 2, 2)
    assert found.queue_p50_ms == 0.01 and found.queue_mean_ms == 0.022 and found.scraped_at == T0
    _pass(kube, obj, T0 + datetime.timedelta(seconds=30), Checker(), pages)
    assert obj["status"]["serving"]["metrics"]["scrapedAt"] == "2026-03-01T08:00:00Z", "same numbers: no write"
    pages.pages["http://10.0.0.2:8002/metrics"] = page.replace(
        'nv_inference_request_success{model="cams",version="1"} 3',
        'nv_inference_request_success{model="cams",version="1"} 9',
    )
    _pass(kube, obj, T0 + datetime.timedelta(seconds=60), Checker(), pages)
    assert obj["status"]["serving"]["metrics"]["requests"] == 14
    assert obj["status"]["serving"]["metrics"]["scrapedAt"] == "2026-03-01T08:01:00Z"


def test_an_unreachable_pod_keeps_the_last_numbers_and_says_why(kube: FakeKube) -> None:
    pages, obj = Pages(), _object()
    pages.pages = {"http://10.0.0.1:8002/metrics": PAGE.replace('model="add"', 'model="cams"')}
    _pass(kube, obj, T0, Checker(), pages)
    pages.pages.clear()
    ctx = _pass(kube, obj, T0 + datetime.timedelta(seconds=30), Checker(), pages)
    found = ctx.status.serving and ctx.status.serving.metrics
    assert found and found.requests == 4 and found.scraped_at == T0
    assert found.error and "pod cams-triton-1 (http://10.0.0.1:8002/metrics): connection refused" in found.error
    assert _available(ctx).status == "True", "metrics that cannot be read do not make the model unavailable"


def test_the_address_map_routes_the_dial_but_not_the_name_the_certificate_must_carry(
    kube: FakeKube, tmp_path: pathlib.Path
) -> None:
    service_address = f"{names.service('cams')}.vision.svc:{transport.GRPC_PORT}"
    mapping = tmp_path / "map.json"
    mapping.write_text(f'{{"{service_address}": "127.0.0.1:40001", "10.0.0.1:8002": "127.0.0.1:40002"}}')
    routed = manifest_context.Settings(engine_store=SETTINGS.engine_store, address_map=mapping)
    check, pages = Checker(), Pages()
    pages.pages = {"http://127.0.0.1:40002/metrics": PAGE.replace('model="add"', 'model="cams"')}
    ctx = _pass(kube, _object(), T0, check, pages, settings=routed)
    (target,) = check.targets
    assert (target.address, target.server_name) == ("127.0.0.1:40001", f"{names.service('cams')}.vision.svc")
    assert ctx.status.serving and ctx.status.serving.metrics and ctx.status.serving.metrics.requests == 4
    mapping.write_text("[1, 2]")
    ctx = _pass(kube, _object(), T0, Checker(), Pages(), settings=routed)
    assert "expected a JSON object" in _available(ctx).message


def test_a_smoke_the_operator_cannot_send_is_said_in_status_and_available_not_gated(kube: FakeKube) -> None:
    check, obj = Checker(), _object()
    obj["spec"]["serving"] = {"protocols": ["http"]}
    ctx = _pass(kube, obj, T0, check, Pages())
    assert check.targets == []
    assert _available(ctx).status == "True"
    assert "smoke inference not run: the model serves no gRPC" in _available(ctx).message
    assert "passed" not in obj["status"]["serving"]["smoke"], "null: not run"
