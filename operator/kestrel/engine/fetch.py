"""Fetch the source checkpoint (or a dataset file) to local disk and verify its SHA-256 while it streams.

The hash is computed on the bytes as they are written, in fixed-size chunks, so a multi-GB checkpoint never sits in
memory and a file is never read twice. A mismatch deletes the partial file and raises before anything else runs:
nothing downstream (unpickling the checkpoint included) ever sees unverified bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from kestrel.engine import errors, progress
from kestrel.storage import connection, s3
from kestrel.storage import errors as storage_errors

CHUNK_SIZE = 1 << 20
SHA256_FIELD = "spec.model.source.sha256"
URI_FIELD = "spec.model.source.uri"


@dataclasses.dataclass(frozen=True)
class FetchOptions:
    """Where the build Job finds things; defaults fit the Job's pod, tests override them."""

    # pvc://claim/path is read from <pvc_root>/<claim>/<path>: the Job mounts each claim it needs there.
    pvc_root: Path = Path(os.environ.get("KESTREL_PVC_ROOT", "/mnt/pvc"))
    # The credentialsSecret, mounted as files (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
    credentials_dir: Path | None = None
    # Extra CA bundle for https:// and S3 endpoints with a private CA; the system store otherwise.
    ca_file: Path | None = None
    timeout_s: float = 60.0


@dataclasses.dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    size: int
    uri: str


def fetch(uri: str, destination: Path, expected_sha256: str | None, options: FetchOptions | None = None) -> Fetched:
    """Copy `uri` to `destination`, hashing as it goes; raise `ChecksumMismatchError` on a wrong hash."""
    options = options or FetchOptions()
    scheme = urllib.parse.urlsplit(uri).scheme
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    try:
        with partial.open("wb") as sink:
            if scheme in ("file", "pvc"):
                path = local_path(uri, options)
                with path.open("rb") as source:
                    digest, size = _copy(source, sink, path.stat().st_size)
            elif scheme == "s3":
                digest, size = _download_s3(uri, sink, options)
            elif scheme == "https":
                digest, size = _download(urllib.request.Request(uri, method="GET"), sink, options, uri)  # noqa: S310
            else:
                raise errors.FetchError(f"{URI_FIELD}: unsupported scheme {scheme!r} in {uri!r}")
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise errors.ChecksumMismatchError(SHA256_FIELD, uri, expected_sha256.lower(), digest)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
    return Fetched(destination, digest, size, uri)


def local_path(uri: str, options: FetchOptions) -> Path:
    """The file a `file://` or `pvc://` URI names; a pvc path may not leave its claim's mount."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "file":
        path = Path(urllib.parse.unquote(parts.netloc + parts.path))
    elif parts.scheme == "pvc":
        claim_root = (options.pvc_root / parts.netloc).resolve()
        path = (claim_root / urllib.parse.unquote(parts.path).lstrip("/")).resolve()
        if not parts.netloc or not path.is_relative_to(claim_root):
            raise errors.FetchError(f"{URI_FIELD}: {uri!r} is not pvc://claim/path inside the claim")
    else:
        raise errors.FetchError(f"{URI_FIELD}: {uri!r} is not a local (file:// or pvc://) URI")
    if not path.is_file():
        raise errors.FetchError(f"{URI_FIELD}: {uri!r} does not exist (looked at {path})")
    return path


def s3_credentials(options: FetchOptions) -> s3.Credentials | s3.Ambient:
    """The keys of the mounted credentialsSecret (both required: a Secret without them is an error, not a fallback);
    without a Secret, the environment's keys or the pod's own identity. `options.ca_file` trusts the endpoint."""
    found: s3.Credentials | s3.Ambient
    if options.credentials_dir is not None:
        try:
            found = connection.Credentials.load(options.credentials_dir, os.environ)
        except storage_errors.StoreConfigError as error:
            raise errors.FetchError(f"spec.model.source.credentialsSecret: {error}") from None
    else:
        found = connection.load(None, os.environ)
    return dataclasses.replace(found, ca_file=str(options.ca_file)) if options.ca_file else found


def _download_s3(uri: str, sink: BinaryIO, options: FetchOptions) -> tuple[str, int]:
    """GetObject through the MinIO SDK, the engine store's own S3 client (one way to sign, one CA setting)."""
    try:
        with s3.open_object(uri, s3_credentials(options)) as (stream, length):
            return _copy(stream, sink, length)
    except storage_errors.StorageError as error:
        raise errors.FetchError(f"{URI_FIELD}: {error}") from None


def _download(request: urllib.request.Request, sink: BinaryIO, options: FetchOptions, uri: str) -> tuple[str, int]:
    context = ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)
    # No proxies: the build Job talks to the store directly, and a proxy env var must not silently reroute weights.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=options.timeout_s) as response:
            length = response.headers.get("Content-Length")
            return _copy(response, sink, int(length) if length and length.isdigit() else None)
    except urllib.error.HTTPError as error:
        body = error.read(512).decode(errors="replace")
        raise errors.FetchError(f"{URI_FIELD}: GET {uri} answered {error.code} {error.reason}: {body}") from error
    except (urllib.error.URLError, OSError) as error:
        raise errors.FetchError(f"{URI_FIELD}: GET {uri} failed: {error}") from error


def _copy(source: BinaryIO, sink: BinaryIO, total: int | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    progress.report("fetch", 0, total)
    while chunk := source.read(CHUNK_SIZE):
        digest.update(chunk)
        sink.write(chunk)
        size += len(chunk)
        progress.report("fetch", size, max(total, size) if total is not None else None)
    progress.report("fetch", size, size)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
