"""Store grants: what a pod holds instead of the store's credentials, scoped to one engine and for a limited time.

The operator alone holds the store's credentials. For each build it issues an `UploadGrant`, an S3 POST policy
signed with its credentials that admits objects only below that engine's folder (`<prefix>/<namespace>/<name>/
<key>/`), each at most `MAX_OBJECT_SIZE`, until the build's deadline; the build can neither list, read, overwrite
outside that folder, nor delete. For each engine it serves it issues a `DownloadGrant`: one pre-signed GET per object
of that engine, valid `DOWNLOAD_LIFETIME` (SigV4's limit is 7 days) and re-issued well before it expires, so that a
pod restarted days later still loads. A grant is a bearer capability, kept in a Secret of the model's namespace
that only this model's pods mount; leaking one gives what it names and nothing more.

This module is both sides: the JSON documents (`to_json`/`parse`) and what a pod does with them (`upload`,
`download`). The operator's side that signs them lives with its client, in `storage.s3.S3Store`. Transfers stream in
`store.COPY_BLOCK` blocks (a POST body is sent from the file as it is read, never assembled in memory). No message
this module raises contains a URL, a form field or a response body: they would carry signatures.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import json
import os
import pathlib
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, TypeVar

import certifi
import urllib3

from kestrel.storage import errors, layout, store

VERSION = 1
# S3 refuses a POST upload above 5 GiB; one engine file (a TensorRT plan, an ONNX graph) stays far below.
MAX_OBJECT_SIZE = 5 << 30
DOWNLOAD_LIFETIME = datetime.timedelta(days=7)
# A download grant is re-issued once it is this old: a pod that starts up to six days after the last pass loads.
DOWNLOAD_REFRESH_AFTER = datetime.timedelta(days=1)
UPLOAD_MARGIN = datetime.timedelta(minutes=15)
ATTEMPTS = 3
_ERROR_BODY_LIMIT = 4096
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class UploadGrant:
    """A POST policy for the objects of one engine: `url` takes multipart forms of `fields` + key + file."""

    engine: str  # `EngineRef.path`: what the grant is for, checked against what the build publishes
    url: str = dataclasses.field(repr=False)
    fields: Mapping[str, str] = dataclasses.field(repr=False)
    key_prefix: str
    expires: datetime.datetime
    max_size: int = MAX_OBJECT_SIZE

    def to_json(self) -> str:
        return _dump(
            {
                "kind": "upload",
                "engine": self.engine,
                "url": self.url,
                "fields": dict(self.fields),
                "keyPrefix": self.key_prefix,
                "expires": stamp(self.expires),
                "maxSize": self.max_size,
            }
        )


@dataclasses.dataclass(frozen=True)
class DownloadGrant:
    """Pre-signed GETs for every object of one complete engine, by path relative to the engine's folder."""

    engine: str
    objects: Mapping[str, str] = dataclasses.field(repr=False)
    expires: datetime.datetime

    def to_json(self) -> str:
        return _dump(
            {
                "kind": "download",
                "engine": self.engine,
                "objects": dict(sorted(self.objects.items())),
                "expires": stamp(self.expires),
            }
        )


Grant = UploadGrant | DownloadGrant
_G = TypeVar("_G", UploadGrant, DownloadGrant)


def _dump(document: dict[str, Any]) -> str:
    return json.dumps({"version": VERSION, **document}, sort_keys=True, separators=(",", ":"))


def stamp(moment: datetime.datetime) -> str:
    """A grant's expiry as written in its document (and in its Secret's annotation): RFC 3339, UTC, seconds."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def parse(text: str | bytes, where: str) -> Grant:
    """A grant document; StoreConfigError naming `where` (never quoting it: it holds signatures) otherwise."""
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != VERSION:
            raise ValueError("version")
        expires = parse_time(str(document["expires"]))
        engine = str(document["engine"])
        layout.parse_engine_uri(f"s3://engines/{engine}")  # three checked names, or StoreConfigError
        if document["kind"] == "upload":
            fields = document["fields"]
            if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
                raise ValueError("fields")
            return UploadGrant(
                engine, str(document["url"]), fields, str(document["keyPrefix"]), expires, int(document["maxSize"])
            )
        if document["kind"] == "download":
            objects = document["objects"]
            if not isinstance(objects, dict) or not all(isinstance(v, str) for v in objects.values()):
                raise ValueError("objects")
            for relative in objects:
                layout.check_relative(relative)
            return DownloadGrant(engine, objects, expires)
        raise ValueError("kind")
    except (ValueError, KeyError, TypeError) as error:
        raise errors.StoreConfigError(f"{where} is not a store grant of version {VERSION} ({error})") from None


def read(path: pathlib.Path, kind: type[_G]) -> _G:
    """The grant of `kind` in the file `path` (what a pod mounts); StoreConfigError for anything else."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise errors.StoreConfigError(f"cannot read the store grant {path}: {error.strerror}") from None
    grant = parse(text, str(path))
    if not isinstance(grant, kind):
        wanted = "an upload" if kind is UploadGrant else "a download"
        raise errors.StoreConfigError(f"{path} is not {wanted} grant")
    return grant


def _checked(grant: Grant, ref: layout.EngineRef, now: datetime.datetime | None) -> None:
    if grant.engine != ref.path:
        raise errors.StoreAccessError(f"the store grant is for engine {grant.engine}, not {ref.path}")
    moment = now or datetime.datetime.now(datetime.UTC)
    if grant.expires <= moment:
        raise errors.StoreAccessError(
            f"the store grant for {ref.path} expired at {stamp(grant.expires)}: the operator issues a new one at its "
            "next pass; restart the pod after that"
        )


def _pool() -> urllib3.PoolManager:
    # The same bounds and trust as `s3.S3Store`: a stuck store fails a request instead of hanging a pod.
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=120),
        retries=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("AWS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def _s3_code(body: bytes) -> str:
    """The `<Code>` of an S3 error document (a word, no signature), or ''."""
    start, end = body.find(b"<Code>"), body.find(b"</Code>")
    if start < 0 or end <= start:
        return ""
    code = body[start + 6 : end].decode(errors="replace")
    return code if code.isalnum() and len(code) < 64 else ""


def _failure(what: str, status: int, body: bytes) -> errors.StorageError:
    code = _s3_code(body)
    detail = f"{what}: HTTP {status}" + (f" {code}" if code else "")
    if status in (403, 400, 404) and code in ("AccessDenied", "ExpiredToken", "SignatureDoesNotMatch"):
        return errors.StoreAccessError(f"{detail} (the grant was refused: expired or not for this object)")
    if status == 404:
        return errors.EngineNotFoundError(detail)
    if status >= 500 or status == 429 or code in ("SlowDown", "RequestTimeout"):
        return errors.StoreUnavailableError(detail)
    return errors.StoreAccessError(detail)


def _attempts(what: str, call: Callable[[], _T]) -> _T:
    """`call` up to `ATTEMPTS` times while the store is unavailable; other failures at once."""
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except errors.StoreUnavailableError:
            if attempt + 1 == ATTEMPTS:
                raise
        except (urllib3.exceptions.HTTPError, OSError) as error:
            if attempt + 1 == ATTEMPTS:
                raise errors.StoreUnavailableError(f"{what}: {type(error).__name__}") from None
        time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


class _FormBody(io.RawIOBase):
    """A multipart/form-data body read from its parts in turn: the file is streamed, not loaded."""

    def __init__(self, head: bytes, source: BinaryIO, tail: bytes) -> None:
        self._parts: list[BinaryIO] = [io.BytesIO(head), source, io.BytesIO(tail)]

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._parts:
            block = self._parts[0].read(store.COPY_BLOCK if size is None or size < 0 else size)
            if block:
                return bytes(block)
            self._parts.pop(0)
        return b""


def _form(fields: Mapping[str, str], boundary: str) -> tuple[bytes, bytes]:
    lines = []
    for name, value in fields.items():
        lines.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n')
    lines.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="object"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return "".join(lines).encode(), f"\r\n--{boundary}--\r\n".encode()


def upload(
    grant: UploadGrant, source: pathlib.Path, ref: layout.EngineRef, *, now: datetime.datetime | None = None
) -> store.Transfer:
    """POST every file of the artifact folder `source` under `ref`, manifest last (what makes the engine present)."""
    _checked(grant, ref, now)
    files = store.artifact_files(source)
    for relative, _, size in files:
        if size > grant.max_size:
            raise errors.StoreConfigError(
                f"{relative} is {size} bytes; a store grant uploads objects of at most {grant.max_size} bytes"
            )
    http = _pool()
    total = 0
    for relative, path, size in files:
        what = f"Upload {ref.path}/{relative}"
        post = functools.partial(_post, http, grant, grant.key_prefix + relative, path, size=size, what=what)
        _attempts(what, post)
        total += size
    return store.Transfer(len(files), total)


def _post(http: urllib3.PoolManager, grant: UploadGrant, key: str, path: pathlib.Path, *, size: int, what: str) -> None:
    boundary = "kestrel-" + secrets.token_hex(16)
    head, tail = _form({**grant.fields, "key": key}, boundary)
    with path.open("rb") as reader:
        response = http.request(
            "POST",
            grant.url,
            body=_FormBody(head, reader, tail),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
            preload_content=False,
            redirect=False,
        )
    try:
        if response.status not in (200, 201, 204):
            raise _failure(what, response.status, response.read(_ERROR_BODY_LIMIT))
    finally:
        response.release_conn()


def download(
    grant: DownloadGrant, ref: layout.EngineRef, target: pathlib.Path, *, now: datetime.datetime | None = None
) -> store.Transfer:
    """Fetch every object the grant names into `target` (absent or empty); nothing is left behind on failure."""
    _checked(grant, ref, now)
    if layout.MANIFEST_NAME not in grant.objects:
        raise errors.EngineNotFoundError(f"the store grant for {ref.path} names no {layout.MANIFEST_NAME}")
    http = _pool()
    created = store.prepare_target(target)
    total = 0
    try:
        for relative, url in sorted(grant.objects.items()):
            what = f"Download {ref.path}/{relative}"
            total += _attempts(what, functools.partial(_get, http, url, target, relative, what))
    except BaseException:
        store.discard_target(target, created=created)
        raise
    return store.Transfer(len(grant.objects), total)


def _get(http: urllib3.PoolManager, url: str, target: pathlib.Path, relative: str, what: str) -> int:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise errors.StoreConfigError(f"{what}: the grant's address is not http(s)")
    response = http.request("GET", url, preload_content=False, redirect=False)
    try:
        if response.status != 200:
            raise _failure(what, response.status, response.read(_ERROR_BODY_LIMIT))
        path = target.joinpath(*relative.split("/"))
        path.unlink(missing_ok=True)  # a retried download starts the file again
        with store.open_new_file(target, relative) as writer:
            return store.save_blocks(response.stream(store.COPY_BLOCK), writer, relative)
    finally:
        response.release_conn()
