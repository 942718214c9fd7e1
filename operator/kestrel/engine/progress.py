"""A build's progress as lines in its log, for people reading it and for the operator, which mirrors the newest
into the model's status (reconcilers/engine/build_progress.py).

Each line is `kestrel-progress {"stage": S, "done": N, "total": M}` on stderr: when a stage starts, when it ends,
and in between at most once per `interval` seconds. The operator reads these from a pod that runs the user's
checkpoint, so `parse` is the one reader and accepts only the stages named here and bounded counts; anything else in
the log is ignored, never quoted.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import IO, Literal, cast, get_args

PREFIX = "kestrel-progress "
# In the order a build runs them; `prune`, `fine-tune`, `distill` and `calibrate` only when the spec asks for them.
Stage = Literal[
    "fetch", "baseline", "prune", "fine-tune", "distill", "export", "calibrate", "validate", "profile", "publish"
]
STAGES: tuple[Stage, ...] = get_args(Stage)
UNITS: dict[Stage, str] = {
    "fetch": "bytes",
    "baseline": "images",
    "prune": "steps",
    "fine-tune": "epochs",
    "distill": "epochs",
    "export": "candidates",
    "calibrate": "images",
    "validate": "images",
    "profile": "batch sizes",
    "publish": "files",
}
MAX_COUNT = 1 << 50  # a petabyte of source, more images than any dataset: a count above is not believed


@dataclasses.dataclass(frozen=True)
class Progress:
    stage: Stage
    done: int | None = None
    total: int | None = None

    def describe(self) -> str:
        """`validate 40/80 images`, `export`, `fetch 1048576 bytes`."""
        if self.done is None:
            return self.stage
        counted = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        return f"{self.stage} {counted} {UNITS[self.stage]}"


class Reporter:
    """Writes progress lines, rate-limited per stage; the first and the last line of a stage always go out."""

    def __init__(
        self, stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic, interval: float = 1.0
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._last: dict[str, float] = {}

    def __call__(self, stage: Stage, done: int | None = None, total: int | None = None) -> None:
        now = self._clock()
        edge = done is None or done == 0 or (total is not None and done >= total)
        if not edge and now - self._last.get(stage, float("-inf")) < self._interval:
            return
        self._last[stage] = now
        fields: dict[str, object] = {"stage": stage}
        if done is not None:
            fields["done"] = done
        if total is not None:
            fields["total"] = total
        stream = self._stream or sys.stderr
        stream.write(PREFIX + json.dumps(fields, separators=(",", ":")) + "\n")
        stream.flush()


report = Reporter()


def _count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError("not a count")
    return value


def parse(line: str) -> Progress | None:
    """A progress line as the operator may believe it, or None (another line, or one that does not hold)."""
    if not line.startswith(PREFIX) or len(line) > 200:
        return None
    try:
        fields = json.loads(line[len(PREFIX) :])
        if not isinstance(fields, dict) or set(fields) - {"stage", "done", "total"}:
            return None
        stage = fields.get("stage")
        if stage not in STAGES:
            return None
        done, total = _count(fields.get("done")), _count(fields.get("total"))
    except ValueError:
        return None
    if done is not None and total is not None and done > total:
        return None
    return Progress(cast(Stage, stage), done, total)


def newest(text: str) -> Progress | None:
    """The last line of `text` that `parse` accepts."""
    for line in reversed(text.splitlines()):
        found = parse(line.strip())
        if found is not None:
            return found
    return None
