"""The TLS front of a Triton pod (`kestrel tls-proxy`): HTTPS for clients, plain health answers for the kubelet.

Triton serves TLS itself on gRPC only. When a model's TLS is on, Triton's HTTP listens on 127.0.0.1 and this
sidecar is the pod's one HTTP door, with two listeners:

- `--listen` (8443, only when clients speak HTTP): TLS with the model's server certificate. Under mutual TLS a
  client must present a certificate that the model's own client CA signed; no other CA is loaded, the system's
  included, so a certificate another model issued is refused in the handshake. Bytes pass to Triton unchanged:
  the API key header is Triton's to check.
- `--health-listen` (8081): plain HTTP for the kubelet's probes, which speak neither TLS nor client certificates.
  It answers only GETs of Triton's liveness and readiness paths, with Triton's status code and no body; any other
  path is 404. Nothing of a model's data or configuration passes through it.

Certificates are read again when their files change (the kubelet swaps a Secret volume's files when the operator
renews them): each new handshake uses the newest pair that loads; connections already open keep theirs. A pair
that does not load (a swap seen half-way) keeps the previous context until the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import re
import signal
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
HANDSHAKE_SECONDS = 10.0
HEALTH_SECONDS = 3.0
MAX_CONNECTIONS = 512
# A request line and headers of a probe: the kubelet sends a handful of short headers.
MAX_HEAD_BYTES = 8 * 1024
MAX_HEADER_LINES = 64
# Triton's liveness and readiness endpoints, the only paths the health listener relays.
HEALTH_PATH = re.compile(r"^/v2/(health/(live|ready)|models/[A-Za-z0-9_.\-]+(/versions/[0-9]+)?/ready)$")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclasses.dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{text!r} is not HOST:PORT")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Config:
    target: Address  # Triton's HTTP listener inside the pod
    cert_file: pathlib.Path
    key_file: pathlib.Path
    listen: Address | None = None  # the HTTPS listener; None when clients speak only gRPC
    health_listen: Address | None = None
    client_ca_file: pathlib.Path | None = None  # set: a client certificate signed by this CA is required
    max_connections: int = MAX_CONNECTIONS


class Credentials:
    """The server's TLS context, built again from its files whenever one of them changes."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._files = [config.cert_file, config.key_file, *([config.client_ca_file] if config.client_ca_file else [])]
        self._stamp: tuple[tuple[int, int, int], ...] | None = None
        self._context: ssl.SSLContext | None = None

    def _current_stamp(self) -> tuple[tuple[int, int, int], ...]:
        # stat follows the Secret volume's symlinks: a swap gives the file a new inode.
        found = [path.stat() for path in self._files]
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in found)

    def context(self) -> ssl.SSLContext:
        """The context for the next handshake; raises only when no pair has ever loaded."""
        try:
            stamp = self._current_stamp()
            if stamp != self._stamp:
                self._context = self._build()
                self._stamp = stamp
                logger.info("TLS proxy: loaded the server certificate%s", self._client_note())
        except (OSError, ssl.SSLError, ValueError) as error:
            if self._context is None:
                raise
            logger.warning(
                "TLS proxy: kept the previous certificate; the new files did not load: %s", type(error).__name__
            )
        assert self._context is not None
        return self._context

    def _client_note(self) -> str:
        return " and the client CA" if self._config.client_ca_file else ""

    def _build(self) -> ssl.SSLContext:
        # Not ssl.create_default_context: that would also trust the system's CAs for client certificates.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._config.cert_file, self._config.key_file)
        if self._config.client_ca_file is not None:
            context.load_verify_locations(cafile=self._config.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, half_close: bool) -> bool:
    """Copies until end of stream, then half-closes the far side where it can. False when either side failed."""
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
        if half_close and writer.can_write_eof():
            writer.write_eof()
    except (OSError, ssl.SSLError):
        return False
    return True


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), HEALTH_SECONDS)


class _Unread(asyncio.Protocol):
    """A new connection that nothing reads until TLS is put on it: a byte read before the handshake would be lost
    to it (the client's hello sitting in a stream buffer, the handshake waiting for it)."""

    def __init__(self, accept: Callable[[asyncio.BaseTransport], None]) -> None:
        self._accept = accept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # type: ignore[attr-defined]
        self._accept(transport)


class _TLSStream(asyncio.StreamReaderProtocol):
    """A stream over TLS, which cannot half-close: an end of stream from the client ends its side for good."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


class Proxy:
    """Both listeners of one pod; `serve` runs them until `stop`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.credentials = Credentials(config)
        self._slots = asyncio.Semaphore(config.max_connections)
        self._servers: list[asyncio.Server] = []
        self._stopped = asyncio.Event()
        # The connections' tasks, held here: the loop keeps only weak references to tasks.
        self._connections: set[asyncio.Task[None]] = set()
        self.ports: dict[str, int] = {}  # bound ports by listener, "https" and "health": port 0 picks one

    async def start(self) -> None:
        self.credentials.context()  # a pair that does not load fails the start, not the first client
        loop = asyncio.get_running_loop()
        if self.config.listen is not None:
            listen = self.config.listen
            server = await loop.create_server(lambda: _Unread(self._track(self._tls_client)), listen.host, listen.port)
            self._servers.append(server)
            self.ports["https"] = server.sockets[0].getsockname()[1]
        if self.config.health_listen is not None:
            listen = self.config.health_listen
            server = await asyncio.start_server(self._health_client, listen.host, listen.port, limit=MAX_HEAD_BYTES)
            self._servers.append(server)
            self.ports["health"] = server.sockets[0].getsockname()[1]
        logger.info("TLS proxy: listening on %s, relaying to %s", self.ports, self.config.target)

    async def serve(self) -> None:
        """Starts, unless started already, and serves until `stop`."""
        if not self._servers:
            await self.start()
        await self._stopped.wait()
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def stop(self) -> None:
        self._stopped.set()

    def _track(
        self, handler: Callable[[asyncio.BaseTransport], Coroutine[Any, Any, None]]
    ) -> Callable[[asyncio.BaseTransport], None]:
        def accept(transport: asyncio.BaseTransport) -> None:
            task = asyncio.get_running_loop().create_task(handler(transport))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

        return accept

    async def _tls_client(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        async with self._slots:
            reader = asyncio.StreamReader(limit=CHUNK_BYTES, loop=loop)
            protocol = _TLSStream(reader, loop=loop)
            try:
                tls = await loop.start_tls(
                    transport,  # type: ignore[arg-type]
                    protocol,
                    self.credentials.context(),
                    server_side=True,
                    ssl_handshake_timeout=HANDSHAKE_SECONDS,
                )
            except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as error:
                # The reason only: the client's certificate is not logged, nor anything it sent.
                logger.info("TLS proxy: refused a handshake from %s: %s", _host(peer), _reason(error))
                transport.close()
                return
            if tls is None:  # the client went away during the handshake
                transport.close()
                return
            writer = asyncio.StreamWriter(tls, protocol, reader, loop)
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    self.config.target.host, self.config.target.port
                )
            except OSError as error:
                logger.warning("TLS proxy: Triton at %s is unreachable: %s", self.config.target, _reason(error))
                await _close(writer)
                return
            try:
                await _relay(reader, writer, upstream_reader, upstream_writer)
            finally:
                await _close(upstream_writer)
                await _close(writer)

    async def _health_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._slots:
            try:
                status = await asyncio.wait_for(self._health_status(reader), HEALTH_SECONDS)
            except (OSError, ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                status = 400
            except TimeoutError:
                status = 503
            reason = _REASONS.get(status, "")
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            with contextlib.suppress(OSError):
                await writer.drain()
            await _close(writer)

    async def _health_status(self, reader: asyncio.StreamReader) -> int:
        request = (await reader.readuntil(b"\r\n")).decode("ascii").split()
        for _ in range(MAX_HEADER_LINES):
            if await reader.readuntil(b"\r\n") == b"\r\n":
                break
        else:
            return 400
        if len(request) != 3 or not request[2].startswith("HTTP/1."):
            return 400
        method, path, _version = request
        if method != "GET":
            return 405
        if not HEALTH_PATH.match(path):
            return 404
        try:
            return await self._upstream_status(path)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return 503

    async def _upstream_status(self, path: str) -> int:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.config.target.host, self.config.target.port, limit=MAX_HEAD_BYTES
        )
        try:
            upstream_writer.write(f"GET {path} HTTP/1.0\r\nHost: {self.config.target}\r\n\r\n".encode())
            await upstream_writer.drain()
            status_line = (await upstream_reader.readuntil(b"\r\n")).decode("ascii").split()
        finally:
            await _close(upstream_writer)
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise ValueError("not an HTTP status line")
        code = int(status_line[1])
        # The kubelet reads 200-399 as success: anything else from Triton is "not ready", said as 503.
        return 200 if 200 <= code < 400 else 503


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    """Both directions until Triton's side ends or either side fails. A client that half-closes after its request
    still gets the answer; a client that keeps its connection open keeps it as long as Triton does."""
    to_upstream = asyncio.create_task(_copy(reader, upstream_writer, half_close=True))
    to_client = asyncio.create_task(_copy(upstream_reader, writer, half_close=False))
    try:
        done, _ = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
        if to_client not in done and to_upstream.result():
            await to_client
    finally:
        to_upstream.cancel()
        to_client.cancel()


def _host(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else "an unknown peer"


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason)
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    return type(error).__name__


def run(config: Config) -> int:
    """Serves until SIGTERM or SIGINT; exit code 0, or 2 when the certificate or a listener cannot be set up."""

    async def main() -> int:
        proxy = Proxy(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, proxy.stop)
        try:
            await proxy.serve()
        except (OSError, ssl.SSLError, ValueError) as error:
            logger.error("TLS proxy: cannot start: %s", _reason(error))
            return 2
        return 0

    return asyncio.run(main())
