"""The operator CA is created once: a pass that lost the race to create it uses the winner's, and replaces nothing.

Passes of several new models start at once on a fresh install; each reads no CA and makes one. Before, the slower
pass's write replaced the CA that the faster one had already signed certificates with, and those were reissued on
a later pass (10 of 1,000 models in a scale run, each a second rollout).
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509

from kestrel.manifests import names, secrets
from kestrel.security import certificates
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body, reconcile_tls

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)


class LostTheRace(FakeKube):
    """The CA Secret exists, but this pass's first read of it came before another pass created it."""

    def __init__(self) -> None:
        super().__init__()
        self.stale_ca_reads = 1

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str, **options: Any
    ) -> dict[str, Any] | None:
        if name == secrets.CA_SECRET and self.stale_ca_reads:
            self.stale_ca_reads -= 1
            return None
        return super().get(api_version, kind, namespace, name, **options)


def test_a_pass_that_lost_the_race_issues_from_the_winners_ca() -> None:
    kube = LostTheRace()
    winner = certificates.create_ca(now=NOW)
    kube.put(secrets.certificate_authority(SETTINGS, winner.certificate_pem(), winner.private_key_pem()))

    reconcile_tls(kube, body({}), NOW)

    assert kube.stale_ca_reads == 0, "the pass read the CA before creating one"
    stored = kube.get("v1", "Secret", SETTINGS.operator_namespace, secrets.CA_SECRET)
    assert stored is not None and secrets.decode(stored, "tls.crt") == winner.certificate_pem()
    server = kube.secret("vision", names.tls_secret("cams"))
    assert server is not None
    assert secrets.decode(server, "ca.crt") == winner.certificate_pem()
    x509.load_pem_x509_certificate(secrets.decode(server, "tls.crt")).verify_directly_issued_by(winner.certificate)


def test_the_first_pass_creates_the_ca_it_issues_from() -> None:
    kube = FakeKube()
    reconcile_tls(kube, body({}), NOW)
    stored = kube.get("v1", "Secret", SETTINGS.operator_namespace, secrets.CA_SECRET)
    server = kube.secret("vision", names.tls_secret("cams"))
    assert stored is not None and server is not None
    ca = x509.load_pem_x509_certificate(secrets.decode(stored, "tls.crt"))
    x509.load_pem_x509_certificate(secrets.decode(server, "tls.crt")).verify_directly_issued_by(ca)
