"""`kestrel tls-proxy` over real sockets: TLS handshakes with the operator's kind of certificates, bytes relayed to a
local HTTP server standing in for Triton's loopback listener, and the kubelet's plain health listener.

Each test runs the proxy on its own event loop in a thread, on ports the kernel picks, with certificates issued by
`kestrel.security.certificates` as the TLS reconciler issues them: a server CA and, per model, a client CA.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import http.client
import http.server
import pathlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest

from kestrel.security import certificates
from kestrel.serving import tls_proxy
from tests.unit.tls_proxy_support import Running

NOW = datetime.datetime.now(datetime.UTC)
Start = Callable[..., Running]  # starts a proxy; mutual=False for one-way TLS
SERVICE = "cams.vision.svc"


class _Triton(http.server.BaseHTTPRequestHandler):
    """Answers like Triton's HTTP endpoint would for these paths; echoes request bodies back."""

    ready_status = 200

    def do_GET(self) -> None:
        if self.path == "/v2/health/live":
            self._answer(200, b"")
        elif self.path.endswith("/ready") or self.path == "/v2/health/ready":
            self._answer(self.ready_status, b"")
        else:
            self._answer(200, b'{"name": "cams", "secret": "model metadata"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(200, body[::-1])

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclasses.dataclass
class Pki:
    root: pathlib.Path
    server_ca: certificates.Issued
    client_ca: certificates.Issued  # this model's
    other_client_ca: certificates.Issued  # another model's, same operator

    def write(self, name: str, data: bytes) -> pathlib.Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    def client(self, ca: certificates.Issued, name: str) -> tuple[pathlib.Path, pathlib.Path]:
        issued = certificates.issue_client(ca, common_name="gateway.apps.serviceaccount", now=NOW)
        return self.write(f"{name}.crt", issued.certificate_pem()), self.write(f"{name}.key", issued.private_key_pem())


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    server_ca = certificates.create_ca(now=NOW)
    server = certificates.issue_server(server_ca, name="cams", namespace="vision", now=NOW)
    found = Pki(tmp_path, server_ca, certificates.create_ca(now=NOW), certificates.create_ca(now=NOW))
    found.write("tls.crt", server.certificate_pem())
    found.write("tls.key", server.private_key_pem())
    found.write("ca.crt", server_ca.certificate_pem())
    found.write("client-ca.crt", found.client_ca.certificate_pem())
    return found


@pytest.fixture
def triton() -> Iterator[http.server.ThreadingHTTPServer]:
    _Triton.ready_status = 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Triton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def start(pki: Pki, triton: http.server.ThreadingHTTPServer) -> Iterator[Start]:
    started: list[Running] = []
    target = tls_proxy.Address("127.0.0.1", triton.server_address[1])

    def run(*, mutual: bool = True) -> Running:
        config = tls_proxy.Config(
            target=target,
            cert_file=pki.root / "tls.crt",
            key_file=pki.root / "tls.key",
            listen=tls_proxy.Address("127.0.0.1", 0),
            health_listen=tls_proxy.Address("127.0.0.1", 0),
            client_ca_file=pki.root / "client-ca.crt" if mutual else None,
        )
        started.append(Running(config))
        return started[-1]

    yield run
    for running in started:
        running.close()


def _https(
    pki: Pki, port: int, client: tuple[pathlib.Path, pathlib.Path] | None, method: str = "GET", body: bytes = b""
) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=pki.root / "ca.crt")
    if client is not None:
        context.load_cert_chain(*client)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(sock, server_hostname=SERVICE) as tls:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.sock = tls
        connection.request(method, "/v2/models/cams", body=body or None)
        response = connection.getresponse()
        return response.status, response.read()


def _plain(port: int, method: str, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path)
    status = connection.getresponse().status
    connection.close()
    return status


def test_a_client_certificate_from_the_models_own_client_ca_gets_through(pki: Pki, start: Start) -> None:
    proxy = start()
    status, body = _https(pki, proxy.port("https"), pki.client(pki.client_ca, "mine"))
    assert (status, body) == (200, b'{"name": "cams", "secret": "model metadata"}')


def test_a_large_request_body_is_relayed_whole_both_ways(pki: Pki, start: Start) -> None:
    proxy = start()
    payload = bytes(range(256)) * (5 * 4096)  # 5 MiB: an image tensor's order of size
    status, body = _https(pki, proxy.port("https"), pki.client(pki.client_ca, "mine"), "POST", payload)
    assert status == 200 and body == payload[::-1]


def test_no_client_certificate_is_refused_in_the_handshake(pki: Pki, start: Start) -> None:
    proxy = start()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https(pki, proxy.port("https"), None)


def test_a_certificate_another_models_client_ca_issued_to_the_same_subject_is_refused(pki: Pki, start: Start) -> None:
    proxy = start()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https(pki, proxy.port("https"), pki.client(pki.other_client_ca, "theirs"))


def test_a_certificate_the_server_ca_issued_is_not_a_client_certificate_of_this_model(pki: Pki, start: Start) -> None:
    """The server CA is trusted by clients, never by the proxy: it is not loaded for verifying them."""
    proxy = start()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https(pki, proxy.port("https"), pki.client(pki.server_ca, "server-ca-signed"))


def test_without_mutual_tls_no_client_certificate_is_asked(pki: Pki, start: Start) -> None:
    proxy = start(mutual=False)
    assert _https(pki, proxy.port("https"), None)[0] == 200


def test_a_plain_text_client_on_the_https_port_gets_no_answer(pki: Pki, start: Start) -> None:
    proxy = start()
    with socket.create_connection(("127.0.0.1", proxy.port("https")), timeout=10) as sock:
        sock.sendall(b"GET /v2/models/cams HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"model metadata" not in sock.recv(65536)


def test_a_renewed_certificate_is_presented_to_the_next_handshake(pki: Pki, start: Start) -> None:
    proxy = start(mutual=False)
    before = ssl.get_server_certificate(("127.0.0.1", proxy.port("https")))
    renewed = certificates.issue_server(pki.server_ca, name="cams", namespace="vision", now=NOW)
    # As the kubelet does: the new files appear under new inodes.
    for name, data in (("tls.crt.new", renewed.certificate_pem()), ("tls.key.new", renewed.private_key_pem())):
        pki.write(name, data)
    (pki.root / "tls.key.new").replace(pki.root / "tls.key")
    (pki.root / "tls.crt.new").replace(pki.root / "tls.crt")
    after = ssl.get_server_certificate(("127.0.0.1", proxy.port("https")))
    assert before != after
    assert certificates.load_certificates(after.encode()) == certificates.load_certificates(renewed.certificate_pem())
    assert _https(pki, proxy.port("https"), None)[0] == 200


def test_a_renewal_seen_half_way_keeps_the_previous_certificate(pki: Pki, start: Start) -> None:
    proxy = start(mutual=False)
    before = ssl.get_server_certificate(("127.0.0.1", proxy.port("https")))
    renewed = certificates.issue_server(pki.server_ca, name="cams", namespace="vision", now=NOW)
    pki.write("tls.crt", renewed.certificate_pem())  # the key is still the old one: the pair does not match
    assert ssl.get_server_certificate(("127.0.0.1", proxy.port("https"))) == before


def test_the_health_listener_relays_only_tritons_liveness_and_readiness(pki: Pki, start: Start) -> None:
    health = start().port("health")
    assert _plain(health, "GET", "/v2/health/live") == 200
    assert _plain(health, "GET", "/v2/health/ready") == 200
    assert _plain(health, "GET", "/v2/models/cams/ready") == 200
    assert _plain(health, "GET", "/v2/models/cams/versions/1/ready") == 200
    assert _plain(health, "GET", "/v2/models/cams") == 404
    assert _plain(health, "GET", "/v2/models/cams/infer") == 404
    assert _plain(health, "GET", "/v2/models/cams/ready/../config") == 404
    assert _plain(health, "POST", "/v2/models/cams/ready") == 405


def test_the_health_listener_says_503_when_the_model_is_not_ready(pki: Pki, start: Start) -> None:
    health = start().port("health")
    _Triton.ready_status = 400  # what Triton answers for a model that is not loaded
    assert _plain(health, "GET", "/v2/models/cams/ready") == 503
    assert _plain(health, "GET", "/v2/health/live") == 200


def test_the_health_listener_says_503_when_triton_is_down(
    pki: Pki, start: Start, triton: http.server.ThreadingHTTPServer
) -> None:
    health = start().port("health")
    triton.shutdown()
    triton.server_close()
    assert _plain(health, "GET", "/v2/health/live") == 503


def test_an_oversized_probe_request_is_a_bad_request(pki: Pki, start: Start) -> None:
    health = start().port("health")
    with socket.create_connection(("127.0.0.1", health), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400 ")


def test_a_certificate_that_does_not_load_fails_the_start(pki: Pki, triton: http.server.ThreadingHTTPServer) -> None:
    (pki.root / "tls.key").write_bytes(b"not a key")
    config = tls_proxy.Config(
        target=tls_proxy.Address("127.0.0.1", triton.server_address[1]),
        cert_file=pki.root / "tls.crt",
        key_file=pki.root / "tls.key",
        listen=tls_proxy.Address("127.0.0.1", 0),
    )
    with pytest.raises(ssl.SSLError):
        asyncio.run(tls_proxy.Proxy(config).start())


@pytest.mark.parametrize("text", ["8443", "host:", ":80", "host:-1", "host:99999", "host:x"])
def test_an_address_that_is_not_host_port_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        tls_proxy.Address.parse(text)
