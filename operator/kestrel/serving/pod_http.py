"""Bounded GETs of a pod's plain-HTTP pages (Triton's /metrics): the one way the operator reads what a pod serves.

A model's pods run tenant code, and one operator serves every tenant, so nothing a pod answers may steer it. A
redirect is an error naming its status, never followed: following one would let a pod point the operator at
another tenant's pod. The body is read in chunks and dropped past a cap, so a huge page costs one error, not the
operator's memory. One deadline covers connect, request, headers and body, each read armed with what is left of
it, so a server dripping a byte a second is cut off on time. Errors name the status code and byte counts, never
text the server sent (body, reason phrase, headers): callers write them into status and logs. No proxy from the
environment is used: pod addresses are dialled directly.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

# Triton's /metrics page for a handful of models is tens of KiB; summaries per model add little. (Headers are
# bounded by http.client itself: at most 100 lines of 64 KiB.)
MAX_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 64 * 1024


class PodHTTPError(OSError):
    """A GET of a pod's page failed: unreachable, too slow, not 2xx, malformed or larger than the cap."""


class _DeadlineSocket(socket.socket):
    """A socket whose every send and receive waits at most until one deadline, however little each one moves."""

    deadline = 0.0

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.settimeout(left)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        self._arm()
        super().sendall(data, flags)


class _Connection(http.client.HTTPConnection):
    def __init__(self, netloc: str, deadline: float) -> None:
        super().__init__(netloc, timeout=max(0.001, deadline - time.monotonic()))
        self._deadline = deadline

    def connect(self) -> None:
        plain = socket.create_connection((self.host, self.port), max(0.001, self._deadline - time.monotonic()))
        bounded = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        bounded.deadline = self._deadline
        self.sock = bounded


def get(url: str, *, timeout: float, limit: int = MAX_BYTES) -> bytes:
    """The body of a 2xx answer to GET `url` (http:// only), within `timeout` seconds in all; PodHTTPError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.netloc:
        raise PodHTTPError(f"not an http:// URL: {url}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    received = 0
    connection: _Connection | None = None
    response: http.client.HTTPResponse | None = None
    try:
        connection = _Connection(parts.netloc, time.monotonic() + timeout)
        connection.request("GET", path)
        response = connection.getresponse()
        if 300 <= response.status < 400:
            raise PodHTTPError(f"answered HTTP {response.status}, a redirect, which is not followed")
        if not 200 <= response.status < 300:
            raise PodHTTPError(f"answered HTTP {response.status}")
        if response.length is not None and response.length > limit:
            raise PodHTTPError(f"the body is larger than {limit} bytes ({response.length} announced)")
        chunks = []
        while chunk := response.read(min(CHUNK_BYTES, limit + 1 - received)):
            received += len(chunk)
            if received > limit:
                raise PodHTTPError(f"the body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except TimeoutError:
        raise PodHTTPError(f"no complete answer within {timeout:g} s ({received} body bytes read)") from None
    except http.client.HTTPException as error:  # its text quotes what the server sent (BadStatusLine, ...)
        raise PodHTTPError(f"a malformed HTTP answer ({type(error).__name__}, {received} body bytes read)") from None
    except PodHTTPError:
        raise
    except OSError as error:  # the local system's words (refused, reset, unreachable), never the server's
        raise PodHTTPError(f"the connection failed: {error.strerror or type(error).__name__}") from None
    finally:
        if response is not None:  # it holds the socket when the server said it would close the connection
            response.close()
        if connection is not None:
            connection.close()
