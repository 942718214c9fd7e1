"""The drift check: every interval, one pass over each ModelDeployment this process watches (level-triggered).

Not a Kopf timer: Kopf keeps, for every object with a timer, its whole last body (managedFields included) for
the timer's sake, which was the largest part of the operator's memory at scale (~0.2 MB per model). Here the
watch events keep a compact copy instead (`Registry`: managedFields cut to their managers and top-level fields, as
JSON bytes), and one loop runs
the passes on a few threads of its own. A sweep waits for its passes before the next interval starts, so an
operator that is behind does not pile drift passes on top of the work that made it late.

A model is first checked one interval after it appeared: its create (or resume) pass has just done what the check
would do. Passes serialise with the model's other passes through `serial`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kestrel.api import errors

Body = dict[str, Any]
Key = tuple[str, str]  # namespace, name
Pass = Callable[[Body], object]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Known:
    uid: str
    packed: bytes
    since: float  # when this process first saw this object (uid)


def _outline(entry: dict[str, Any]) -> dict[str, Any]:
    """A managedFields entry cut to who wrote which top-level fields: what the audit trail reads
    (security/audit.field_managers), a small part of the whole field tree."""
    kept: dict[str, Any] = {k: entry[k] for k in ("manager", "operation", "subresource") if k in entry}
    fields = entry.get("fieldsV1")
    if isinstance(fields, dict):
        kept["fieldsV1"] = {name: {} for name in fields}
    return kept


def _packed(body: Body) -> bytes:
    metadata = dict(body.get("metadata") or {})
    if "managedFields" in metadata:
        metadata["managedFields"] = [_outline(entry) for entry in metadata["managedFields"] or []]
    return json.dumps({**body, "metadata": metadata}, separators=(",", ":")).encode()


class Registry:
    """The newest body of each watched model, compact; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._known: dict[Key, _Known] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._known)

    def remember(self, body: Body) -> None:
        meta = body["metadata"]
        key, uid = (str(meta["namespace"]), str(meta["name"])), str(meta.get("uid", ""))
        packed = _packed(body)
        with self._lock:
            before = self._known.get(key)
            since = before.since if before is not None and before.uid == uid else self.clock()
            self._known[key] = _Known(uid, packed, since)

    def get(self, namespace: str, name: str) -> Body | None:
        """The newest body a watch event brought of this model (compact), or None."""
        with self._lock:
            known = self._known.get((namespace, name))
        return None if known is None else dict(json.loads(known.packed))

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._known.pop((namespace, name), None)

    def due(self, age: float) -> list[Body]:
        """Bodies of the models known for at least `age` seconds and not being deleted."""
        now = self.clock()
        with self._lock:
            packed = [k.packed for k in self._known.values() if now - k.since >= age]
        bodies = [json.loads(p) for p in packed]
        return [b for b in bodies if not b["metadata"].get("deletionTimestamp")]


class Resync:
    """A thread that runs `run_pass` over every due model of `registry` each `interval` seconds."""

    def __init__(self, registry: Registry, run_pass: Pass, interval: float, threads: int) -> None:
        if interval <= 0:
            raise ValueError(f"the resync interval must be > 0 seconds, got {interval}")
        self.registry, self.run_pass, self.interval = registry, run_pass, interval
        self._threads = max(1, threads)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop (again, after `stop`: an in-process operator may be started more than once)."""
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kestrel-resync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def sweep(self) -> int:
        """One pass over each due model; return how many passes ran."""
        due = self.registry.due(self.interval)
        with concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="kestrel-resync") as pool:
            for body, future in [(body, pool.submit(self.run_pass, body)) for body in due]:
                _report(body, future)
        return len(due)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:  # the loop must outlive any one sweep; the failure is logged with its traceback
                logger.exception("A drift-check sweep failed; the next starts in %.0f s", self.interval)


def _report(body: Body, future: concurrent.futures.Future[object]) -> None:
    meta = body["metadata"]
    name = f"{meta['namespace']}/{meta['name']}"
    error = future.exception()
    if error is None:
        return
    if isinstance(error, errors.KestrelError):
        # The model's status and Events already say it; the next sweep tries again.
        logger.warning("Drift check of ModelDeployment %s did not finish: %s", name, error)
    else:
        logger.error("Drift check of ModelDeployment %s failed", name, exc_info=error)
