"""A fault proxy between the operator and the test bed's API server: the fault campaign's hand on the wire.

The operator gets a kubeconfig whose server is this proxy (plain HTTP on loopback; the proxy speaks TLS to the API
server, verifying its CA, and adds the operator's token where a client did not send it: client-go sends no token to
a plain-HTTP server), so every request the operator makes, its
watch streams included, goes through here and nothing inside the product is changed. What it can do, each said in
its log (`actions`) with the request it touched:

- count the mutating requests (POST, PUT, PATCH, DELETE) that the API server answered with success, and call a
  function right after the N-th one, before the operator sees the answer, whose connection is then dropped: the
  write is persisted, the operator never learns it was (Sieve's crash points, when the function kills the operator;
  an outage that starts mid-write, when it calls `refuse`);
- drop one watch event: the k-th event of a watch on a given resource (its path's last segment, e.g.
  `deployments`), after the stream's initial listing, as a lost event would be;
- answer reads (GETs that are not watches) from a snapshot at least `age` seconds old, where one was seen;
- refuse every connection for a time, and cut the streams that are open (an API server that went away).

The proxy keeps one upstream connection per client connection; a watch is relayed line by line as it arrives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import json
import pathlib
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import yaml

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade", "trailer"}
)


@dataclasses.dataclass
class Action:
    """One thing the proxy did to the traffic (or saw, for the counted writes)."""

    at: float
    what: str
    request: str


@dataclasses.dataclass
class _Drop:
    resource: str
    index: int  # 1-based: the index-th event of a watch on `resource`, counted over all such watches
    seen: int = 0
    done: bool = False


class FaultProxy:
    """Start with `start()`; `kubeconfig(path, token)` writes a kubeconfig that reaches the API server through it."""

    def __init__(self, upstream: str, ca_file: pathlib.Path) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "https" or parsed.hostname is None:
            raise ValueError(f"the upstream must be an https:// URL, got {upstream!r}")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port or 443
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.lock = threading.Lock()
        self.actions: list[Action] = []
        self.writes = 0
        self._crash_at: int | None = None
        self._on_crash: Callable[[], None] | None = None
        self._drop: _Drop | None = None
        self._stale_age: float | None = None
        self._snapshots: dict[str, list[tuple[float, int, list[tuple[str, str]], bytes]]] = {}
        self._refuse_until = 0.0
        self._open: set[http.client.HTTPSConnection] = set()
        self.token: str | None = None
        self._answer_crashed = False
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_kubeconfig(cls, kubeconfig: pathlib.Path) -> FaultProxy:
        cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
        return cls(cluster["server"], pathlib.Path(cluster["certificate-authority"]))

    # Faults.

    def after_write(self, writes: int, crash: Callable[[], None], *, answer: bool = False) -> None:
        """Call `crash` right after the `writes`-th successful mutating request from now, and leave that request
        unanswered (its connection dropped) unless `answer`."""
        with self.lock:
            self._crash_at = self.writes + writes
            self._on_crash = crash
            self._answer_crashed = answer

    def drop_event(self, resource: str, index: int) -> None:
        with self.lock:
            self._drop = _Drop(resource, index)

    def stale_reads(self, age: float | None) -> None:
        """Answer GETs from a snapshot at least `age` seconds old where one exists; None: answer them live."""
        with self.lock:
            self._stale_age = age

    def refuse(self, seconds: float) -> None:
        """Refuse every connection for `seconds` from now, and cut what is open."""
        with self.lock:
            self._refuse_until = time.monotonic() + seconds
            opened = list(self._open)
        self._log(f"refusing connections for {seconds:.0f}s; cut {len(opened)} open", "-")
        for connection in opened:
            _shut(connection)

    def clear(self) -> None:
        """No fault from now on (the write count goes on)."""
        with self.lock:
            self._crash_at, self._on_crash, self._drop, self._stale_age = None, None, None, None
            self._answer_crashed = False
            self._refuse_until = 0.0

    @property
    def dropped(self) -> bool:
        with self.lock:
            return self._drop is not None and self._drop.done

    # Serving.

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            opened = list(self._open)
        for connection in opened:
            _shut(connection)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def kubeconfig(self, path: pathlib.Path, token: str) -> pathlib.Path:
        """A kubeconfig holding `token` whose server is this proxy (which sends `token` for clients that do not)."""
        self.token = token
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "faulty", "cluster": {"server": self.url}}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "faulty", "context": {"cluster": "faulty", "user": "operator"}}],
            "current-context": "faulty",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        return path

    def note(self, what: str) -> None:
        """Say in the log what was done to the traffic from outside the proxy (an etcd stopped)."""
        self._log(what, "-")

    def log_text(self) -> str:
        with self.lock:
            return "\n".join(f"{a.at:.3f} {a.what} [{a.request}]" for a in self.actions)

    # Used by the handler.

    def _log(self, what: str, request: str) -> None:
        with self.lock:
            self.actions.append(Action(time.monotonic(), what, request))

    def refusing(self) -> bool:
        with self.lock:
            return time.monotonic() < self._refuse_until

    def upstream(self) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(
            self.upstream_host, self.upstream_port, context=self.context, timeout=330
        )
        with self.lock:
            self._open.add(connection)
        return connection

    def closed(self, connection: http.client.HTTPSConnection) -> None:
        with self.lock:
            self._open.discard(connection)
        connection.close()

    def stale(self, key: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
        with self.lock:
            if self._stale_age is None:
                return None
            cutoff = time.monotonic() - self._stale_age
            older = [s for s in self._snapshots.get(key, []) if s[0] <= cutoff]
        if not older:
            return None
        _, status, headers, body = older[-1]
        return status, headers, body

    def remember(self, key: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        with self.lock:
            kept = self._snapshots.setdefault(key, [])
            kept.append((time.monotonic(), status, headers, body))
            del kept[:-8]

    def wrote(self, request: str) -> tuple[Callable[[], None] | None, bool]:
        """Count one successful write; the crash to run now, if this is the write it waits for, and whether to
        answer that write all the same."""
        with self.lock:
            self.writes += 1
            count = self.writes
            crash = None
            if self._crash_at is not None and count >= self._crash_at and self._on_crash is not None:
                crash, self._on_crash, self._crash_at = self._on_crash, None, None
            answer = self._answer_crashed
        self._log(f"write {count}", request)
        return crash, answer

    def drops(self, resource: str, event: dict[str, Any]) -> bool:
        with self.lock:
            drop = self._drop
            if drop is None or drop.done or drop.resource != resource:
                return False
            drop.seen += 1
            if drop.seen < drop.index:
                return False
            drop.done = True
        obj = event.get("object") or {}
        name = (obj.get("metadata") or {}).get("name", "?")
        self._log(f"dropped watch event {event.get('type')} {resource}/{name}", resource)
        return True


def _shut(connection: http.client.HTTPSConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    upstream_connection: http.client.HTTPSConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        if self.owner.refusing():
            self.owner._log("refused a connection", "-")
            self.connection.close()
            return
        try:
            super().handle()
        finally:
            if self.upstream_connection is not None:
                self.owner.closed(self.upstream_connection)
                self.upstream_connection = None

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_PATCH(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        owner = self.owner
        if owner.refusing():
            self.close_connection = True
            self.connection.close()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        watching = query.get("watch", ["false"])[0] in ("true", "1")
        request = f"{self.command} {self.path}"
        key = self.path
        if self.command == "GET" and not watching:
            snapshot = owner.stale(key)
            if snapshot is not None:
                owner._log("answered from a stale snapshot", request)
                self._answer(*snapshot)
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        if owner.token and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {owner.token}"
        try:
            if self.upstream_connection is None:
                self.upstream_connection = owner.upstream()
            upstream = self.upstream_connection
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
        except (OSError, http.client.HTTPException):
            if self.upstream_connection is not None:
                owner.closed(self.upstream_connection)
                self.upstream_connection = None
            self.close_connection = True
            return
        passed = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        if watching and response.status == 200:
            self._stream(response, passed, _resource(self.path))
            return
        data = response.read()
        if self.command == "GET" and response.status == 200:
            owner.remember(key, response.status, passed, data)
        crash, answer = (
            owner.wrote(request) if self.command in MUTATING and 200 <= response.status < 300 else (None, True)
        )
        if crash is not None:
            crash()
            # Said once the fault has been done (the operator killed and reaped, the outage begun): whoever waits
            # for this line finds its effect.
            owner._log(f"fault after write {owner.writes}", request)
            if not answer:
                self.close_connection = True
                return
        self._answer(response.status, passed, data)

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _stream(self, response: http.client.HTTPResponse, headers: list[tuple[str, str]], resource: str) -> None:
        self.send_response_only(200)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                line = response.readline()
                if not line:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {}
                kind = event.get("type") if isinstance(event, dict) else None
                if kind in ("ADDED", "MODIFIED", "DELETED") and self.owner.drops(resource, event):
                    continue
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, http.client.HTTPException, ValueError):
            pass
        self.close_connection = True


def _resource(path: str) -> str:
    """The resource a watch path names: `/apis/apps/v1/namespaces/x/deployments` -> `deployments`."""
    parts = [p for p in urllib.parse.urlsplit(path).path.split("/") if p]
    return parts[-1] if parts else ""
