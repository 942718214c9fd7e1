"""`kestrel run` with several replicas: wait for the Lease (kube/lease.py), then reconcile while holding it.

A standby answers the liveness probe's /healthz itself (Kopf's endpoint starts only with Kopf), so the kubelet does
not restart a replica for waiting; the listener closes before Kopf binds the same port.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import threading
from collections.abc import Callable, Iterator

from kestrel.kube import client, lease

log = logging.getLogger(__name__)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path.split("?")[0] == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def standby_health(port: int) -> Iterator[None]:
    """/healthz answered 200 on `port` (0: none) for as long as the block runs."""
    if not port:
        yield
        return
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _Health)  # noqa: S104 - probed from outside the pod
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _exit_on_loss() -> None:
    # Another replica may take over as soon as the Lease expires: stop reconciling now, and let the Deployment
    # start this replica again as a standby.
    logging.shutdown()
    os._exit(1)


@contextlib.contextmanager
def leading(
    namespace: str,
    name: str,
    identity: str,
    health_port: int,
    *,
    kube: client.Kube | None = None,
    lost: Callable[[], None] = _exit_on_loss,
) -> Iterator[lease.Elector]:
    """Block until `identity` holds Lease `namespace/name`, keep renewing it while the block runs, release it after."""
    elector = lease.Elector(kube or client.Kube.connect(), namespace, name, identity)
    stop = threading.Event()
    with standby_health(health_port):
        elector.acquire(stop)
    elector.hold(lost, stop)
    try:
        yield elector
    finally:
        stop.set()
        elector.release()
