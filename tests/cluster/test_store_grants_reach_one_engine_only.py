"""Store grants on a real S3 server (the test bed's MinIO): what a pod holding one can and cannot do.

A grant is what a tenant's pod holds instead of the store's credentials. Each test tampers with a grant the way
code running in a build pod could (it can read and rewrite its own grant file) and shows the server refuse it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import time
import urllib.parse

import pytest
import urllib3

from kestrel.storage import errors, grants, layout, s3
from tests.cluster.storage_fixtures import REF, Keys, keys, minio_connection, packed_engine, s3_store, tree

__all__ = ["keys", "minio_connection", "s3_store"]  # fixtures, imported for pytest to find

OTHER = layout.EngineRef("other-team", "cams", "0f" * 32)
HOUR = datetime.timedelta(hours=1)


def _listed(packed: pathlib.Path) -> list[str]:
    """What the operator grants: the manifest and the files it lists (here, what the packed artifact holds)."""
    return [path.relative_to(packed).as_posix() for path in packed.rglob("*") if path.is_file()]


def _stored(engines: s3.S3Store, ref: layout.EngineRef) -> set[str]:
    client = engines._client  # the test reads the bucket behind the store's back
    prefix = f"{engines.location.prefix}/{ref.path}/"
    return {obj.object_name[len(prefix) :] for obj in client.list_objects(engines.location.container, prefix, True)}


def test_a_build_publishes_and_a_loader_fetches_with_grants_alone(
    s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path
) -> None:
    packed = packed_engine(tmp_path / "build", keys)
    upload = grants.parse(s3_store.upload_grant(REF, HOUR).to_json(), "upload grant")
    assert isinstance(upload, grants.UploadGrant)
    sent = grants.upload(upload, packed, REF)
    assert s3_store.exists(REF)

    download = grants.parse(s3_store.download_grant(REF, HOUR, _listed(packed)).to_json(), "download grant")
    assert isinstance(download, grants.DownloadGrant)
    got = grants.download(download, REF, tmp_path / "fetched")
    assert tree(tmp_path / "fetched") == tree(packed)
    assert got == sent


def test_an_upload_grant_writes_nowhere_but_its_engines_folder(
    s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path
) -> None:
    packed = packed_engine(tmp_path / "build", keys)
    s3_store.upload(packed, OTHER)
    before = {
        name: s3_store._client.stat_object(s3_store.location.container, name).etag
        for name in _stored_keys(s3_store, OTHER)
    }
    grant = s3_store.upload_grant(REF, HOUR)
    # The build rewrites its grant to point at another tenant's engine: the signed policy still names its own folder.
    moved = dataclasses.replace(grant, engine=OTHER.path, key_prefix=f"{s3_store.location.prefix}/{OTHER.path}/")
    with pytest.raises(errors.StoreAccessError):
        grants.upload(moved, packed, OTHER)
    after = {
        name: s3_store._client.stat_object(s3_store.location.container, name).etag
        for name in _stored_keys(s3_store, OTHER)
    }
    assert after == before
    assert not _stored(s3_store, REF)


def _stored_keys(engines: s3.S3Store, ref: layout.EngineRef) -> list[str]:
    prefix = f"{engines.location.prefix}/{ref.path}/"
    return [obj.object_name for obj in engines._client.list_objects(engines.location.container, prefix, True)]


def test_a_download_grant_reads_its_objects_only_and_cannot_list_or_delete(
    s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path
) -> None:
    s3_store.upload(packed_engine(tmp_path / "a", keys), REF)
    s3_store.upload(packed_engine(tmp_path / "b", keys, OTHER), OTHER)
    grant = s3_store.download_grant(REF, HOUR, _listed(tmp_path / "a" / "artifact"))
    http = urllib3.PoolManager()
    manifest_url = grant.objects[layout.MANIFEST_NAME]
    assert http.request("GET", manifest_url).status == 200
    # The same signature on another tenant's object, on the listing of the bucket, or with another method: refused.
    other_url = manifest_url.replace(f"/{REF.path}/", f"/{OTHER.path}/")
    assert other_url != manifest_url
    assert http.request("GET", other_url).status == 403
    parts = urllib.parse.urlsplit(manifest_url)
    listing = f"{parts.scheme}://{parts.netloc}/{s3_store.location.container}?list-type=2&{parts.query}"
    assert http.request("GET", listing).status == 403
    assert http.request("DELETE", manifest_url).status == 403
    assert http.request("PUT", manifest_url, body=b"{}").status == 403
    assert s3_store.exists(REF) and s3_store.exists(OTHER)
    # And a loader handed this grant for the other engine refuses before it asks anything.
    with pytest.raises(errors.StoreAccessError, match="not other-team"):
        grants.download(grant, OTHER, tmp_path / "stolen")
    assert not (tmp_path / "stolen").exists()


def test_an_expired_grant_is_refused_by_the_store_itself(
    s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path
) -> None:
    packed = packed_engine(tmp_path / "build", keys)
    upload = s3_store.upload_grant(REF, datetime.timedelta(seconds=2))
    time.sleep(3)
    # `now` in the past switches the pod's own expiry check off: the refusal below is the server's.
    past = datetime.datetime.now(datetime.UTC) - HOUR
    with pytest.raises(errors.StoreAccessError):
        grants.upload(upload, packed, REF, now=past)
    assert not _stored(s3_store, REF)
    with pytest.raises(errors.StoreAccessError, match="expired"):
        grants.upload(upload, packed, REF)


def test_grant_errors_name_the_object_but_never_a_signature(
    s3_store: s3.S3Store, keys: Keys, tmp_path: pathlib.Path
) -> None:
    s3_store.upload(packed_engine(tmp_path / "a", keys), REF)
    grant = s3_store.download_grant(REF, HOUR, _listed(tmp_path / "a" / "artifact"))
    signatures = {url.split("X-Amz-Signature=")[1] for url in grant.objects.values()}
    broken = dataclasses.replace(
        grant,
        objects={name: url.replace("X-Amz-Signature=", "X-Amz-Signature=00") for name, url in grant.objects.items()},
    )
    with pytest.raises(errors.StoreAccessError) as refused:
        grants.download(broken, REF, tmp_path / "fetched")
    assert REF.path in str(refused.value)
    assert not any(signature in str(refused.value) for signature in signatures)
    assert "X-Amz" not in str(refused.value)
    assert "X-Amz" not in repr(grant)
    document = json.loads(grant.to_json())
    assert document["kind"] == "download" and set(document["objects"]) == set(grant.objects)
