"""Leader election on a Lease: one holder at a time, a standby takes over only a full duration (by its own clock)
after the holder's last renewal it saw, a released Lease is taken at once, and a holder that cannot renew gives up
before a standby may take over."""

from __future__ import annotations

import copy
import threading
import time
import urllib.request
from typing import Any

import pytest

from kestrel.api import errors
from kestrel.commands import leadership
from kestrel.kube import lease
from testbed.ports import free_port

Body = dict[str, Any]


class LeaseStore:
    """The API server's part for one Lease: reads, create-if-absent, and writes that check the resourceVersion."""

    def __init__(self) -> None:
        self.stored: Body | None = None
        self.version = 0
        self.failing = False

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Body | None:
        self._maybe_fail()
        return copy.deepcopy(self.stored)

    def create(self, body: Body) -> Body:
        self._maybe_fail()
        if self.stored is not None:
            raise errors.ConflictError("already exists")
        return self._store(body)

    def replace(self, body: Body) -> Body:
        self._maybe_fail()
        assert self.stored is not None
        if body["metadata"].get("resourceVersion") != self.stored["metadata"]["resourceVersion"]:
            raise errors.ConflictError("the object has been modified")
        return self._store(body)

    def _store(self, body: Body) -> Body:
        self.version += 1
        self.stored = copy.deepcopy(body)
        self.stored["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.stored)

    def _maybe_fail(self) -> None:
        if self.failing:
            raise errors.TransientError("connection refused")

    @property
    def holder(self) -> str:
        assert self.stored is not None
        return str(self.stored["spec"]["holderIdentity"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _elector(store: LeaseStore, identity: str, clock: Clock) -> lease.Elector:
    return lease.Elector(store, "kestrel-system", "kestrel-operator", identity, clock=clock)  # type: ignore[arg-type]


def test_one_holder_and_a_standby_takes_over_a_duration_after_the_last_renewal_it_saw() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = _elector(store, "a", clock), _elector(store, "b", clock)
    assert a.try_acquire_or_renew() and store.holder == "a"
    assert not b.try_acquire_or_renew()
    for _ in range(10):  # a renews every 2 s: b never takes over, however long it waits
        clock.now += 2
        assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    # a stops renewing: b sees the same record for a whole duration before it takes the Lease.
    clock.now += lease.DURATION - 1
    assert not b.try_acquire_or_renew()
    clock.now += 1
    assert b.try_acquire_or_renew() and store.holder == "b"
    assert store.stored is not None and store.stored["spec"]["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()  # a, back, sees b's fresh record


def test_the_holders_timestamps_are_not_compared_with_the_standbys_clock() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = _elector(store, "a", clock), _elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert store.stored is not None
    store.stored["spec"]["renewTime"] = "2001-01-01T00:00:00.000000Z"  # a holder whose clock is years behind
    assert not b.try_acquire_or_renew()  # b first saw this record just now


def test_two_standbys_racing_for_an_expired_lease_never_both_win() -> None:
    store, clock = LeaseStore(), Clock()
    assert _elector(store, "a", clock).try_acquire_or_renew()
    b, c = _elector(store, "b", clock), _elector(store, "c", clock)
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += lease.DURATION
    read_by_c = store.get(lease.API_VERSION, lease.KIND, "kestrel-system", "kestrel-operator")
    assert b.try_acquire_or_renew()
    # c writes what it read before b's write: the resourceVersion no longer matches.
    with pytest.raises(errors.ConflictError):
        assert read_by_c is not None
        store.replace({**read_by_c, "spec": {**read_by_c["spec"], "holderIdentity": "c"}})
    assert store.holder == "b" and not c.try_acquire_or_renew()


def test_a_released_lease_is_taken_at_the_next_try() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = _elector(store, "a", clock), _elector(store, "b", clock)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    a.release()
    assert store.holder == "" and b.try_acquire_or_renew() and store.holder == "b"
    a.release()  # not the holder any more: leaves b's Lease alone
    assert store.holder == "b"


def test_a_holder_that_cannot_renew_gives_up_within_the_renew_deadline() -> None:
    store = LeaseStore()
    holder = lease.Elector(store, "ns", "l", "a", renew=0.01, renew_deadline=0.2)  # type: ignore[arg-type]
    assert holder.try_acquire_or_renew()
    lost = threading.Event()
    stop = threading.Event()
    thread = holder.hold(lost.set, stop)
    time.sleep(0.3)
    assert not lost.is_set()  # renewing fine
    store.failing = True
    started = time.monotonic()
    assert lost.wait(2.0)
    assert time.monotonic() - started < 1.0
    thread.join(1.0)
    assert lease.RENEW_DEADLINE < lease.DURATION  # a holder stops before a standby may start


def test_a_standby_answers_the_liveness_probe_until_it_leads() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    with leadership.standby_health(port), urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
    with pytest.raises(OSError):  # closed before Kopf binds the port
        urllib.request.urlopen(url, timeout=2)


def test_leading_waits_for_the_lease_then_releases_it() -> None:
    store = LeaseStore()
    with leadership.leading("ns", "l", "a", 0, kube=store, lost=lambda: None):  # type: ignore[arg-type]
        assert store.holder == "a"
    assert store.holder == ""
