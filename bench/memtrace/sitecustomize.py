"""Memory trace of a Python process, for `bench/scale.py --trace-memory DIR` (put this folder on PYTHONPATH).

Started only where KESTREL_TRACE_MEMORY names a folder: tracemalloc on from the first import, and every
KESTREL_TRACE_MEMORY_EVERY seconds (default 15) one report there: RSS and peak RSS, what tracemalloc sees live,
the top allocation sites by line and by call chain, and the commonest object types. A bench tool, not part
of the operator: tracemalloc costs time and memory of its own.
"""

import collections
import gc
import os
import pathlib
import threading
import time
import tracemalloc

FOLDER = os.environ.get("KESTREL_TRACE_MEMORY")


def _status(field: str) -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _report(folder: pathlib.Path, index: int, started: float) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    )
    current, peak = tracemalloc.get_traced_memory()
    lines = [
        f"t={time.monotonic() - started:.0f}s rss={_status('VmRSS'):.0f}MB hwm={_status('VmHWM'):.0f}MB "
        f"traced={current / 2**20:.0f}MB traced_peak={peak / 2**20:.0f}MB threads={threading.active_count()}",
        "",
        "-- by line",
    ]
    lines += [str(stat) for stat in snapshot.statistics("lineno")[:25]]
    lines += ["", "-- by file"]
    lines += [str(stat) for stat in snapshot.statistics("filename")[:15]]
    lines += ["", "-- by call chain"]
    for stat in snapshot.statistics("traceback")[:12]:
        lines.append(f"{stat.size / 2**20:.1f} MB in {stat.count} blocks")
        lines += [f"    {frame}" for frame in stat.traceback.format()[-16:]]
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    lines += ["", "-- objects by type (gc-tracked)"]
    lines += [f"{n:>9} {name}" for name, n in counts.most_common(20)]
    (folder / f"memory-{index:03d}.txt").write_text("\n".join(lines) + "\n")


def _loop(folder: pathlib.Path, every: float) -> None:
    started, index = time.monotonic(), 0
    while True:
        time.sleep(every)
        index += 1
        try:
            _report(folder, index, started)
        except Exception as error:  # a diagnostic must not take the process down
            (folder / f"memory-{index:03d}.error").write_text(repr(error))


if FOLDER:
    tracemalloc.start(int(os.environ.get("KESTREL_TRACE_MEMORY_FRAMES", "4")))
    _folder = pathlib.Path(FOLDER)
    _folder.mkdir(parents=True, exist_ok=True)
    _every = float(os.environ.get("KESTREL_TRACE_MEMORY_EVERY", "15"))
    threading.Thread(target=_loop, args=(_folder, _every), name="memory-trace", daemon=True).start()
