"""A real S3 server for the engine's slow tests: the test bed's MinIO binary, started on loopback per test."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kestrel.engine import s3
from testbed.ports import free_port


def _minio() -> Path | None:
    if os.environ.get("KESTREL_MINIO"):
        return Path(os.environ["KESTREL_MINIO"])
    found = sorted((Path.home() / ".cache" / "kestrel" / "testbed").glob("minio-*/bin/minio"))
    return found[-1] if found else None


MINIO = _minio()
USER, PASSWORD = "kestrel", "kestrel-test-secret"


@pytest.fixture
def minio(tmp_path: Path) -> Iterator[s3.Credentials]:
    if MINIO is None or not MINIO.exists():
        pytest.skip("no MinIO binary (build the test bed first)")
    port = free_port()
    env = {**os.environ, "MINIO_ROOT_USER": USER, "MINIO_ROOT_PASSWORD": PASSWORD}
    command = [str(MINIO), "server", str(tmp_path / "data"), "--address", f"127.0.0.1:{port}", "--quiet"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    credentials = s3.Credentials(USER, PASSWORD, "us-east-1", f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{credentials.endpoint}/minio/health/ready"):
                break
            assert time.monotonic() < deadline, f"MinIO on port {port} was not ready within 30 s"
            time.sleep(0.3)
        yield credentials
    finally:
        server.terminate()
        server.wait(timeout=30)


def put(credentials: s3.Credentials, path: str, body: bytes) -> None:
    """PUT one object (or bucket); a 503 is retried for 10 s: MinIO may answer its first S3 requests with 503 while
    it finishes initialising, even after /minio/health/ready said yes."""
    url = f"{credentials.endpoint}/{path}"
    deadline = time.monotonic() + 10
    while True:
        now = datetime.datetime.now(datetime.UTC)
        headers = s3.sign("PUT", url, {}, credentials, now=now, payload_sha256=hashlib.sha256(body).hexdigest())
        request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
        try:
            with urllib.request.urlopen(request) as response:
                assert response.status == 200
                return
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.3)
