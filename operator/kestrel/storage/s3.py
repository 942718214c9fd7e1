"""The engine store on S3 (AWS S3, GCS's S3 API, MinIO on-prem), through the MinIO Python SDK.

Not boto3: botocore pins python-dateutil below 3, which kubernetes 37 requires, so the two cannot share an image.
The MinIO SDK is a plain, typed S3 client (AWS Signature V4, multipart upload) over urllib3, which kubernetes
already brings.

Uploads are multipart in `PART_SIZE` parts sent one at a time, and downloads stream in `store.COPY_BLOCK` blocks,
so memory stays at one part whatever the engine's size. Requests are signed with keys from a mounted Secret or the
environment, else with the process's own identity (`connection`); the first request says what to set when there is
neither. No message this module raises contains a key or a token.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import io
import pathlib
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Set
from typing import BinaryIO, NoReturn, Protocol, TypeVar, cast

import minio
import urllib3
from minio import datatypes, deleteobjects
from minio import error as minio_errors

from kestrel.storage import connection, errors, grants, identity, layout, store

PART_SIZE = 16 << 20
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket", "InvalidBucketName"}
_MISSING = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
# A grant that would work for less than this (temporary credentials about to end) is not signed.
MIN_GRANT = datetime.timedelta(minutes=2)
_T = TypeVar("_T")


# Defined with the rest of what signs for the store (`connection`); named here too, by the store they open.
Credentials = connection.Credentials
Ambient = connection.Ambient
load = connection.load


def _connect(credentials: Credentials | Ambient) -> tuple[minio.Minio, str]:
    """An S3 client for the credentials' endpoint, and that endpoint as `scheme://host[:port]`."""
    endpoint = urllib.parse.urlsplit(credentials.endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc or endpoint.path.strip("/"):
        raise errors.StoreConfigError(f"S3 endpoint {credentials.endpoint!r} is not http(s)://HOST[:PORT]")
    client = minio.Minio(
        endpoint.netloc,
        credentials=credentials.provider(),
        secure=endpoint.scheme == "https",
        region=credentials.region,
        http_client=connection.pool(credentials.ca_file, connect=10, read=120, retries=3),
    )
    return client, f"{endpoint.scheme}://{endpoint.netloc}"


def _redact(message: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "<redacted>")
    return message


def _failure(what: str, error: Exception, secrets: tuple[str, ...]) -> errors.StorageError:
    """The storage error for a failed S3 call, its message free of the credentials."""
    if isinstance(error, minio_errors.S3Error):
        detail = f"{error.code}: {error.message}"
        if error.code in _MISSING:
            return errors.EngineNotFoundError(_redact(f"{what}: {detail}", secrets))
        if error.code in _DENIED:
            return errors.StoreAccessError(_redact(f"{what}: {detail}", secrets))
        if error.code in ("SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"):
            return errors.StoreUnavailableError(_redact(f"{what}: {detail}", secrets))
        return errors.StorageError(_redact(f"{what}: {detail}", secrets))
    # Connection failures, 5xx without an S3 body, truncated responses: all worth a retry later.
    return errors.StoreUnavailableError(_redact(f"{what}: {type(error).__name__}: {error}", secrets))


class S3Store:
    """Engines under `s3://bucket/prefix`."""

    def __init__(
        self, location: layout.StoreLocation, credentials: Credentials | Ambient, *, part_size: int = PART_SIZE
    ) -> None:
        if location.scheme != "s3":
            raise errors.StoreConfigError(f"{location.uri} is not an s3:// store")
        self._location = location
        self._client, self._endpoint = _connect(credentials)
        self._credentials = credentials
        self._part_size = part_size
        self._bucket = location.container
        self._base = f"{location.prefix}/" if location.prefix else ""

    @property
    def location(self) -> layout.StoreLocation:
        return self._location

    def _key(self, ref: layout.EngineRef, relative: str = "") -> str:
        return f"{self._base}{ref.path}/{relative}"

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except (minio_errors.MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            self._raise(what, error)

    def _raise(self, what: str, error: Exception) -> NoReturn:
        # Read now, not at construction: ambient credentials are fetched at the first request and change.
        raise _failure(what, error, self._credentials.secrets()) from None

    def _redact(self, message: str) -> str:
        return _redact(message, self._credentials.secrets())

    def _objects(self, prefix: str) -> Iterator[minio.datatypes.Object]:
        return iter(self._call(f"List {self._describe(prefix)}", lambda: list(self._listing(prefix))))

    def _listing(self, prefix: str) -> Iterator[minio.datatypes.Object]:
        yield from self._client.list_objects(self._bucket, prefix=prefix, recursive=True)

    def _describe(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def upload(self, source: pathlib.Path, ref: layout.EngineRef) -> store.Transfer:
        files = store.artifact_files(source)
        prefix = self._key(ref)
        stale = {obj.object_name for obj in self._objects(prefix) if obj.object_name}
        manifest = self._key(ref, layout.MANIFEST_NAME)
        if manifest in stale:
            # Replacing an engine: it stops counting as present before any of its files changes.
            self._remove([manifest], ref)
        total = 0
        for relative, path, size in files:
            key = self._key(ref, relative)
            if relative == layout.MANIFEST_NAME:
                # Objects the new artifact does not have go before the manifest makes it present again.
                self._remove(
                    sorted(stale - {key for key, _, _ in ((self._key(ref, r), p, s) for r, p, s in files)}), ref
                )
            with path.open("rb") as reader:
                put = functools.partial(
                    self._client.put_object,
                    self._bucket,
                    key,
                    reader,
                    size,
                    part_size=self._part_size,
                    num_parallel_uploads=1,
                )
                self._call(f"Upload {self._describe(key)}", put)
            total += size
        return store.Transfer(len(files), total)

    def _remove(self, keys: list[str], ref: layout.EngineRef) -> None:
        if not keys:
            return

        def remove() -> list[str]:
            failed = self._client.remove_objects(self._bucket, (deleteobjects.DeleteObject(k) for k in keys))
            return [f"{failure.name}: {failure.code}" for failure in failed]

        problems = self._call(f"Delete objects of {self._location.engine_uri(ref)}", remove)
        if problems:
            raise errors.StorageError(self._redact(f"Could not delete {', '.join(problems)}"))

    def download(self, ref: layout.EngineRef, target: pathlib.Path) -> store.Transfer:
        prefix = self._key(ref)
        objects = {
            obj.object_name[len(prefix) :]: obj.object_name
            for obj in self._objects(prefix)
            if obj.object_name and not obj.is_dir
        }
        if layout.MANIFEST_NAME not in objects:
            raise errors.EngineNotFoundError(f"No engine at {self._location.engine_uri(ref)}")
        for relative in objects:
            layout.check_relative(relative)
        created = store.prepare_target(target)
        total = 0
        try:
            for relative, key in sorted(objects.items()):
                with store.open_new_file(target, relative) as writer:
                    total += self._call(f"Download {self._describe(key)}", functools.partial(self._fetch, key, writer))
        except BaseException:
            store.discard_target(target, created=created)
            raise
        return store.Transfer(len(objects), total)

    def _fetch(self, key: str, writer: BinaryIO) -> int:
        response = self._client.get_object(self._bucket, key)
        try:
            return store.save_blocks(response.stream(store.COPY_BLOCK), writer, self._describe(key))
        finally:
            response.close()
            response.release_conn()

    def exists(self, ref: layout.EngineRef) -> bool:
        key = self._key(ref, layout.MANIFEST_NAME)
        try:
            self._call(f"Look up {self._describe(key)}", lambda: self._client.stat_object(self._bucket, key))
        except errors.EngineNotFoundError:
            return False
        return True

    def list_engines(self, namespace: str, name: str) -> list[store.StoredEngine]:
        prefix = f"{self._base}{layout.owner_path(namespace, name)}/"
        complete: dict[str, bool] = {}
        modified: dict[str, datetime.datetime] = {}
        for obj in self._objects(prefix):
            key, _, rest = (obj.object_name or "")[len(prefix) :].partition("/")
            if not key or not rest:
                continue
            complete[key] = complete.get(key, False) or rest == layout.MANIFEST_NAME
            stamp = obj.last_modified or datetime.datetime.now(datetime.UTC)
            modified[key] = max(modified.get(key, stamp), stamp)
        return [store.StoredEngine(key, complete[key], modified[key]) for key in sorted(complete)]

    def delete_engine(self, ref: layout.EngineRef) -> None:
        self._remove([self._key(ref, layout.MANIFEST_NAME)], ref)
        rest = [obj.object_name for obj in self._objects(self._key(ref)) if obj.object_name]
        self._remove(rest, ref)

    def collect_garbage(self, namespace: str, name: str, keep: Set[str]) -> list[str]:
        removed = store.select_garbage(self.list_engines(namespace, name), keep)
        for key in removed:
            self.delete_engine(layout.EngineRef(namespace, name, key))
        return removed

    def read_manifest(self, ref: layout.EngineRef) -> bytes:
        key = self._key(ref, layout.MANIFEST_NAME)

        def read() -> bytes:
            response = self._client.get_object(self._bucket, key)
            try:
                document = response.read(store.MAX_MANIFEST_SIZE + 1)
            finally:
                response.close()
                response.release_conn()
            if len(document) > store.MAX_MANIFEST_SIZE:
                raise errors.StorageError(f"The manifest at {self._describe(key)} is too large")
            return bytes(document)

        return self._call(f"Read {self._describe(key)}", read)

    def read_file(self, ref: layout.EngineRef, relative: str, limit: int) -> bytes:
        layout.check_relative(relative)
        key = self._key(ref, relative)

        def read() -> bytes:
            response = self._client.get_object(self._bucket, key)
            try:
                content = response.read(limit + 1)
            finally:
                response.close()
                response.release_conn()
            if len(content) > limit:
                raise errors.StorageError(f"{self._describe(key)} is larger than {limit} bytes")
            return bytes(content)

        return self._call(f"Read {self._describe(key)}", read)

    def replace_manifest(self, ref: layout.EngineRef, document: bytes) -> None:
        if not self.exists(ref):
            raise errors.EngineNotFoundError(f"No engine at {self._location.engine_uri(ref)}")
        key = self._key(ref, layout.MANIFEST_NAME)
        # One PUT: S3 replaces an object atomically, so readers see the old manifest or the new one.
        self._call(
            f"Upload {self._describe(key)}",
            lambda: self._client.put_object(self._bucket, key, io.BytesIO(document), len(document)),
        )

    def _grant_expiry(self, lifetime: datetime.timedelta) -> datetime.datetime:
        """When a grant signed now stops working: after `lifetime`, or when the credentials that sign it expire.

        S3 refuses a request pre-signed with temporary credentials once their session has ended, whatever the
        signature says; the grant says so too, so that the loader's message and the operator's renewal are right.
        """
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        current = self._call("Get the store's credentials", self._credentials.provider().retrieve)
        ends = identity.expiry(current)
        if ends is None:
            return now + lifetime
        ends = ends.replace(microsecond=0)
        # Only the credentials' end is judged here: a caller may ask for a short grant on purpose.
        if ends - now < MIN_GRANT and ends < now + lifetime:
            raise errors.StoreUnavailableError(f"The store's credentials expire at {grants.stamp(ends)}: too soon")
        return min(now + lifetime, ends)

    def upload_grant(
        self,
        ref: layout.EngineRef,
        lifetime: datetime.timedelta,
        *,
        within: str = "",
        max_size: int = grants.MAX_OBJECT_SIZE,
    ) -> grants.UploadGrant:
        """A POST policy that admits objects below `ref`'s folder only (below its sub-folder `within`, where
        given: the samples of a served engine), each at most `max_size` bytes, for `lifetime` (or until the signing
        credentials expire, if sooner); signed here, no request."""
        expires = self._grant_expiry(lifetime)
        prefix = self._key(ref, f"{layout.check_relative(within)}/" if within else "")
        policy = datatypes.PostPolicy(self._bucket, expires)
        policy.add_starts_with_condition("key", prefix)
        policy.add_content_length_range_condition(0, max_size)
        fields = self._call(
            f"Sign an upload to {self._describe(prefix)}", lambda: self._client.presigned_post_policy(policy)
        )
        # Path-style: MinIO, GCS and AWS all take a POST to <endpoint>/<bucket>.
        return grants.UploadGrant(ref.path, f"{self._endpoint}/{self._bucket}", fields, prefix, expires, max_size)

    def list_files(self, ref: layout.EngineRef, folder: str) -> list[str]:
        """The names of the objects directly below `folder` of `ref`'s folder (e.g. its samples), sorted."""
        prefix = self._key(ref, f"{layout.check_relative(folder)}/")
        found = (obj.object_name[len(prefix) :] for obj in self._objects(prefix) if obj.object_name)
        return sorted(name for name in found if name and "/" not in name)

    def download_grant(
        self, ref: layout.EngineRef, lifetime: datetime.timedelta, objects: Iterable[str]
    ) -> grants.DownloadGrant:
        """Pre-signed GETs for `objects` (paths relative to the engine's folder: the manifest and the files it lists,
        which the caller read from the verified manifest), for `lifetime` or until the signing credentials expire;
        signed here, no request."""
        expires = self._grant_expiry(lifetime)
        urls = {}
        for relative in sorted(set(objects)):
            key = self._key(ref, layout.check_relative(relative))
            # Counted from the signature's own time (X-Amz-Date, whole seconds): it ends at `expires`.
            valid = expires - datetime.datetime.now(datetime.UTC).replace(microsecond=0)
            sign = functools.partial(self._client.presigned_get_object, self._bucket, key, expires=valid)
            urls[relative] = self._call(f"Sign a download of {self._describe(key)}", sign)
        return grants.DownloadGrant(ref.path, urls, expires)


def object_location(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`, the key unquoted: s3:// URIs are URLs, so a space in a key is %20."""
    parts = urllib.parse.urlsplit(uri)
    key = urllib.parse.unquote(parts.path.lstrip("/"))
    if parts.scheme != "s3" or not parts.netloc or not key or parts.query or parts.fragment:
        raise errors.StoreConfigError(f"{uri!r} is not s3://BUCKET/KEY")
    return parts.netloc, key


@contextlib.contextmanager
def open_object(uri: str, credentials: Credentials | Ambient) -> Iterator[tuple[BinaryIO, int | None]]:
    """`s3://bucket/key` as a stream and its length (None when the server gave none): one object outside the
    engine store, such as the checkpoint or dataset archive a build fetches. Failures are storage errors whose
    messages hold no key or token."""
    bucket, key = object_location(uri)
    client, _ = _connect(credentials)
    try:
        response = client.get_object(bucket, key)
    except ValueError as error:  # the SDK's checks of the bucket and key names
        raise errors.StoreConfigError(f"{uri!r}: {error}") from None
    except (minio_errors.MinioException, urllib3.exceptions.HTTPError, OSError) as error:
        raise _failure(f"Download s3://{bucket}/{key}", error, credentials.secrets()) from None
    try:
        length = response.headers.get("Content-Length")
        yield cast(BinaryIO, response), int(length) if length and length.isdigit() else None
    except (urllib3.exceptions.HTTPError, OSError) as error:  # the connection broke mid-stream
        raise _failure(f"Download s3://{bucket}/{key}", error, credentials.secrets()) from None
    finally:
        response.close()
        response.release_conn()


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def put_object(
    uri: str, reader: Readable, size: int, credentials: Credentials | Ambient, *, part_size: int = PART_SIZE
) -> None:
    """Upload `size` bytes of `reader`, read once and in order, to `s3://bucket/key`: one object outside the engine
    store, such as the checkpoint `kestrel upload` puts where spec.model.source will point."""
    bucket, key = object_location(uri)
    client, _ = _connect(credentials)
    try:
        # The SDK only calls read(), part by part: memory stays at one part, and each byte is read once.
        client.put_object(bucket, key, cast(BinaryIO, reader), size, part_size=part_size, num_parallel_uploads=1)
    except ValueError as error:  # the SDK's checks of the bucket and key names
        raise errors.StoreConfigError(f"{uri!r}: {error}") from None
    except (minio_errors.MinioException, urllib3.exceptions.HTTPError, OSError) as error:
        raise _failure(f"Upload s3://{bucket}/{key}", error, credentials.secrets()) from None
