"""Datasets on s3:// and https://: a .tar, .tar.gz or .tgz archive with its data.yaml at the root, fetched once per
digest per build, verified against the spec's datasetSha256 while it streams, and unpacked without trusting it.

The same archive named by several fields (validation and calibration, say) is fetched once: the cache is keyed
by the digest, and a folder is used only once it was unpacked completely. Unpacking refuses anything but regular
files and folders below the target (no absolute names, no `..`, no links, devices or FIFOs) and stops past a
member count and a size: an archive is the user's input, and the build pod is not its place to escape from.
Python's own extraction filters are not used: Debian's Python 3.11.2, which the images run, predates them.
"""

from __future__ import annotations

import shutil
import tarfile
import urllib.parse
from pathlib import Path, PurePosixPath

from kestrel.api import errors as api_errors
from kestrel.engine import errors, fetch

MAX_MEMBERS = 500_000
MAX_BYTES = 64 << 30  # unpacked; a validation or calibration set is far smaller
CHUNK = 1 << 20
DATA_YAML = "data.yaml"


def data_yaml(uri: str, sha256: str | None, options: fetch.FetchOptions, field: str, cache: Path) -> Path:
    """The local data.yaml of the dataset field `field`: in place for file:// and pvc://, else fetched and unpacked."""
    scheme = urllib.parse.urlsplit(uri).scheme
    try:
        if scheme in ("file", "pvc"):
            return fetch.local_path(uri, options)
        if sha256 is None:  # refused by the API already; this narrows the type
            raise api_errors.SpecError(f"{field}Sha256", "required for an s3:// or https:// dataset")
        return _fetched(uri, sha256.lower(), options, cache)
    except errors.ChecksumMismatchError as error:
        raise errors.ChecksumMismatchError(f"{field}Sha256", uri, error.expected, error.actual) from error
    except errors.FetchError as error:  # its message names the source's field, not the dataset's
        raise api_errors.SpecError(field, str(error).removeprefix(f"{fetch.URI_FIELD}: ")) from error


def _fetched(uri: str, sha256: str, options: fetch.FetchOptions, cache: Path) -> Path:
    folder = cache / sha256
    if (folder / ".complete").exists():
        return _inside(folder, uri)
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"{sha256}.archive"
    fetch.fetch(uri, archive, sha256, options)
    partial = cache / f"{sha256}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        unpack(archive, partial, uri)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise errors.FetchError(f"{fetch.URI_FIELD}: {uri} is not a readable tar archive: {error}") from error
    finally:
        archive.unlink(missing_ok=True)
    partial.rename(folder)
    (folder / ".complete").touch()
    return _inside(folder, uri)


def _inside(folder: Path, uri: str) -> Path:
    found = folder / DATA_YAML
    if not found.is_file():
        raise errors.FetchError(f"{fetch.URI_FIELD}: {uri} holds no {DATA_YAML} at its root")
    return found


def unpack(archive: Path, target: Path, uri: str) -> None:
    """Regular files and folders only, every one below `target`; anything else stops the build, naming it."""
    target.mkdir(parents=True)
    total = 0
    with tarfile.open(archive, "r:*") as tar:
        for count, member in enumerate(tar, start=1):
            if count > MAX_MEMBERS:
                raise errors.FetchError(f"{fetch.URI_FIELD}: {uri} holds more than {MAX_MEMBERS} entries")
            relative = _safe_name(member.name, uri)
            if relative is None:
                continue  # the archive's root itself ("." or "./")
            destination = target.joinpath(*relative.parts)
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                kind = "link" if member.issym() or member.islnk() else "special file"
                raise errors.FetchError(f"{fetch.URI_FIELD}: {uri}: {member.name!r} is a {kind}; only files are read")
            total += member.size
            if total > MAX_BYTES:
                raise errors.FetchError(f"{fetch.URI_FIELD}: {uri} unpacks to more than {MAX_BYTES >> 30} GiB")
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                raise errors.FetchError(f"{fetch.URI_FIELD}: {uri}: {member.name!r} cannot be read")
            with source, destination.open("wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK)


def _safe_name(name: str, uri: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    parts = [part for part in path.parts if part not in ("", ".")]
    if path.is_absolute() or ".." in parts or "\\" in name:
        raise errors.FetchError(f"{fetch.URI_FIELD}: {uri}: {name!r} would unpack outside the dataset's folder")
    return PurePosixPath(*parts) if parts else None
