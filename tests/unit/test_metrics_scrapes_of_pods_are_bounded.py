"""A pod's /metrics endpoint cannot steer the operator: a redirect is not followed, a 300 MB page costs one
bounded error with the read stopped early, a server dripping bytes is cut off at the deadline, and nothing the
server sent (body, reason phrase) reaches status, Events or logs.

Both readers of pods' metrics are tested through their public functions: the checks reconciler (status.serving
.metrics) and the canary's scrape. The pods are objects in an in-memory API; their endpoints are real HTTP servers
on loopback, reached through an address map as an operator outside the pod network reaches Triton.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import logging
import pathlib
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.manifests import labels, transport
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import canary_metrics, checks
from kestrel.serving import metrics, pod_http, probes, smoke
from tests.unit.tls_fake_kube import FakeKube, body

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
MARKER = "TENANT-B-SECRET-7f3a9c"
PAGE = (
    (pathlib.Path(__file__).parents[1] / "fixtures" / "triton-metrics" / "summary-latencies.txt")
    .read_text()
    .replace('model="add"', 'model="cams"')
)
POD_IP = "10.0.0.1"
POD_ADDRESS = f"{POD_IP}:{transport.METRICS_PORT}"
HUGE = 300 * 1024 * 1024
BLOCK = b"x" * (64 * 1024)


class Server:
    """One loopback HTTP server whose answer is `respond(handler, server)`; counts requests and bytes sent."""

    def __init__(self, respond: Callable[[http.server.BaseHTTPRequestHandler, Server], None]) -> None:
        self.requests = 0
        self.sent = 0
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                try:
                    respond(self, outer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the operator hung up: what the bounded tests want
                finally:
                    outer.done.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[[Callable[[http.server.BaseHTTPRequestHandler, Server], None]], Server]]:
    started: list[Server] = []

    def start(respond: Callable[[http.server.BaseHTTPRequestHandler, Server], None]) -> Server:
        started.append(Server(respond))
        return started[-1]

    yield start
    for server in started:
        server.close()


@dataclasses.dataclass(frozen=True)
class Scraped:
    error: str | None  # what the caller reported; None: it took a reading
    said: str  # everything the operator wrote down: status, Events, exception text, log lines


def _settings(tmp_path: pathlib.Path, served: str) -> operator_settings.Settings:
    path = tmp_path / "addresses.json"
    path.write_text(json.dumps({POD_ADDRESS: served}))
    return operator_settings.Settings(engine_store="s3://engines/kestrel", address_map=path)


def _pod(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "vision", "labels": selector},
        "status": {"podIP": POD_IP, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _never(target: smoke.Target, timeout: float, recorded: probes.Probes | None) -> smoke.Outcome:
    raise AssertionError("no rollout is complete: the smoke inference must not run")


def _through_checks(served: str, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> Scraped:
    kube = FakeKube()
    kube.put(_pod("cams-triton-1", labels.selector("cams", "triton")))
    obj = body({"mode": "operator"})
    obj["status"] = {"revision": {"current": "ab" * 32}}
    ctx = context.Context.load(kube, obj, T0)
    checks.reconcile(ctx, _settings(tmp_path, served), _never)
    found = ctx.status.serving and ctx.status.serving.metrics
    said = json.dumps(ctx.status.to_wire()) + repr(ctx.events) + repr(kube.events) + caplog.text
    if found and found.error:
        return Scraped(found.error, said)
    return Scraped(None, said)


def _through_canary(served: str, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> Scraped:
    kube = FakeKube()
    kube.put(_pod("cams-canary-a", labels.track_selector("cams", "canary")))
    ctx = context.Context.load(kube, body({"mode": "operator"}), T0)
    try:
        canary_metrics.scrape(ctx, _settings(tmp_path, served), "cams-triton-canary")
    except metrics.MetricsError as error:
        return Scraped(str(error), f"{error} {error.__cause__} {caplog.text}")
    return Scraped(None, caplog.text)


Caller = Callable[[str], Scraped]


@pytest.fixture(params=["checks", "canary"])
def scrape(request: pytest.FixtureRequest, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> Caller:
    """Scrape the one pod, whose metrics endpoint is the loopback address given, through one of the two readers."""
    caplog.set_level(logging.DEBUG, logger="kestrel")
    through = _through_checks if request.param == "checks" else _through_canary
    return lambda served: through(served, tmp_path, caplog)


def _deadline(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(checks, "SCRAPE_TIMEOUT_SECONDS", seconds)
    monkeypatch.setattr(canary_metrics, "TIMEOUT_SECONDS", seconds)


def test_a_well_behaved_page_is_still_read(scrape: Caller, servers: Callable[..., Server]) -> None:
    def page(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        data = PAGE.encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    found = scrape(servers(page).address)
    assert found.error is None


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_an_error_naming_its_status_and_its_target_is_never_asked(
    scrape: Caller, servers: Callable[..., Server], status: int
) -> None:
    def other_tenant(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        data = f"# HELP {MARKER} another tenant's page\n{PAGE}".encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    target = servers(other_tenant)

    def redirect(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(status)
        handler.send_header("Location", f"http://{target.address}/metrics")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    found = scrape(servers(redirect).address)
    assert target.requests == 0, "the redirect's target got a request"
    assert found.error is not None and f"answered HTTP {status}, a redirect, which is not followed" in found.error
    assert MARKER not in found.said and target.address not in found.said


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
def test_a_300_mb_page_costs_one_bounded_error_and_the_read_stops_early(
    scrape: Caller, servers: Callable[..., Server], announced: bool
) -> None:
    def huge(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(200)
        if announced:
            handler.send_header("Content-Length", str(HUGE))
        handler.end_headers()  # HTTP/1.0 without a length: the body ends when the server closes
        while server.sent < HUGE:
            handler.wfile.write(BLOCK)
            server.sent += len(BLOCK)

    server = servers(huge)
    tracemalloc.start()
    try:
        found = scrape(server.address)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.error is not None and f"the body is larger than {pod_http.MAX_BYTES} bytes" in found.error
    assert peak < 50 * 1024 * 1024, f"peak memory {peak} bytes"
    assert server.done.wait(10), "the server is still sending"
    assert server.sent < 64 * 1024 * 1024, f"the server sent {server.sent} bytes before the operator hung up"


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_a_server_dripping_a_byte_at_a_time_is_cut_off_at_the_deadline(
    scrape: Caller, servers: Callable[..., Server], monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    """Each byte arrives well within any per-read timeout; only a deadline over the whole answer ends it."""
    page = PAGE.encode()[:80]
    head = f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(page)}\r\n\r\n".encode()

    def drip(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        if phase == "body":
            handler.wfile.write(head)
        for i in range(0 if phase == "headers" else len(head), len(head)):
            handler.wfile.write(head[i : i + 1])
            time.sleep(0.1)
        for i in range(len(page)):
            handler.wfile.write(page[i : i + 1])
            server.sent += 1
            time.sleep(0.1)

    _deadline(monkeypatch, 1.0)
    started = time.monotonic()
    found = scrape(servers(drip).address)
    took = time.monotonic() - started
    assert found.error is not None and "no complete answer within 1 s" in found.error
    assert took < 2.0, f"the scrape took {took:.1f} s under a 1 s deadline"


def test_an_error_answer_never_quotes_its_body_or_reason_phrase(scrape: Caller, servers: Callable[..., Server]) -> None:
    def failing(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        data = f"stack trace with {MARKER}".encode()
        handler.send_response(500, f"Internal {MARKER}")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    found = scrape(servers(failing).address)
    assert found.error is not None and "answered HTTP 500" in found.error
    assert MARKER not in found.said


def test_a_page_that_is_not_prometheus_text_is_not_quoted(scrape: Caller, servers: Callable[..., Server]) -> None:
    def garbage(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        data = f'{{"password": "{MARKER}"}}\n'.encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    found = scrape(servers(garbage).address)
    assert found.error is not None and "not Prometheus text" in found.error
    assert MARKER not in found.said


def test_a_malformed_status_line_is_not_quoted(scrape: Caller, servers: Callable[..., Server]) -> None:
    def malformed(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        handler.wfile.write(f"{MARKER} 200 OK\r\n\r\n".encode())

    found = scrape(servers(malformed).address)
    assert found.error is not None and "a malformed HTTP answer" in found.error
    assert MARKER not in found.said
