"""`kestrel upload` against a real S3 server (the test bed's MinIO binary, started on loopback for this test; the
test bed itself is not needed): what it prints as spec.model.source is what the build Job fetches and verifies,
multipart uploads included, and a refusal is an exit code and a message without the credentials."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from kestrel import cli
from kestrel.engine import fetch
from kestrel.storage import s3
from tests.engine.minio_support import PASSWORD, USER, minio, put

__all__ = ["minio"]  # the fixture, used by name

pytestmark = pytest.mark.slow


@pytest.fixture
def credentials(minio: s3.Credentials, monkeypatch: pytest.MonkeyPatch) -> s3.Credentials:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", USER)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PASSWORD)
    monkeypatch.setenv("AWS_ENDPOINT_URL", minio.endpoint)
    for key in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    put(minio, "models", b"")  # the bucket
    return minio


def test_the_printed_source_is_what_the_build_fetches(
    credentials: s3.Credentials, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = os.urandom(2 * s3.PART_SIZE + 12345)  # three parts
    checkpoint = tmp_path / "shapes v3.pt"
    checkpoint.write_bytes(body)
    assert cli.main(["upload", str(checkpoint), "s3://models/shapes/model%20v3.pt"]) == 0
    source = yaml.safe_load(capsys.readouterr().out)["spec"]["model"]["source"]
    assert source == {"uri": "s3://models/shapes/model%20v3.pt", "sha256": hashlib.sha256(body).hexdigest()}
    fetched = fetch.fetch(source["uri"], tmp_path / "fetched.pt", source["sha256"], fetch.FetchOptions())
    assert (fetched.size, fetched.sha256) == (len(body), source["sha256"])
    assert (tmp_path / "fetched.pt").read_bytes() == body


def test_a_refused_upload_exits_1_and_names_the_object_not_the_secret(
    credentials: s3.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    assert cli.main(["upload", str(checkpoint), "s3://no-such-bucket/model.pt"]) == 1
    err = capsys.readouterr().err
    assert "s3://no-such-bucket/model.pt" in err and "NoSuchBucket" in err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-password")
    assert cli.main(["upload", str(checkpoint), "s3://models/model.pt"]) == 1
    captured = capsys.readouterr()
    assert "SignatureDoesNotMatch" in captured.err and "not-the-password" not in captured.err + captured.out
