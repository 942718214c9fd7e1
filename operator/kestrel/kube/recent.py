"""What the operator recently confirmed about the objects it owns, so that a pass need not ask again.

At scale most passes change nothing: re-applying every child and re-reading every Secret on each pass costs
the API server a request per object per pass. `Recent` remembers, per object, the digest of the manifest last
applied and the object as the API server returned it (without `managedFields`), with the time it was
confirmed. A pass trusts an entry only when it is fresh enough for that pass (`Kube.view`); anything older is
asked again, so drift is still corrected, at the latest when the entry expires. Watch events of owned objects
(`observe`) keep entries current and drop the applied digest when someone else changed the object's spec.
Missing objects are never remembered for reads: a pass waiting for something to appear must see it appear. Only
the operator's own deletes are (`record_gone`): a child it removes on every pass (the API-key reader binding of a
model without allowed subjects, a canary that is over) need not be deleted again while that is fresh.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

Body = dict[str, Any]
Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name


def key_of(body: Body) -> Key:
    meta = body["metadata"]
    return (str(body["apiVersion"]), str(body["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


def digest(body: Body) -> str:
    """A stable digest of a manifest: equal manifests, however their dicts were built, give equal digests."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _trimmed(body: Body) -> Body:
    found = copy.deepcopy(body)
    found.get("metadata", {}).pop("managedFields", None)
    return found


@dataclasses.dataclass
class Entry:
    result: Body
    seen_at: float
    applied: str | None = None  # digest of the manifest whose apply returned `result`
    applied_at: float = 0.0


class Recent:
    """A thread-safe map from object to what was last confirmed about it; entries expire after `ttl` seconds."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0:
            raise ValueError(f"ttl must be >= 0, got {ttl}")
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[Key, Entry] = {}
        self._gone: dict[Key, float] = {}  # objects this process deleted (or found gone), and when
        self._lock = threading.Lock()
        self._swept = clock()

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, key: Key, since: float) -> Body | None:
        """The object as confirmed at or after `since` (a clock reading), else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.seen_at < since:
                return None
            return copy.deepcopy(entry.result)

    def applied(self, key: Key, manifest_digest: str, since: float) -> Body | None:
        """The object, when the manifest with this digest was applied at or after `since` and nobody changed it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.applied != manifest_digest or entry.applied_at < since:
                return None
            return copy.deepcopy(entry.result)

    def record(self, result: Body, *, manifest_digest: str | None = None) -> None:
        """Remember an object the API server just returned (for an apply: with the applied manifest's digest)."""
        now = self.clock()
        with self._lock:
            key = key_of(result)
            before = self._entries.get(key)
            entry = Entry(_trimmed(result), now)
            self._gone.pop(key, None)
            if manifest_digest is not None:
                entry.applied, entry.applied_at = manifest_digest, now
            elif before is not None and _generation(before.result) == _generation(result):
                entry.applied, entry.applied_at = before.applied, before.applied_at
            self._entries[key] = entry
            self._sweep(now)

    def observe(self, body: Body) -> Body | None:
        """A watch event of an object this process applied: update it; return what was known before (None when
        nothing was). A new `metadata.generation` means its spec changed: the next pass applies it again."""
        key = key_of(body)
        with self._lock:
            before = self._entries.get(key)
            if before is None:
                return None
            entry = Entry(_trimmed(body), self.clock())
            if _generation(before.result) == _generation(body):
                entry.applied, entry.applied_at = before.applied, before.applied_at
            self._entries[key] = entry
            return before.result

    def forget(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._gone.pop(key, None)

    def record_gone(self, key: Key) -> None:
        """This process deleted the object, or its delete found it already gone."""
        with self._lock:
            self._entries.pop(key, None)
            self._gone[key] = self.clock()

    def gone(self, key: Key, since: float) -> bool:
        """Whether a delete at or after `since` confirmed the object gone (and nothing recorded it since)."""
        with self._lock:
            at = self._gone.get(key)
        return at is not None and at >= since

    def _sweep(self, now: float) -> None:
        # Entries of deleted objects would otherwise stay for the life of the process.
        if now - self._swept < max(self.ttl, 1.0):
            return
        self._swept = now
        for key in [k for k, e in self._entries.items() if now - max(e.seen_at, e.applied_at) > self.ttl]:
            del self._entries[key]
        for key in [k for k, at in self._gone.items() if now - at > self.ttl]:
            del self._gone[key]


def _generation(body: Body) -> int:
    return int(body.get("metadata", {}).get("generation") or 0)
