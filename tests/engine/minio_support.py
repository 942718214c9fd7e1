"""A real S3 server for the engine's slow tests: the test bed's MinIO binary, started on loopback per test."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import minio as minio_sdk
import pytest
from minio import error as minio_errors

from kestrel.storage import s3
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
    credentials = s3.Credentials(USER, PASSWORD, f"http://127.0.0.1:{port}", "us-east-1")
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
    """Make a bucket (`path` without a slash) or put one object (`bucket/key`, the key URL-quoted as in an s3:// URI);
    a 503 is retried for 10 s: MinIO may answer its first S3 requests with 503 while it finishes initialising, even
    after /minio/health/ready said yes."""
    endpoint = urllib.parse.urlsplit(credentials.endpoint)
    client = minio_sdk.Minio(endpoint.netloc, USER, PASSWORD, secure=False, region=credentials.region)
    bucket, _, key = path.partition("/")
    deadline = time.monotonic() + 10
    while True:
        try:
            if key:
                client.put_object(bucket, urllib.parse.unquote(key), io.BytesIO(body), len(body))
            else:
                client.make_bucket(bucket)
            return
        except (minio_errors.ServerError, minio_errors.S3Error) as error:
            status = getattr(error, "status_code", None) or getattr(getattr(error, "response", None), "status", None)
            if status != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.3)
