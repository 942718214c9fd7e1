"""Relative paths inside an artifact: the one place that decides what a safe file name is.

A manifest is signed, but the signer is a build Job that processed an untrusted checkpoint, so unpacking still
treats every listed path as hostile: it must stay below the target directory on every platform.
"""

from __future__ import annotations

import os
import pathlib
import stat
from collections.abc import Iterator

from kestrel.security import errors

MAX_PATH_LENGTH = 1024


def check_relative(path: str) -> str:
    """Return `path` unchanged if it is a normalised relative POSIX path, else raise `UnsafePathError`."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise errors.UnsafePathError("a relative path must have 1 to 1024 characters")
    if "\\" in path or "\x00" in path or path.startswith("/"):
        raise errors.UnsafePathError(f"not a relative POSIX path: {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise errors.UnsafePathError(f"path has an empty, '.' or '..' component: {path!r}")
    return path


def resolve_below(root: pathlib.Path, path: str) -> pathlib.Path:
    """Join a checked relative path onto `root`."""
    return root.joinpath(*check_relative(path).split("/"))


def walk_files(root: pathlib.Path) -> Iterator[str]:
    """Yield the relative POSIX path of every regular file below `root`, sorted; refuse anything else.

    Symlinks are refused rather than followed: following one while packing would encrypt a file from outside the
    model repository, and while unpacking would let an artifact point Triton at arbitrary files.
    """
    if root.is_symlink() or not root.is_dir():
        raise errors.UnsafePathError(f"not a directory: {root}")
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = pathlib.Path(dirpath)
        for name in [*dirnames, *filenames]:
            mode = (base / name).lstat().st_mode
            relative = (base / name).relative_to(root).as_posix()
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise errors.UnsafePathError(f"not a regular file: {relative!r}")
            found.append(check_relative(relative))
    return iter(sorted(found))
