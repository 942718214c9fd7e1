"""Latency percentiles and throughput of a runner at batch 1 and at the largest batch, after warm-up.

Warm-up runs are discarded (first calls allocate, JIT and page in weights). Percentiles are over individual calls
timed with a monotonic clock; throughput is images per second at the median.

`side_by_side` compares runners on a machine whose load changes while it measures (a shared CI host): measured one
after the other, a runner timed while a neighbour compiles looks slower than one timed a minute later, and their
ratio measures the neighbour. Interleaved in short rounds, every runner sees the same load over the run.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kestrel.engine import progress, runners


@dataclasses.dataclass(frozen=True)
class Latency:
    batch: int
    p50_ms: float
    p95_ms: float
    throughput_ips: float
    iterations: int


def measure(runner: runners.Runner, imgsz: int, batch: int, warmup: int = 3, iterations: int = 20) -> Latency:
    rng = np.random.default_rng(0)
    tensor = rng.random((batch, 3, imgsz, imgsz), dtype=np.float32)
    for _ in range(warmup):
        runner(tensor)
    timings = []
    for _ in range(iterations):
        started = time.perf_counter()
        runner(tensor)
        timings.append((time.perf_counter() - started) * 1000)
    return _summary(batch, timings)


@dataclasses.dataclass(frozen=True)
class Round:
    """One interleaved round: each runner's timed calls (ms), and how busy the rest of the machine was meanwhile."""

    timings: dict[str, list[float]]
    others: float | None  # share of all CPUs that other processes used during the round, 0..1; None: unknown


@dataclasses.dataclass(frozen=True)
class SideBySide:
    batch: int
    rounds: list[Round]

    def quiet(self, max_others: float) -> list[Round]:
        """The rounds during which other processes used at most `max_others` of the machine."""
        return [r for r in self.rounds if r.others is not None and r.others <= max_others]

    def latency(self, rounds: list[Round] | None = None) -> dict[str, Latency]:
        chosen = self.rounds if rounds is None else rounds
        names = list(self.rounds[0].timings) if self.rounds else []
        return {name: _summary(self.batch, [t for r in chosen for t in r.timings[name]]) for name in names}


def side_by_side(
    named: Mapping[str, runners.Runner], imgsz: int, batch: int, *, rounds: int = 8, per_round: int = 5, warmup: int = 3
) -> SideBySide:
    """Each runner `warmup` calls, then `rounds` rounds of one untimed and `per_round` timed calls per runner.

    The untimed call in each round absorbs the switch from the previous runtime (its idle worker threads, caches);
    the order rotates from round to round so that no runner always follows the same one. Each round also records
    how much CPU other processes took meanwhile: a runtime whose threads meet at a barrier after every layer
    (PyTorch's OpenMP) slows down far more than in proportion when a core is taken from it, so ratios measured on
    an oversubscribed machine mostly measure the neighbours; callers can keep the quiet rounds only.
    """
    tensor = np.random.default_rng(0).random((batch, 3, imgsz, imgsz), dtype=np.float32)
    names = list(named)
    for name in names:
        for _ in range(warmup):
            named[name](tensor)
    measured: list[Round] = []
    for index in range(rounds):
        shift = index % len(names)
        timings: dict[str, list[float]] = {name: [] for name in names}
        wall, before = time.perf_counter(), cpu_seconds()
        for name in names[shift:] + names[:shift]:
            runner = named[name]
            runner(tensor)
            for _ in range(per_round):
                started = time.perf_counter()
                runner(tensor)
                timings[name].append((time.perf_counter() - started) * 1000)
        measured.append(Round(timings, _others_share(before, cpu_seconds(), time.perf_counter() - wall)))
    return SideBySide(batch, measured)


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has been busy, CPU seconds this process has used); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks[:3]) + sum(ticks[5:8])  # steal too: another guest had the core
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return busy / os.sysconf("SC_CLK_TCK"), usage.ru_utime + usage.ru_stime


def _others_share(before: tuple[float, float] | None, after: tuple[float, float] | None, wall: float) -> float | None:
    if before is None or after is None or wall <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return round(min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0), 3)


def _summary(batch: int, timings: list[float]) -> Latency:
    p50, p95 = (float(v) for v in np.percentile(timings, [50, 95]))
    return Latency(batch, round(p50, 2), round(p95, 2), round(batch * 1000 / p50, 1), len(timings))


def profile(runner: runners.Runner, imgsz: int, max_batch: int, iterations: int = 20) -> list[Latency]:
    """Batch 1 always; the largest batch too when it differs (fewer iterations: each call is max_batch images)."""
    sizes = 2 if max_batch > 1 else 1
    progress.report("profile", 0, sizes)
    results = [measure(runner, imgsz, 1, iterations=iterations)]
    if max_batch > 1:
        progress.report("profile", 1, sizes)
        results.append(measure(runner, imgsz, max_batch, iterations=max(5, iterations // 2)))
    progress.report("profile", sizes, sizes)
    return results
