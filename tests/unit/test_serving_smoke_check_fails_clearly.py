"""The smoke check's own verdicts: what a well-formed answer is, and a real gRPC failure that names its step.

A passing check against a real Triton runs in tests/e2e/test_serving_end_to_end.py.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from kestrel.serving import smoke


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (None, "no DETECTIONS output"),
        (np.zeros((1, 3, 6), dtype=np.float64), "is float64, expected float32"),
        (np.zeros((3, 6), dtype=np.float32), "has shape [3, 6], expected [1, n, 6]"),
        (np.zeros((1, 3, 5), dtype=np.float32), "has shape [1, 3, 5]"),
        (np.full((1, 2, 6), np.nan, dtype=np.float32), "non-finite"),
    ],
)
def test_malformed_answers_are_named(output: npt.NDArray[Any] | None, problem: str) -> None:
    found = smoke.well_formed(output)
    assert found is not None and problem in found


def test_well_formed_answers_pass_with_or_without_detections() -> None:
    assert smoke.well_formed(np.zeros((1, 0, 6), dtype=np.float32)) is None
    assert smoke.well_formed(np.full((1, 4, 6), -1, dtype=np.float32)) is None  # padding rows


def test_an_unreachable_server_fails_within_the_deadline_and_never_shows_the_key() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = smoke.Target(
        address=f"127.0.0.1:{port}", model="cams", headers={"triton-grpc-protocol-kestrel-api-key": "s3cret"}
    )
    started = time.monotonic()
    outcome = smoke.check(target, timeout=2.0)
    assert time.monotonic() - started < 5
    assert outcome.passed is False and outcome.latency_ms is None
    assert outcome.message.startswith(f"cams at 127.0.0.1:{port}: server liveness failed:")
    assert "s3cret" not in outcome.message
