"""s3:// fetch against a real S3 server: the test bed's MinIO binary, started on loopback for this test."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kestrel.engine import errors, fetch
from kestrel.storage import s3
from tests.engine.minio_support import PASSWORD, USER, minio, put

__all__ = ["minio"]  # the fixture, used by name

pytestmark = pytest.mark.slow


def test_s3_fetch_with_credentials_from_a_mounted_secret(minio: s3.Credentials, tmp_path: Path) -> None:
    body = os.urandom(3 << 20)
    put(minio, "models", b"")
    put(minio, "models/shapes/model%20v1.pt", body)
    secret = tmp_path / "secret"
    secret.mkdir()
    for key, value in {
        "AWS_ACCESS_KEY_ID": USER,
        "AWS_SECRET_ACCESS_KEY": PASSWORD,
        "AWS_ENDPOINT_URL": minio.endpoint,
    }.items():
        (secret / key).write_text(value)
    options = fetch.FetchOptions(credentials_dir=secret)
    digest = hashlib.sha256(body).hexdigest()
    fetched = fetch.fetch("s3://models/shapes/model%20v1.pt", tmp_path / "model.pt", digest, options)
    assert (fetched.size, fetched.sha256) == (len(body), digest)
    with pytest.raises(errors.ChecksumMismatchError):
        fetch.fetch("s3://models/shapes/model%20v1.pt", tmp_path / "bad.pt", "0" * 64, options)
    with pytest.raises(errors.FetchError, match="NoSuchKey"):
        fetch.fetch("s3://models/shapes/missing.pt", tmp_path / "missing.pt", None, options)
    (secret / "AWS_SECRET_ACCESS_KEY").write_text("wrong")
    with pytest.raises(errors.FetchError, match="SignatureDoesNotMatch") as refused:
        fetch.fetch("s3://models/shapes/model%20v1.pt", tmp_path / "denied.pt", None, options)
    assert PASSWORD not in str(refused.value) and "wrong" not in str(refused.value)
