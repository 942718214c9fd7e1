"""75 certificates issued and renewed while the real operator is SIGKILLed every few seconds.

The operator runs as a subprocess under the chart's RBAC (the `operator` fixture, drift timer every second).
Certificates live 4 minutes and renew 3 minutes before expiry, so each renews about once a minute. A watch on
the namespace's Secrets records every certificate each TLS Secret ever held. Afterwards:

- none issued twice per renewal: each certificate's successor was issued at or after the predecessor's
  renewal point (a second issuance for the same renewal would be issued before the next point);
- none stuck: every model reports CertificateReady=True, and no current certificate is overdue.
"""

from __future__ import annotations

import base64
import collections
import datetime
import itertools
import random
import threading
import time
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client, watch

from kestrel.manifests import names
from kestrel.security import audit, certificates
from tests.cluster.operator_support import condition, get_mdep, mdep_spec, meta, name_of, wait_for

MODELS = 75
CHAOS_SECONDS = 150
TLS = {"duration": "4m", "rotateBefore": "3m"}
ROTATE_BEFORE = datetime.timedelta(minutes=3)
# A pass may wait its turn behind 74 others on a loaded machine: how late a renewal may be and not be "stuck".
OVERDUE = datetime.timedelta(seconds=45)


class SecretHistory:
    """Every distinct certificate each `*-tls` Secret of a namespace held, in the order the watch saw them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.seen: dict[str, list[x509.Certificate]] = collections.defaultdict(list)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.relists = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _record(self, secret: Any) -> None:
        name = name_of(secret)
        if not name.endswith("-tls") or not secret.data or "tls.crt" not in secret.data:
            return
        issued = x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))
        history = self.seen[name]
        if not history or history[-1].serial_number != issued.serial_number:
            history.append(issued)

    def _list(self) -> str:
        listed = self.core.list_namespaced_secret(self.namespace)
        for secret in listed.items:
            self._record(secret)
        assert listed.metadata is not None and listed.metadata.resource_version, "a list without a resourceVersion"
        return listed.metadata.resource_version

    def _run(self) -> None:
        try:
            version = self._list()
            while not self.stop.is_set():
                stream = watch.Watch().stream(
                    self.core.list_namespaced_secret, self.namespace, resource_version=version, timeout_seconds=5
                )
                for event in stream:
                    if event["type"] == "ERROR":  # the version expired: start over from a fresh list
                        self.relists += 1
                        version = self._list()
                        break
                    secret = event["object"]
                    found_version = meta(secret).resource_version
                    assert found_version is not None, "a watch event of an object without a resourceVersion"
                    version = found_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(secret)
        except BaseException as error:  # reported by the test, not lost in a thread
            self.error = error


@pytest.mark.slow
def test_75_certificates_renew_once_each_with_the_operator_killed_every_few_seconds(
    kube: Any, operator: Any, namespace: str
) -> None:
    history = SecretHistory(kube.api, namespace)
    history.thread.start()
    spec = {**mdep_spec(namespace), "security": {"tls": TLS}}
    names_ = [f"m{i:02d}" for i in range(MODELS)]
    chaos_until = time.monotonic() + CHAOS_SECONDS
    kills = 0
    rng = random.Random(75)
    created = 0
    while time.monotonic() < chaos_until:
        # Create the models in bursts between kills, so creation itself races the kills too.
        for name in names_[created : created + 15]:
            kube.create_mdep(namespace, name, spec)
        created = min(created + 15, MODELS)
        time.sleep(rng.uniform(2.0, 5.0))
        operator.kill()
        kills += 1
        operator.start()
    assert created == MODELS and kills >= 20

    # Left alone, the operator settles: every model has a current certificate and says so.
    def settled() -> bool:
        for name in names_:
            found = condition(get_mdep(kube, namespace, name), "CertificateReady")
            if not found or found["status"] != "True":
                return False
        return True

    wait_for("every CertificateReady=True", settled, timeout=120)
    time.sleep(5)
    history.stop.set()
    history.thread.join(timeout=30)
    assert history.error is None, history.error
    assert history.relists == 0, "the watch lost its place: certificates issued in between may be unseen"

    now = datetime.datetime.now(datetime.UTC)
    renewals = 0
    for name in names_:
        seen = history.seen[names.tls_secret(name)]
        assert seen, f"{name}: no certificate was ever issued"
        for before, after in itertools.pairwise(seen):
            due = certificates.renewal_time(before, ROTATE_BEFORE)
            issued_at = after.not_valid_before_utc + certificates.BACKDATE
            assert issued_at >= due, f"{name}: certificate issued at {issued_at}, before the renewal point {due}"
        renewals += len(seen) - 1
        current = seen[-1]
        assert now < certificates.renewal_time(current, ROTATE_BEFORE) + OVERDUE, f"{name}: renewal is stuck"
    # Most models lived through at least one renewal point during the chaos.
    assert renewals >= MODELS, f"only {renewals} renewals among {MODELS} models"
    # Hundreds of certificates and keys went through the operator: none of them reached its log.
    assert audit.find_key_material(operator.log()) is None
