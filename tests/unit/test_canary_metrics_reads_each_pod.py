"""The canary's analysis reads every ready canary pod's own /metrics page (counters are per process) through the
address map, adds their counters, keeps the slowest p95, and refuses to make up a reading it could not take.

The pods are objects in an in-memory API; their metrics pages are served over HTTP on loopback, reached through
a real address map file, as an operator outside the pod network reaches Triton."""

from __future__ import annotations

import copy
import datetime
import http.server
import json
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kestrel import settings as operator_settings
from kestrel.api import crd
from kestrel.manifests import labels
from kestrel.reconcilers import context
from kestrel.reconcilers.serving import canary_analysis, canary_metrics
from kestrel.serving import metrics
from tests.unit.spec_support import UNMEASURED
from tests.unit.tls_fake_kube import UID, FakeKube

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "triton-metrics" / "summary-latencies.txt"


def page(success: int, failure: int, p95_us: float) -> str:
    """The recorded Triton page, renamed to model `cams`, with the counters and p95 the test wants."""
    lines = []
    for line in FIXTURE.read_text().replace('model="add"', 'model="cams"').splitlines():
        if line.startswith('nv_inference_request_success{model="cams"'):
            lines.append(f'nv_inference_request_success{{model="cams",version="1"}} {success}')
        elif line.startswith('nv_inference_request_failure{model="cams",reason="BACKEND"'):
            lines.append(f'nv_inference_request_failure{{model="cams",reason="BACKEND",version="1"}} {failure}')
        elif line.startswith("nv_inference_request_summary_us{") and 'quantile="0.95"' in line:
            lines.append(f"{line.rsplit(' ', 1)[0]} {p95_us}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


class Pages:
    """Loopback HTTP servers, one per pod, each answering /metrics with the page set for it."""

    def __init__(self) -> None:
        self.servers: list[http.server.ThreadingHTTPServer] = []

    def serve(self, text: str) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = text.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def pages() -> Iterator[Pages]:
    found = Pages()
    yield found
    found.close()


def pod(name: str, ip: str, *, ready: bool = True, track: labels.Track = "canary") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "vision", "labels": labels.track_selector("cams", track)},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def ctx_with(kube: FakeKube) -> context.Context:
    body = {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": "cams", "namespace": "vision", "uid": UID, "generation": 1},
        "spec": {"model": {"source": {"uri": "file:///models/shapes.pt"}}, "validation": UNMEASURED},
    }
    return context.Context.load(kube, copy.deepcopy(body), datetime.datetime.now(datetime.UTC))


def address_map(tmp_path: pathlib.Path, routes: dict[str, str]) -> operator_settings.Settings:
    path = tmp_path / "addresses.json"
    path.write_text(json.dumps(routes))
    return operator_settings.Settings(engine_store="s3://engines/kestrel", address_map=path)


def test_every_ready_canary_pod_is_read_and_the_readings_combined(pages: Pages, tmp_path: pathlib.Path) -> None:
    kube = FakeKube()
    kube.put(pod("cams-canary-a", "10.246.0.7"))
    kube.put(pod("cams-canary-b", "10.246.0.8"))
    kube.put(pod("cams-canary-c", "10.246.0.9", ready=False))  # starting: not read
    kube.put(pod("cams-stable-a", "10.246.0.10", track="stable"))  # not the canary
    settings = address_map(
        tmp_path,
        {"10.246.0.7:8002": pages.serve(page(100, 1, 9000)), "10.246.0.8:8002": pages.serve(page(50, 2, 31000))},
    )
    found = canary_metrics.scrape(ctx_with(kube), settings, "cams-triton-canary")
    assert found == canary_analysis.Reading(success=150, failure=3, p95_ms=31.0)


def test_no_ready_pod_or_an_unreachable_one_is_an_error(pages: Pages, tmp_path: pathlib.Path) -> None:
    kube = FakeKube()
    settings = address_map(tmp_path, {})
    with pytest.raises(metrics.MetricsError, match="no ready pod"):
        canary_metrics.scrape(ctx_with(kube), settings, "cams-triton-canary")
    kube.put(pod("cams-canary-a", "10.246.0.7"))
    kube.put(pod("cams-canary-b", "10.246.0.8"))
    # One pod answers; the other's address leads nowhere (a closed loopback port): the reading is refused whole.
    closed = pages.serve("")
    pages.close()
    settings = address_map(tmp_path, {"10.246.0.7:8002": pages.serve(page(1, 0, 1000)), "10.246.0.8:8002": closed})
    with pytest.raises(metrics.MetricsError, match=r"10\.246\.0\.8:8002"):
        canary_metrics.scrape(ctx_with(kube), settings, "cams-triton-canary")


def test_a_page_without_the_models_counters_is_an_error_not_an_empty_window(
    pages: Pages, tmp_path: pathlib.Path
) -> None:
    kube = FakeKube()
    kube.put(pod("cams-canary-a", "10.246.0.7"))
    settings = address_map(tmp_path, {"10.246.0.7:8002": pages.serve(FIXTURE.read_text())})  # model "add" only
    with pytest.raises(metrics.MetricsError, match="no nv_inference_request_success series for model 'cams'"):
        canary_metrics.scrape(ctx_with(kube), settings, "cams-triton-canary")
