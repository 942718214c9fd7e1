"""The engine store's interface, and what its two implementations (`s3`, `pvc`) share.

Every method takes an `EngineRef` (or a namespace and name) and never a raw path, so no caller can write outside
`<prefix>/<namespace>/<name>/<key>/`. Transfers stream in bounded blocks: memory stays flat for multi-GB engines.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import shutil
import stat
from collections.abc import Iterable, Iterator, Set
from typing import BinaryIO, Protocol

from kestrel.storage import errors, layout

COPY_BLOCK = 1 << 20
MAX_MANIFEST_SIZE = 16 << 20
# An engine without its manifest is an upload in progress or an interrupted one; garbage collection leaves it alone
# this long so that it never pulls files from under a build Job that is still uploading.
INCOMPLETE_GRACE = datetime.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Transfer:
    """What an upload or download moved."""

    files: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class StoredEngine:
    """One engine folder as listed: complete when its manifest is there; `modified` is its newest object's time."""

    key: str
    complete: bool
    modified: datetime.datetime


class Store(Protocol):
    """The operator-wide engine store."""

    @property
    def location(self) -> layout.StoreLocation: ...

    def upload(self, source: pathlib.Path, ref: layout.EngineRef) -> Transfer:
        """Put the artifact folder `source` at `ref`, manifest last, replacing whatever was there."""

    def download(self, ref: layout.EngineRef, target: pathlib.Path) -> Transfer:
        """Fetch the complete engine at `ref` into `target` (absent or empty); `EngineNotFoundError` if absent."""

    def exists(self, ref: layout.EngineRef) -> bool:
        """The cache lookup: True when the engine's manifest is stored (so the upload completed)."""

    def list_engines(self, namespace: str, name: str) -> list[StoredEngine]:
        """Every engine folder of one ModelDeployment, complete or not, sorted by key."""

    def delete_engine(self, ref: layout.EngineRef) -> None:
        """Remove an engine, manifest first, so it stops counting as present before its files go."""

    def read_manifest(self, ref: layout.EngineRef) -> bytes:
        """The stored `manifest.json` (as is, unverified); `EngineNotFoundError` if absent."""

    def read_file(self, ref: layout.EngineRef, relative: str, limit: int) -> bytes:
        """One stored file of the engine (`files/<path>`, as is), at most `limit` bytes: the operator's read of a
        small file (the build's probes) without the multi-GB download of the rest; StorageError if larger."""

    def list_files(self, ref: layout.EngineRef, folder: str) -> list[str]:
        """The file names directly below `folder` of the engine's folder (its samples), sorted."""

    def replace_manifest(self, ref: layout.EngineRef, document: bytes) -> None:
        """Overwrite the manifest of a complete engine in one atomic write (key rotation)."""

    def collect_garbage(self, namespace: str, name: str, keep: Set[str]) -> list[str]:
        """Delete the engines of one ModelDeployment that `select_garbage` picks; return their keys."""


def select_garbage(
    engines: Iterable[StoredEngine],
    keep: Set[str],
    *,
    now: datetime.datetime | None = None,
    incomplete_grace: datetime.timedelta = INCOMPLETE_GRACE,
) -> list[str]:
    """The keys garbage collection deletes: every engine not in `keep`, except recent incomplete ones.

    The operator passes `{revision.current, revision.previous}` as `keep`. An engine without its manifest that
    changed within `incomplete_grace` is an upload in progress, and is left alone.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    return sorted(
        engine.key
        for engine in engines
        if engine.key not in keep and (engine.complete or now - engine.modified >= incomplete_grace)
    )


def artifact_files(source: pathlib.Path) -> list[tuple[str, pathlib.Path, int]]:
    """(relative path, path, size) of every file of an artifact folder, manifest last; refuse anything odd.

    Symlinks are refused, not followed: an upload must send exactly the artifact, never a file from elsewhere.
    """
    if source.is_symlink() or not source.is_dir():
        raise errors.StoreConfigError(f"{source} is not a directory")
    found: list[tuple[str, pathlib.Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        base = pathlib.Path(dirpath)
        for entry in [*dirnames, *filenames]:
            path = base / entry
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                continue
            relative = path.relative_to(source).as_posix()
            if not stat.S_ISREG(info.st_mode):
                raise errors.StoreConfigError(f"{relative!r} in {source} is not a regular file")
            found.append((layout.check_relative(relative), path, info.st_size))
    found.sort(key=lambda item: (item[0] == layout.MANIFEST_NAME, item[0]))
    if not found or found[-1][0] != layout.MANIFEST_NAME:
        raise errors.StoreConfigError(f"{source} holds no {layout.MANIFEST_NAME}: not an engine artifact")
    return found


def prepare_target(target: pathlib.Path) -> bool:
    """Create `target` if absent; refuse one that holds anything. Return whether it was created."""
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise errors.StoreConfigError(f"download target {target} exists and is not an empty directory")
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    return created


def discard_target(target: pathlib.Path, *, created: bool) -> None:
    """Undo a failed download: no half-fetched engine is left behind for someone to mistake for a whole one."""
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def open_new_file(target: pathlib.Path, relative: str) -> BinaryIO:
    """Open `target/relative` for writing; it must not exist, and no link on the way is followed."""
    path = target.joinpath(*layout.check_relative(relative).split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def save_blocks(blocks: Iterable[bytes], writer: BinaryIO, what: str) -> int:
    """Write what a store sends; a failed write (a full or read-only target) is a StorageError naming `what`, the
    target's to fix, never a store error worth a retry."""
    total = 0
    for block in blocks:
        try:
            writer.write(block)
        except OSError as error:
            raise errors.StorageError(f"Writing {what} failed: {error.strerror}") from None
        total += len(block)
    return total


def copy_blocks(blocks: Iterable[bytes], writer: BinaryIO) -> int:
    total = 0
    for block in blocks:
        writer.write(block)
        total += len(block)
    return total


def read_blocks(reader: BinaryIO) -> Iterator[bytes]:
    while block := reader.read(COPY_BLOCK):
        yield block
