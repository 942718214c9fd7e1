"""allocator.limit_arenas: threads started afterwards share two malloc arenas instead of one each."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kestrel import allocator

pytestmark = pytest.mark.skipif(not allocator._is_glibc(), reason="malloc arenas are glibc's; this C library is not")

# Six threads hold malloc'd (not pymalloc'd: > 512 bytes) buffers at once; glibc's malloc_stats() then prints one
# "Arena N:" block per arena to stderr.
PROGRAM = textwrap.dedent(
    """
    import ctypes, sys, threading
    from kestrel import allocator
    if sys.argv[1] == "limit":
        print(allocator.limit_arenas())
    barrier = threading.Barrier(6)
    def work():
        held = [bytearray(4096) for _ in range(64)]
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ctypes.CDLL(None).malloc_stats()
    """
)


def arenas(mode: str, **env: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True, env=environ, timeout=60
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena ")), done.stdout.strip()


def test_threads_share_two_arenas_once_limited() -> None:
    default, _ = arenas("default")
    limited, said = arenas("limit")
    assert default > 2, "without the limit each thread gets an arena of its own"
    assert limited == 2
    assert said == "Limited glibc's malloc arenas to 2"


def test_an_arena_max_from_the_environment_is_kept() -> None:
    count, said = arenas("limit", MALLOC_ARENA_MAX="3")
    assert said == "Kept MALLOC_ARENA_MAX=3 from the environment"
    assert count == 3
