"""The engine store with temporary credentials (a session token), as IRSA gives them, against a real S3 server.

MinIO's STS answers AssumeRole for a user's static keys with temporary keys and a session token (web identity would
need an OIDC provider, which is not here: tests/unit/test_store_signs_with_the_operators_web_identity.py fakes it).
Those go into the variables the credential chain reads, and the store is used as the operator and its pods use it:
put, get, and the pre-signed grants, each with the token.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import urllib.parse

import pytest
import urllib3
from minio.credentials import providers

from kestrel import storage
from kestrel.storage import grants, identity, layout, s3
from tests.engine.minio_support import PASSWORD, USER, minio, put

__all__ = ["minio"]  # the fixture, used by name

pytestmark = pytest.mark.slow

REF = layout.EngineRef("vision", "cams", "ab" * 32)
OTHER = layout.EngineRef("vision", "cams", "cd" * 32)


def _artifact(folder: pathlib.Path) -> dict[str, bytes]:
    files = {"files/yolo/1/model.onnx": os.urandom(3 << 20), layout.MANIFEST_NAME: b'{"files": []}'}
    for relative, body in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return files


def _read(folder: pathlib.Path, files: dict[str, bytes]) -> dict[str, bytes]:
    return {relative: (folder / relative).read_bytes() for relative in files}


def test_the_store_round_trips_with_temporary_credentials_from_sts(
    minio: s3.Credentials, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(minio, "engines", b"")
    temporary = providers.AssumeRoleProvider(sts_endpoint=minio.endpoint, access_key=USER, secret_key=PASSWORD)
    session = temporary.retrieve()
    assert session.session_token and session.access_key != USER
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", session.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", session.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", session.session_token)
    monkeypatch.setenv("AWS_ENDPOINT_URL", minio.endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    # Through the chain, as with IRSA: the environment's link yields the session, token included.
    ambient = s3.Ambient.load(os.environ)
    chained = ambient.chain.retrieve()
    assert (chained.access_key, chained.session_token) == (session.access_key, session.session_token)
    engines = s3.S3Store(layout.parse_store_uri("s3://engines/kestrel"), ambient)

    files = _artifact(tmp_path / "artifact")
    engines.upload(tmp_path / "artifact", REF)
    assert engines.exists(REF)
    engines.download(REF, tmp_path / "fetched")
    assert _read(tmp_path / "fetched", files) == files

    # What the loader gets: pre-signed GETs that carry the token. (Keys from the environment say nothing of when
    # their session ends, so the grant cannot either; STS's own answer does, below.)
    download = engines.download_grant(REF, grants.DOWNLOAD_LIFETIME, files)
    for url in download.objects.values():
        assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["X-Amz-Security-Token"] == (
            session.session_token
        )
    grants.download(download, REF, tmp_path / "granted")
    assert _read(tmp_path / "granted", files) == files
    # The token is part of what was signed: without it the same signature is refused.
    url = download.objects[layout.MANIFEST_NAME]
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "X-Amz-Security-Token"]
    stripped = parts._replace(query=urllib.parse.urlencode(query)).geturl()
    assert urllib3.request("GET", url).status == 200
    assert urllib3.request("GET", stripped).status == 403

    # What a build gets: a POST policy signed with the session, its token a form field.
    upload = engines.upload_grant(OTHER, datetime.timedelta(hours=2))
    assert upload.fields["x-amz-security-token"] == session.session_token
    grants.upload(upload, tmp_path / "artifact", OTHER)
    assert engines.exists(OTHER)

    # The same keys as static ones (a Secret holding a session token) open the store alike.
    keyed = storage.open_store("s3://engines/kestrel")
    assert isinstance(keyed, s3.S3Store) and keyed.read_manifest(OTHER) == files[layout.MANIFEST_NAME]
    assert [engine.key for engine in keyed.list_engines("vision", "cams")] == sorted([REF.key, OTHER.key])


def test_grants_signed_with_an_sts_session_end_with_it_and_renewal_brings_a_new_session(
    minio: s3.Credentials, tmp_path: pathlib.Path
) -> None:
    """A chain whose link is STS itself, as IRSA's is: its answer says when the session ends."""
    put(minio, "engines", b"")
    start = datetime.datetime.now(datetime.UTC)
    clock = [start]

    def sts() -> list[identity.Source]:  # a new provider each time, as identity.sources makes them
        assume = providers.AssumeRoleProvider(sts_endpoint=minio.endpoint, access_key=USER, secret_key=PASSWORD)
        return [identity.Source("MinIO's STS", assume)]

    chain = identity.Renewing(sts, clock=lambda: clock[0])
    engines = s3.S3Store(layout.parse_store_uri("s3://engines/kestrel"), s3.Ambient(minio.endpoint, "us-east-1", chain))
    files = _artifact(tmp_path / "artifact")
    engines.upload(tmp_path / "artifact", REF)

    first = chain.retrieve()
    ends = identity.expiry(first)
    assert first.session_token and ends is not None and ends - start <= datetime.timedelta(hours=1, seconds=5)
    download = engines.download_grant(REF, grants.DOWNLOAD_LIFETIME, files)
    assert download.expires == ends.replace(microsecond=0)
    grants.download(download, REF, tmp_path / "first")
    assert _read(tmp_path / "first", files) == files

    clock[0] = start + (ends - start) / 2 + datetime.timedelta(seconds=1)
    renewed = engines.download_grant(REF, grants.DOWNLOAD_LIFETIME, files)
    second = chain.retrieve()
    assert second.access_key != first.access_key and second.session_token != first.session_token
    url = renewed.objects[layout.MANIFEST_NAME]
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["X-Amz-Security-Token"] == (
        second.session_token
    )
    grants.download(renewed, REF, tmp_path / "second")
    assert _read(tmp_path / "second", files) == files
