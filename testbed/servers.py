"""What the test bed's own server processes share (MinIO, Prometheus): a process group of their own, a log file whose
tail explains a failed start, readiness by an HTTP endpoint that answers 200, and a stop that leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType

STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 20


class ServerProcess:
    """One server in a fresh folder `root` (removed by `stop`), its output in `log_path`."""

    name = "server"

    def __init__(self, root: pathlib.Path, log_path: pathlib.Path) -> None:
        self.root = root
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Start `argv` in its own process group (so `stop` takes down anything it forked), output to the log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )

    def wait_ready(self, url: str, timeout: float, error: type[Exception]) -> None:
        """Return once `url` answers 200; raise `error`, with the log's tail, when the process exits or time is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise error(f"{self.name} exited during start-up" + self.log_tail())
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise error(f"{self.name} was not ready within {timeout:.0f}s" + self.log_tail())

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(lines)

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after `STOP_TIMEOUT`; then `root` (and a log kept in it) goes."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
