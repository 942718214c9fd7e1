"""Leader election on a coordination.k8s.io Lease, as Kubernetes' own controllers elect theirs.

Several operator replicas may run (the chart's `replicas`); one holds the Lease and reconciles, the others wait. A
holder renews every RENEW seconds and gives up (its process exits, the Deployment restarts it as a standby) when it
has not renewed for RENEW_DEADLINE, which is shorter than the Lease's duration: a standby takes over only after a
holder that lost the Lease has stopped. Like client-go, a standby judges expiry by its own clock from the moment it
last saw the record change, never by comparing the holder's timestamps with its own (the clocks may differ); every
write is a compare-and-swap on the resourceVersion, so two standbys never both win. A holder that stops cleanly
releases the Lease, so a rolling upgrade hands over in one retry instead of one Lease duration.

Kopf's own peering is not used: it pauses Kopf's watches, but not the operator's drift-check and owned-object threads.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kestrel.api import errors
from kestrel.kube import client

API_VERSION = "coordination.k8s.io/v1"
KIND = "Lease"
DURATION = 15.0  # seconds a standby waits after the holder's last renewal it saw
RENEW_DEADLINE = 10.0  # a holder that has not renewed for this long stops
RENEW = 2.0  # a holder renews, and a standby retries, this often

log = logging.getLogger(__name__)
Body = dict[str, Any]


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class Elector:
    kube: client.Kube
    namespace: str
    name: str
    identity: str
    duration: float = DURATION
    renew_deadline: float = RENEW_DEADLINE
    renew: float = RENEW
    clock: Callable[[], float] = time.monotonic
    _observed: tuple[str, str] | None = dataclasses.field(default=None, init=False)  # (holder, renewTime) last seen
    _observed_at: float = dataclasses.field(default=0.0, init=False)

    def try_acquire_or_renew(self) -> bool:
        """One attempt: True when this identity holds the Lease after it."""
        now = datetime.datetime.now(datetime.UTC)
        found = self.kube.get(API_VERSION, KIND, self.namespace, self.name)
        if found is None:
            return self._create(now)
        spec: Body = found.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        if holder and holder != self.identity and self.clock() - self._observed_at < self.duration:
            return False  # held, and renewed within a duration as this replica's clock counts it
        taking_over = holder != self.identity
        spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _micro_time(now),
        }
        if taking_over:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            self.kube.replace({**found, "spec": spec})
        except errors.ConflictError:
            return False  # someone wrote it since it was read: judge again next time
        if taking_over:
            log.info("Acquired Lease %s/%s as %s (was %s)", self.namespace, self.name, self.identity, holder or "free")
        return True

    def _create(self, now: datetime.datetime) -> bool:
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.duration),
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            self.kube.create(body)
        except errors.ConflictError:
            return False
        log.info("Acquired Lease %s/%s as %s (created it)", self.namespace, self.name, self.identity)
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Wait until this identity holds the Lease (True), or `stop` is set (False). API errors are retried."""
        waiting_said = False
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    return True
            except errors.ClusterError as error:
                log.warning("Could not read or write Lease %s/%s: %s", self.namespace, self.name, error)
            if not waiting_said:
                log.info("Waiting for Lease %s/%s, held by another replica", self.namespace, self.name)
                waiting_said = True
            stop.wait(self.renew)
        return False

    def hold(self, lost: Callable[[], None], stop: threading.Event) -> threading.Thread:
        """Renew in a daemon thread until `stop`; call `lost` once renewals have failed for the renew deadline."""

        def renew() -> None:
            renewed = self.clock()
            while not stop.wait(self.renew):
                try:
                    if self.try_acquire_or_renew():
                        renewed = self.clock()
                        continue
                except errors.ClusterError as error:
                    log.warning("Could not renew Lease %s/%s: %s", self.namespace, self.name, error)
                if self.clock() - renewed >= self.renew_deadline:
                    log.error(
                        "Lost Lease %s/%s: not renewed for %.0f s", self.namespace, self.name, self.renew_deadline
                    )
                    lost()
                    return

        thread = threading.Thread(target=renew, name="lease-renew", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Hand the Lease back (empty holder), so that a standby takes over at its next retry; best effort."""
        try:
            found = self.kube.get(API_VERSION, KIND, self.namespace, self.name)
            if found is None or (found.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {**found["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
            self.kube.replace({**found, "spec": spec})
            log.info("Released Lease %s/%s", self.namespace, self.name)
        except errors.ClusterError as error:
            log.warning("Could not release Lease %s/%s: %s", self.namespace, self.name, error)
