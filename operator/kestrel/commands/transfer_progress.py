"""A progress line for long transfers: `label 48.0 MiB/120.0 MiB (40%)` on stderr, redrawn in place.

Only on a terminal: in a log or a pipe a line a second is noise. At most once a second, and once more at the end
so the last thing on screen is the total.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

INTERVAL_S = 1.0


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


class Progress:
    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool | None = None,
    ) -> None:
        self.label, self.total, self.stream, self.clock = label, total, stream, clock
        self.enabled = stream.isatty() if enabled is None else enabled
        self.done = 0
        self.shown: int | None = None  # the count last drawn
        self.shown_at = clock()

    def advance(self, count: int) -> None:
        self.done += count
        if self.enabled and self.clock() - self.shown_at >= INTERVAL_S:
            self._draw()

    def finish(self) -> None:
        """The final count (unless it is on screen already), then the newline; nothing for a transfer that ended
        within its first second."""
        if not self.enabled or (self.shown is None and self.clock() - self.shown_at < INTERVAL_S):
            return
        if self.shown != self.done:
            self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        percent = 100 * self.done // self.total if self.total else 100
        self.stream.write(f"\r{self.label} {_mib(self.done)}/{_mib(self.total)} ({percent}%)")
        self.stream.flush()
        self.shown, self.shown_at = self.done, self.clock()
