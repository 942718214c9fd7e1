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

Apart from content, `Recent` remembers which owner each object was confirmed to belong to (`record_owner`): the
guard against writing over someone else's object (`kube.ownership`) reads an object once before this process
first writes it, not before every write. Every view trusts that memory, however little it trusts content: an
object changes hands only by being deleted, and this process forgets what it deleted or saw deleted.
"""

from __future__ import annotations

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


def _packed(body: Body) -> bytes:
    """The object without `managedFields`, as compact JSON: a tenth of the memory of the parsed dict at scale, and
    `json.loads` hands every reader its own copy faster than `copy.deepcopy` would."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return json.dumps({**body, "metadata": metadata}, separators=(",", ":")).encode()


@dataclasses.dataclass
class Entry:
    packed: bytes  # the object as confirmed (`_packed`)
    generation: int
    seen_at: float
    applied: str | None = None  # digest of the manifest whose apply returned the object
    applied_at: float = 0.0

    @classmethod
    def of(cls, body: Body, at: float) -> Entry:
        return cls(_packed(body), _generation(body), at)

    def body(self) -> Body:
        found: Body = json.loads(self.packed)
        return found


class Recent:
    """A thread-safe map from object to what was last confirmed about it; entries expire after `trust` seconds."""

    def __init__(self, trust: float, clock: Callable[[], float] = time.monotonic) -> None:
        if trust < 0:
            raise ValueError(f"trust must be >= 0, got {trust}")
        self.trust = trust
        self.clock = clock
        self._entries: dict[Key, Entry] = {}
        self._gone: dict[Key, float] = {}  # objects this process deleted (or found gone), and when
        self._owners: dict[Key, tuple[str, float]] = {}  # objects confirmed owned: the owner's uid, and when
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
        return entry.body()

    def applied(self, key: Key, manifest_digest: str, since: float) -> Body | None:
        """The object, when the manifest with this digest was applied at or after `since` and nobody changed it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.applied != manifest_digest or entry.applied_at < since:
                return None
        return entry.body()

    def record(self, result: Body, *, manifest_digest: str | None = None) -> None:
        """Remember an object the API server just returned (for an apply: with the applied manifest's digest)."""
        now = self.clock()
        key, entry = key_of(result), Entry.of(result, now)
        with self._lock:
            before = self._entries.get(key)
            self._gone.pop(key, None)
            if manifest_digest is not None:
                entry.applied, entry.applied_at = manifest_digest, now
            elif before is not None and before.generation == entry.generation:
                entry.applied, entry.applied_at = before.applied, before.applied_at
            self._entries[key] = entry
            self._sweep(now)

    def observe(self, body: Body) -> Body | None:
        """A watch event of an object this process applied: update it; return what was known before (None when
        nothing was). A new `metadata.generation` means its spec changed: the next pass applies it again."""
        key, entry = key_of(body), Entry.of(body, self.clock())
        with self._lock:
            before = self._entries.get(key)
            if before is None:
                return None
            if before.generation == entry.generation:
                entry.applied, entry.applied_at = before.applied, before.applied_at
            self._entries[key] = entry
        return before.body()

    def forget(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._gone.pop(key, None)
            self._owners.pop(key, None)

    def record_gone(self, key: Key) -> None:
        """This process deleted the object, or its delete found it already gone."""
        with self._lock:
            self._entries.pop(key, None)
            self._owners.pop(key, None)
            self._gone[key] = self.clock()

    def record_owner(self, key: Key, owner: str) -> None:
        """The object is `owner`'s: this process wrote it as its child, or found it carrying `owner`'s uid."""
        now = self.clock()
        with self._lock:
            self._owners[key] = (owner, now)
            self._sweep(now)

    def owned(self, key: Key, owner: str) -> bool:
        """Whether the object was confirmed to be `owner`'s (within `trust` of its last confirmation)."""
        with self._lock:
            found = self._owners.get(key)
        return found is not None and found[0] == owner

    def gone(self, key: Key, since: float) -> bool:
        """Whether a delete at or after `since` confirmed the object gone (and nothing recorded it since)."""
        with self._lock:
            at = self._gone.get(key)
        return at is not None and at >= since

    def _sweep(self, now: float) -> None:
        # Entries of deleted objects would otherwise stay for the life of the process.
        if now - self._swept < max(self.trust, 1.0):
            return
        self._swept = now
        for key in [k for k, e in self._entries.items() if now - max(e.seen_at, e.applied_at) > self.trust]:
            del self._entries[key]
        for key in [k for k, at in self._gone.items() if now - at > self.trust]:
            del self._gone[key]
        for key in [k for k, (_, at) in self._owners.items() if now - at > self.trust]:
            del self._owners[key]


def _generation(body: Body) -> int:
    return int(body.get("metadata", {}).get("generation") or 0)
