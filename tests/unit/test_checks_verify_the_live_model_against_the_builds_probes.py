"""The checks reconciler's decisions, pass by pass against an in-memory API with a fake live check, fake probes and
fake /metrics pages: when the live check runs, with which probes, what Verified and Ready say, and when status
changes. Available is the serving reconciler's alone: no check here changes it.

The check itself (gRPC, TLS, Triton) runs for real in tests/e2e/test_serving_end_to_end.py, and against a real
Triton serving a built engine in tests/engine/test_engine_live_parity_on_a_real_triton.py.
"""

from __future__ import annotations

import base64
import datetime
import pathlib
from typing import Any

import numpy as np
import pytest
from cryptography.exceptions import InvalidSignature

from kestrel import settings as operator_settings
from kestrel.api import conditions
from kestrel.manifests import labels, names, secrets, transport
from kestrel.reconcilers import context, summary
from kestrel.reconcilers.serving import checks
from kestrel.security import certificates
from kestrel.serving import probes, smoke
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
KEY = "ab" * 32
PAGE = (pathlib.Path(__file__).parents[1] / "fixtures" / "triton-metrics" / "summary-latencies.txt").read_text()
IMAGE = np.full((8, 8, 3), 7, dtype=np.uint8)
ROW = np.array([[1, 1, 6, 6, 0.9, 0]], dtype=np.float32)
RECORDED = probes.Probes((probes.Probe("a.png", IMAGE, ROW), probes.Probe("b.png", IMAGE, ROW[:0])), conf=0.25)


class Checker:
    """Records each live check and the probes it was given; answers with `outcome`, or, with probes and no outcome
    set, as a server that answered them as recorded."""

    def __init__(self) -> None:
        self.outcome: smoke.Outcome | None = None
        self.targets: list[smoke.Target] = []
        self.given: list[probes.Probes | None] = []

    def __call__(self, target: smoke.Target, timeout: float, recorded: probes.Probes | None) -> smoke.Outcome:
        assert 0 < timeout <= 60
        self.targets.append(target)
        self.given.append(recorded)
        if self.outcome is not None:
            return self.outcome
        if recorded is None:
            return smoke.Outcome(True, "answered", 4.2)
        return smoke.Outcome(True, "answered; 2 probe images answered as recorded", 4.2, True, len(recorded.images))


class Store:
    """The probes the store holds per revision, or why none; counts the reads."""

    def __init__(self, found: probes.Probes | str = RECORDED) -> None:
        self.found = found
        self.reads: list[str] = []

    def __call__(
        self, ctx: context.Context, settings: operator_settings.Settings, revision: str
    ) -> probes.Probes | str:
        self.reads.append(revision)
        return self.found


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
    settings: operator_settings.Settings = SETTINGS,
    available: conditions.ConditionStatus = "True",
    store: Store | None = None,
) -> context.Context:
    """One pass: serving (played here) sets Available as it would, then the checks and the summary; status carries
    over."""
    ctx = context.Context.load(kube, obj, now)
    ctx.set(conditions.AVAILABLE, available, "Serving", "Engine abababab: up")
    for kind in (conditions.BUILT, conditions.VALIDATED):
        ctx.set(kind, "True", "Passed", "")
    checks.reconcile(ctx, settings, check, pages, store or Store())
    assert _condition(ctx, conditions.AVAILABLE).status == available, "Available is the serving reconciler's"
    summary.reconcile(ctx)
    obj["status"] = ctx.status.to_wire()
    return ctx


def _condition(ctx: context.Context, kind: str) -> conditions.Condition:
    found = ctx.condition(kind)
    assert found is not None
    return found


def _verified(ctx: context.Context) -> tuple[str, str, str]:
    found = _condition(ctx, conditions.VERIFIED)
    return found.status, found.reason, found.message


def _ready(ctx: context.Context) -> tuple[str, str, str]:
    found = _condition(ctx, conditions.READY)
    return found.status, found.reason, found.message


def test_probes_answered_as_recorded_verify_the_revision_once(kube: FakeKube) -> None:
    check, pages, obj, store = Checker(), Pages(), _object(), Store()
    ctx = _pass(kube, obj, T0, check, pages, store=store)
    assert _verified(ctx)[:2] == ("True", conditions.PARITY_PASSED)
    assert "Engine abababab: answered; 2 probe images answered as recorded" in _verified(ctx)[2]
    assert _ready(ctx)[:2] == ("True", "Serving")
    smoke_status = ctx.status.serving and ctx.status.serving.smoke
    assert smoke_status and smoke_status.passed is True and smoke_status.revision == KEY
    assert (smoke_status.parity, smoke_status.probes) == (True, 2)
    assert smoke_status.latency_ms == 4.2 and smoke_status.checked_at == T0
    assert ("Normal", conditions.PARITY_PASSED) in [(kind, reason) for kind, reason, _ in ctx.events]
    assert check.given == [RECORDED] and store.reads == [KEY]
    (target,) = check.targets
    # The Service's DNS name, TLS against the model's CA, the API key in Triton's gRPC header; never logged.
    assert target.address == f"{names.service('cams')}.vision.svc:{transport.GRPC_PORT}"
    assert target.server_name == f"{names.service('cams')}.vision.svc"
    assert target.ca_pem == b"CA PEM" and target.client_cert_pem is None
    assert target.headers == {"triton-grpc-protocol-kestrel-api-key": "s3cret-key"}
    assert "s3cret-key" not in repr(target)
    later = _pass(kube, obj, T0 + datetime.timedelta(seconds=30), check, pages, store=store)
    assert len(check.targets) == 1 and store.reads == [KEY], "a revision that passed is not checked again"
    assert _verified(later) == _verified(ctx) and later.events == []


@pytest.mark.parametrize(
    ("found", "why"),
    [
        (
            probes.Probes((), 0.25, "the build had no spec.validation.dataset"),
            "the build had no spec.validation.dataset",
        ),
        ("the operator cannot read the engine store: no claim", "the operator cannot read the engine store: no claim"),
    ],
)
def test_without_probes_the_smoke_check_alone_runs_and_verified_says_parity_was_not_checked(
    kube: FakeKube, found: probes.Probes | str, why: str
) -> None:
    check, obj = Checker(), _object()
    ctx = _pass(kube, obj, T0, check, Pages(), store=Store(found))
    assert check.given == [None], "the grey image alone"
    state, reason, message = _verified(ctx)
    assert (state, reason) == ("True", conditions.SMOKE_PASSED)
    assert message == f"Engine abababab: answered; parity not checked: {why}"
    assert obj["status"]["serving"]["smoke"]["passed"] is True and "parity" not in obj["status"]["serving"]["smoke"]
    assert ("Normal", conditions.SMOKE_PASSED) in [(kind, reason) for kind, reason, _ in ctx.events]


def test_no_check_while_the_rollout_is_in_progress_or_nothing_is_available(kube: FakeKube) -> None:
    check, pages = Checker(), Pages()
    rolling = _pass(kube, _object(progressing="True"), T0, check, pages)
    assert _verified(rolling)[:2] == ("Unknown", conditions.AWAITING_ROLLOUT)
    assert "Engine abababab is rolling out" in _verified(rolling)[2]
    _pass(kube, _object(), T0, check, pages, available="False")
    assert check.targets == []


def test_a_probe_answered_otherwise_fails_verified_and_ready_once_and_is_retried_each_pass(kube: FakeKube) -> None:
    check, pages, obj = Checker(), Pages(), _object()
    failed = "cams at x: probe image 'a.png': expected class 0 score 0.900 at [1, 1, 6, 6], no detection of that class"
    check.outcome = smoke.Outcome(False, failed, 4.0, parity=False, probes=0)
    first = _pass(kube, obj, T0, check, pages)
    state, reason, message = _verified(first)
    assert (state, reason) == ("False", conditions.PARITY_FAILED)
    assert message == f"Engine abababab: {failed}"
    assert _ready(first) == ("False", conditions.PARITY_FAILED, f"Verified: {message}")
    assert first.status.phase == "Degraded", "an older answer keeps serving, the check says it is wrong"
    assert [(k, r) for k, r, _ in first.events] == [("Warning", conditions.PARITY_FAILED)]
    assert "Live check of engine abababab failed: cams at x: probe image 'a.png'" in first.events[0][2]
    assert obj["status"]["serving"]["smoke"] | {"checkedAt": None} == {
        "revision": KEY,
        "passed": False,
        "parity": False,
        "probes": 0,
        "latencyMs": 4.0,
        "checkedAt": None,
        "message": failed,
    }
    second = _pass(kube, obj, T0 + datetime.timedelta(seconds=30), check, pages)
    assert len(check.targets) == 2, "a failed check is retried on the next pass"
    transition = _condition(first, conditions.VERIFIED).last_transition_time
    assert _condition(second, conditions.VERIFIED).last_transition_time == transition, "one transition, not one a pass"
    assert second.events == [], "the same failure again is not a new Warning"
    check.outcome = None
    third = _pass(kube, obj, T0 + datetime.timedelta(seconds=60), check, pages)
    assert _verified(third)[:2] == ("True", conditions.PARITY_PASSED)
    assert _ready(third)[:2] == ("True", "Serving") and third.status.phase == "Ready"
    assert obj["status"]["serving"]["smoke"]["passed"] is True


def test_a_server_that_fails_before_any_probe_is_a_smoke_failure(kube: FakeKube) -> None:
    check = Checker()
    check.outcome = smoke.Outcome(False, "cams at x: inference failed: StatusCode.UNAVAILABLE")
    ctx = _pass(kube, _object(), T0, check, Pages())
    assert _verified(ctx)[:2] == ("False", conditions.SMOKE_FAILED)
    assert _ready(ctx)[:2] == ("False", conditions.SMOKE_FAILED)
    assert [(k, r) for k, r, _ in ctx.events] == [("Warning", conditions.SMOKE_FAILED)]


def test_a_new_revision_is_checked_again_after_its_rollout(kube: FakeKube) -> None:
    check, pages, obj = Checker(), Pages(), _object()
    _pass(kube, obj, T0, check, pages)
    obj["status"]["revision"]["current"] = "cd" * 32
    obj["status"]["conditions"] = [
        c | {"status": "True"} if c["type"] == "Progressing" else c for c in obj["status"]["conditions"]
    ]
    rolling = _pass(kube, obj, T0, check, pages)
    assert _verified(rolling)[:2] == ("Unknown", conditions.AWAITING_ROLLOUT), "the old revision's verdict is not kept"
    assert "Engine cdcdcdcd is rolling out" in _verified(rolling)[2]
    obj["status"]["conditions"] = [
        c | {"status": "False"} if c["type"] == "Progressing" else c for c in obj["status"]["conditions"]
    ]
    done = _pass(kube, obj, T0, check, pages)
    assert len(check.targets) == 2 and _verified(done)[:2] == ("True", conditions.PARITY_PASSED)
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


def test_missing_secrets_fail_the_check_with_their_names(kube: FakeKube) -> None:
    kube.delete("v1", "Secret", "vision", names.api_key_secret("cams"), owner=None)
    check = Checker()
    ctx = _pass(kube, _object(), T0, check, Pages())
    assert check.targets == []
    assert _verified(ctx)[:2] == ("False", conditions.SMOKE_FAILED)
    assert f"Secret vision/{names.api_key_secret('cams')} has no 'api-key'" in _verified(ctx)[2]


def test_checks_off_say_so_in_status_verified_and_ready(kube: FakeKube) -> None:
    check, pages, obj, store = Checker(), Pages(), _object(), Store()
    off = operator_settings.Settings(engine_store=SETTINGS.engine_store, serving_checks=False)
    ctx = _pass(kube, obj, T0, check, pages, settings=off, store=store)
    assert check.targets == [] and pages.reads == 0 and store.reads == []
    assert _verified(ctx) == ("Unknown", conditions.NOT_CHECKED, f"The live check was {checks.OFF}")
    state, reason, message = _ready(ctx)
    assert (state, reason) == ("True", "Serving"), "a check that is off does not hold Ready"
    assert message.endswith(f"; Verified: The live check was {checks.OFF}")
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
    assert _verified(ctx)[0] == "True", "metrics that cannot be read do not fail the live check"


def test_the_address_map_routes_the_dial_but_not_the_name_the_certificate_must_carry(
    kube: FakeKube, tmp_path: pathlib.Path
) -> None:
    service_address = f"{names.service('cams')}.vision.svc:{transport.GRPC_PORT}"
    mapping = tmp_path / "map.json"
    mapping.write_text(f'{{"{service_address}": "127.0.0.1:40001", "10.0.0.1:8002": "127.0.0.1:40002"}}')
    routed = operator_settings.Settings(engine_store=SETTINGS.engine_store, address_map=mapping)
    check, pages = Checker(), Pages()
    pages.pages = {"http://127.0.0.1:40002/metrics": PAGE.replace('model="add"', 'model="cams"')}
    ctx = _pass(kube, _object(), T0, check, pages, settings=routed)
    (target,) = check.targets
    assert (target.address, target.server_name) == ("127.0.0.1:40001", f"{names.service('cams')}.vision.svc")
    assert ctx.status.serving and ctx.status.serving.metrics and ctx.status.serving.metrics.requests == 4
    mapping.write_text("[1, 2]")
    ctx = _pass(kube, _object(), T0, Checker(), Pages(), settings=routed)
    assert "expected a JSON object" in _verified(ctx)[2]


def test_a_check_the_operator_cannot_send_is_said_in_verified_and_does_not_hold_ready(kube: FakeKube) -> None:
    check, obj = Checker(), _object()
    obj["spec"]["serving"] = {"protocols": ["http"]}
    ctx = _pass(kube, obj, T0, check, Pages())
    assert check.targets == []
    assert _verified(ctx) == (
        "Unknown",
        conditions.NOT_CHECKED,
        "Engine abababab: not run: the model serves no gRPC (spec.serving.protocols)",
    )
    assert _ready(ctx)[0] == "True" and "not run: the model serves no gRPC" in _ready(ctx)[2]
    assert "passed" not in obj["status"]["serving"]["smoke"], "null: not run"
