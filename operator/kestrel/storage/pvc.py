"""The engine store on a mounted volume: `pvc://claim/prefix` is `<mount root>/<claim>/<prefix>`.

Uploads go to a hidden staging folder beside the engine's and are renamed into place, so an engine folder is
always whole; the manifest is still written last within it, so `exists` needs nothing but the manifest.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import secrets
import shutil
from collections.abc import Set

from kestrel.storage import errors, layout, store

DEFAULT_MOUNT_ROOT = pathlib.Path("/mnt/pvc")
_HIDDEN = "."


class PvcStore:
    """Engines under a mounted folder; `root` is where the claim's prefix is mounted."""

    def __init__(self, location: layout.StoreLocation, mount_root: pathlib.Path = DEFAULT_MOUNT_ROOT) -> None:
        if location.scheme != "pvc":
            raise errors.StoreConfigError(f"{location.uri} is not a pvc:// store")
        self._location = location
        self.mount = mount_root / location.container
        self.root = self.mount.joinpath(*location.prefix.split("/")) if location.prefix else self.mount

    @property
    def location(self) -> layout.StoreLocation:
        return self._location

    def _folder(self, namespace: str, name: str) -> pathlib.Path:
        # Without the volume, writes would land in the container's own filesystem and vanish with it.
        if not self.mount.is_dir():
            raise errors.StoreConfigError(f"{self._location.uri}: the claim is not mounted at {self.mount}")
        return self.root.joinpath(*layout.owner_path(namespace, name).split("/"))

    def _engine(self, ref: layout.EngineRef) -> pathlib.Path:
        return self._folder(ref.namespace, ref.name) / ref.key

    def upload(self, source: pathlib.Path, ref: layout.EngineRef) -> store.Transfer:
        files = store.artifact_files(source)
        folder = self._folder(ref.namespace, ref.name)
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f"{_HIDDEN}upload-{ref.key}-{secrets.token_hex(4)}"
        total = 0
        try:
            staging.mkdir()
            for relative, path, _ in files:
                with path.open("rb") as reader, store.open_new_file(staging, relative) as writer:
                    total += store.copy_blocks(store.read_blocks(reader), writer)
                    writer.flush()
                    os.fsync(writer.fileno())
            self._replace(staging, self._engine(ref))
        except OSError as error:
            raise errors.StorageError(f"Upload to {self._location.engine_uri(ref)} failed: {error.strerror}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return store.Transfer(len(files), total)

    def _replace(self, staging: pathlib.Path, engine: pathlib.Path) -> None:
        if engine.exists():
            # Move the old engine aside (manifest gone first, as every deletion does), then rename the new one in.
            trash = engine.with_name(f"{_HIDDEN}trash-{engine.name}-{secrets.token_hex(4)}")
            (engine / layout.MANIFEST_NAME).unlink(missing_ok=True)
            engine.rename(trash)
            staging.rename(engine)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.rename(engine)

    def download(self, ref: layout.EngineRef, target: pathlib.Path) -> store.Transfer:
        engine = self._engine(ref)
        if not self.exists(ref):
            raise errors.EngineNotFoundError(f"No engine at {self._location.engine_uri(ref)}")
        created = store.prepare_target(target)
        try:
            files = store.artifact_files(engine)
            total = 0
            for relative, path, _ in files:
                with path.open("rb") as reader, store.open_new_file(target, relative) as writer:
                    total += store.copy_blocks(store.read_blocks(reader), writer)
        except BaseException as error:
            store.discard_target(target, created=created)
            if isinstance(error, OSError):
                raise errors.StorageError(
                    f"Download of {self._location.engine_uri(ref)} failed: {error.strerror}"
                ) from None
            raise
        return store.Transfer(len(files), total)

    def exists(self, ref: layout.EngineRef) -> bool:
        manifest = self._engine(ref) / layout.MANIFEST_NAME
        return manifest.is_file() and not manifest.is_symlink()

    def list_engines(self, namespace: str, name: str) -> list[store.StoredEngine]:
        folder = self._folder(namespace, name)
        if not folder.is_dir():
            return []
        found = []
        for child in sorted(folder.iterdir()):
            if child.is_symlink() or not child.is_dir():
                continue
            # Staging and trash folders are listed under their own names so that GC can clear abandoned ones.
            complete = not child.name.startswith(_HIDDEN) and (child / layout.MANIFEST_NAME).is_file()
            found.append(store.StoredEngine(child.name, complete, _newest(child)))
        return found

    def delete_engine(self, ref: layout.EngineRef) -> None:
        self._delete(self._engine(ref))

    def _delete(self, engine: pathlib.Path) -> None:
        (engine / layout.MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(engine, ignore_errors=True)

    def collect_garbage(self, namespace: str, name: str, keep: Set[str]) -> list[str]:
        removed = store.select_garbage(self.list_engines(namespace, name), keep)
        for key in removed:
            # Not through EngineRef: staging folders' names start with a dot, which no engine key may.
            self._delete(self._folder(namespace, name) / key)
        return removed

    def read_manifest(self, ref: layout.EngineRef) -> bytes:
        manifest = self._engine(ref) / layout.MANIFEST_NAME
        if not self.exists(ref):
            raise errors.EngineNotFoundError(f"No engine at {self._location.engine_uri(ref)}")
        if manifest.stat().st_size > store.MAX_MANIFEST_SIZE:
            raise errors.StorageError(f"The manifest at {self._location.engine_uri(ref)} is too large")
        return manifest.read_bytes()

    def read_file(self, ref: layout.EngineRef, relative: str, limit: int) -> bytes:
        layout.check_relative(relative)
        path = self._engine(ref).joinpath(*relative.split("/"))
        where = f"{self._location.engine_uri(ref)}/{relative}"
        try:
            # O_NOFOLLOW: a link planted in the claim is not followed out of it.
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as reader:
                content = reader.read(limit + 1)
        except FileNotFoundError:
            raise errors.EngineNotFoundError(f"No file {where}") from None
        except OSError as error:
            raise errors.StorageError(f"Reading {where} failed: {error.strerror}") from None
        if len(content) > limit:
            raise errors.StorageError(f"{where} is larger than {limit} bytes")
        return content

    def list_files(self, ref: layout.EngineRef, folder: str) -> list[str]:
        """The names of the plain files directly below `folder` of `ref`'s folder (e.g. its samples), sorted;
        hidden ones (a sample being written) left out."""
        path = self._engine(ref).joinpath(*layout.check_relative(folder).split("/"))
        if not path.is_dir() or path.is_symlink():
            return []
        return sorted(
            child.name
            for child in path.iterdir()
            if not child.name.startswith(".") and child.is_file() and not child.is_symlink()
        )

    def replace_manifest(self, ref: layout.EngineRef, document: bytes) -> None:
        if not self.exists(ref):
            raise errors.EngineNotFoundError(f"No engine at {self._location.engine_uri(ref)}")
        manifest = self._engine(ref) / layout.MANIFEST_NAME
        part = manifest.with_name(f"{_HIDDEN}{layout.MANIFEST_NAME}-{secrets.token_hex(4)}")
        try:
            with part.open("xb") as writer:
                writer.write(document)
                writer.flush()
                os.fsync(writer.fileno())
            part.replace(manifest)
        finally:
            part.unlink(missing_ok=True)


def _newest(folder: pathlib.Path) -> datetime.datetime:
    newest = folder.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for entry in [*dirnames, *filenames]:
            newest = max(newest, (pathlib.Path(dirpath) / entry).lstat().st_mtime)
    return datetime.datetime.fromtimestamp(newest, datetime.UTC)
