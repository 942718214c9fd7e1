"""The canary's arithmetic, without I/O: step sizes, analysis windows, and the verdict on Triton's counters; owns no
condition.

A window is judged on the requests the canary's pods answered in it: the difference of Triton's cumulative
counters (`nv_inference_request_success`, `nv_inference_request_failure`) between the window's start and end.
A counter that went backwards was reset (a pod restarted, or the reading came from a fresh pod); as Prometheus'
`rate()` does, the increase is then the new value. The p95 latency is the summary's quantile at the window's
end (Triton keeps it over a sliding window of recent requests). A window without traffic passes, and says so:
the analysis judges the requests a canary served, and a canary with none has served none badly.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

from kestrel.api import base, status
from kestrel.api import spec as specs


@dataclasses.dataclass(frozen=True)
class Reading:
    """Triton's request counters (summed over the model's versions and failure reasons) and its p95 latency."""

    success: int
    failure: int
    p95_ms: float | None = None

    def counters(self) -> status.CanaryCounters:
        return status.CanaryCounters(success=self.success, failure=self.failure)


def window_seconds(canary: specs.CanarySpec) -> float:
    return base.parse_duration(canary.interval)


def window_end(started: datetime.datetime, canary: specs.CanarySpec) -> datetime.datetime:
    return started + datetime.timedelta(seconds=window_seconds(canary))


def window_elapsed(started: datetime.datetime, now: datetime.datetime, canary: specs.CanarySpec) -> bool:
    return now >= window_end(started, canary)


def step_label(canary: specs.CanarySpec, step: int) -> str:
    """`step 2/3, 50%` as conditions and Events name a step."""
    return f"step {step + 1}/{len(canary.steps)}, {canary.steps[step]}%"


def _increase(before: int, after: int) -> int:
    return after - before if after >= before else after


def verdict(
    analysis: specs.CanaryAnalysisSpec, baseline: status.CanaryCounters, end: Reading
) -> tuple[status.CanaryAnalysisStatus, str]:
    """The window's numbers and whether they meet the bounds, with a message that names both."""
    successes = _increase(baseline.success, end.success)
    failures = _increase(baseline.failure, end.failure)
    requests = successes + failures
    if requests == 0:
        found = status.CanaryAnalysisStatus(requests=0, failures=0, passed=True)
        return (
            found,
            "no requests reached the canary in the window: passed (a canary without traffic served none badly)",
        )
    rate = failures / requests
    problems: list[str] = []
    if rate > analysis.max_error_rate:
        problems.append(f"error rate {rate:.4f} > maxErrorRate {analysis.max_error_rate}")
    p95 = end.p95_ms if end.p95_ms is not None and math.isfinite(end.p95_ms) else None
    if analysis.max_p95_latency_ms is not None:
        if p95 is None:
            problems.append("p95 latency unknown: Triton reported no nv_inference_request_summary_us quantile 0.95")
        elif p95 > analysis.max_p95_latency_ms:
            problems.append(f"p95 latency {p95:.1f} ms > maxP95LatencyMs {analysis.max_p95_latency_ms}")
    found = status.CanaryAnalysisStatus(
        requests=requests,
        failures=failures,
        error_rate=round(rate, 6),
        p95_ms=round(p95, 3) if p95 is not None else None,
        passed=not problems,
    )
    numbers = f"{requests} requests, {failures} failed (error rate {rate:.4f})"
    if p95 is not None:
        numbers += f", p95 {p95:.1f} ms"
    if problems:
        return found, f"{numbers}: {'; '.join(problems)}"
    return found, f"{numbers}: within the bounds"
