"""Runners compared side by side are interleaved in rotating rounds, so a change of load hits every one of them."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import numpy.typing as npt
import pytest

from kestrel.engine import profile


@dataclasses.dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class FakeRunner:
    name: str
    cost_s: float
    clock: Clock
    calls: list[str]
    max_batch: int = 8

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.calls.append(self.name)
        # The machine gets busier as the run goes on: every call costs more than the one before.
        self.clock.now += self.cost_s * (1 + 0.01 * len(self.calls))
        return batch


def test_interleaved_rounds_share_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, calls = Clock(), list[str]()
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(profile, "cpu_seconds", lambda: None)
    named = {name: FakeRunner(name, cost, clock, calls) for name, cost in (("slow", 0.04), ("fast", 0.01))}
    measured = profile.side_by_side(named, imgsz=8, batch=1, rounds=4, per_round=3, warmup=2)
    results = measured.latency()

    assert calls[:4] == ["slow", "slow", "fast", "fast"]  # warm-up
    rounds = [calls[4 + i * 8 : 4 + (i + 1) * 8] for i in range(4)]
    assert [r[0] for r in rounds] == ["slow", "fast", "slow", "fast"]  # the order rotates
    assert all(r.count("slow") == r.count("fast") == 4 for r in rounds)  # one untimed + three timed each
    assert {r.iterations for r in results.values()} == {12}
    # Both saw the same growing load, so their ratio is their cost ratio, not the load's drift.
    ratio = results["slow"].p50_ms / results["fast"].p50_ms
    assert ratio == pytest.approx(4.0, rel=0.02)
    assert results["fast"].throughput_ips == pytest.approx(1000 / results["fast"].p50_ms, rel=0.01)


def test_busy_rounds_can_be_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other processes' CPU is the machine's busy time minus this process's own, per round and per CPU."""
    clock, calls = Clock(), list[str]()
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # Two samples a round (before, after), cumulative: this process used 1 CPU second a round; in rounds 1 and 3
    # the others used 1.5 CPU seconds more, of the 2 CPUs x about 1 s there were.
    busy_others = iter([0.0, 0.0, 0.0, 1.5, 1.5, 1.5, 1.5, 3.0])
    own = iter([0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0])

    def sample() -> tuple[float, float]:
        mine = next(own)
        return mine + next(busy_others), mine

    monkeypatch.setattr(profile, "cpu_seconds", sample)
    named = {"only": FakeRunner("only", 0.25, clock, calls)}
    measured = profile.side_by_side(named, imgsz=8, batch=1, rounds=4, per_round=3, warmup=0)
    # Each round lasts 4 calls x 0.25 s (and a little more as the fake load grows): about 1 s of wall time.
    shares = [r.others for r in measured.rounds]
    assert shares[0] == 0.0 and shares[2] == 0.0
    busy = [share for share in (shares[1], shares[3]) if share is not None]
    assert len(busy) == 2 and all(0.6 < share <= 0.75 for share in busy)
    quiet = measured.quiet(0.25)
    assert [measured.rounds.index(r) for r in quiet] == [0, 2]
    assert measured.latency(quiet)["only"].iterations == 6
    monkeypatch.setattr(profile, "cpu_seconds", lambda: None)
    unknown = profile.side_by_side(named, imgsz=8, batch=1, rounds=2, per_round=1, warmup=0)
    assert unknown.quiet(1.0) == []  # unknown contention is never called quiet
