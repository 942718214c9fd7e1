"""Latency percentiles and throughput of a runner at batch 1 and at the largest batch, after warm-up.

Warm-up runs are discarded (first calls allocate, JIT and page in weights). Percentiles are over individual calls
timed with a monotonic clock; throughput is images per second at the median.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from kestrel.engine import runners


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
    p50, p95 = (float(v) for v in np.percentile(timings, [50, 95]))
    return Latency(batch, round(p50, 2), round(p95, 2), round(batch * 1000 / p50, 1), iterations)


def profile(runner: runners.Runner, imgsz: int, max_batch: int, iterations: int = 20) -> list[Latency]:
    """Batch 1 always; the largest batch too when it differs (fewer iterations: each call is max_batch images)."""
    results = [measure(runner, imgsz, 1, iterations=iterations)]
    if max_batch > 1:
        results.append(measure(runner, imgsz, max_batch, iterations=max(5, iterations // 2)))
    return results
