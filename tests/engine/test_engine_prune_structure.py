"""Pruning removes channels for real, and the C2f rewrite it relies on changes nothing by itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kestrel.engine import prune, runners
from synthetic import detector

pytestmark = pytest.mark.slow


def test_rewrite_alone_keeps_outputs_and_pruning_removes_channels(tmp_path: Path) -> None:
    source = detector.CHECKPOINT
    batch = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    reference = runners.torch_source(source, 1, 1)(batch)

    unchanged = prune.prune(source, tmp_path / "p0.pt", 0.0, 128)
    assert unchanged.params_after == unchanged.params_before
    assert np.allclose(runners.torch_source(tmp_path / "p0.pt", 1, 1)(batch), reference, atol=0.1)

    pruned = prune.prune(source, tmp_path / "p3.pt", 0.3, 128)
    assert pruned.params_after < 0.75 * pruned.params_before
    assert pruned.size_after < pruned.size_before
    assert runners.torch_source(tmp_path / "p3.pt", 1, 1)(batch).shape == reference.shape
