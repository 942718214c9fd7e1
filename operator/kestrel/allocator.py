"""glibc's malloc arenas for the operator process: a few shared ones instead of one per thread.

glibc gives each thread that allocates under contention an arena of its own, up to eight per core, and memory freed
in one arena is not reused by another. The operator's pass threads (`KESTREL_WORKERS`, 16 by default) each build,
serialise and parse many small objects, so their arenas grow and fragment apart. `bench/scale.py` measured two
arenas against glibc's default: a lower peak RSS in the same time to all Ready, and the difference grows with the
number of models (docs/benchmarks.md, "Scale", has the figures of its last run). The chart's operator container is
limited to 256 MiB.

Set at the start of `kestrel run`, before any thread exists, so it holds whichever way the process was launched (the
image, plain manifests, the test bed, a developer's shell). A `MALLOC_ARENA_MAX` in the environment wins: glibc has
already read it, and someone chose it.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
ARENAS = 2


def limit_arenas(count: int = ARENAS) -> str:
    """Limit glibc to `count` arenas; returns what was done, for the operator's start-up log line."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return f"Kept MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']} from the environment"
    if not _is_glibc():
        return "Kept the C library's default malloc arenas: not glibc"
    mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter itself runs on
    if mallopt(M_ARENA_MAX, count) != 1:  # mallopt returns 1 on success
        raise OSError(f"mallopt(M_ARENA_MAX, {count}) failed")
    return f"Limited glibc's malloc arenas to {count}"


def _is_glibc() -> bool:
    # musl also has a `mallopt`, which accepts and ignores every parameter: claiming a limit there would be false.
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False
