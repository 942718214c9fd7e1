"""Unit-suite wiring: process-wide caches start empty in every test."""

from __future__ import annotations

import pytest

from kestrel.reconcilers import installed


@pytest.fixture(autouse=True)
def fresh_addon_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # installed.ANSWERS keeps "is KEDA / cert-manager installed" for a minute; one test's cluster is not the next's.
    monkeypatch.setattr(installed, "ANSWERS", installed.Answers())
