"""Renewal on a fake clock: the TLS reconciler reissues exactly at the configured point, within the one pass
that sees it, never before, and once per renewal; the pod template's checksum changes only then."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from kestrel.api import conditions
from kestrel.manifests import access, names, owners, secrets
from kestrel.security import certificates
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body, reconcile_tls

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)
SERVER = names.tls_secret("cams")


def _server(kube: FakeKube) -> x509.Certificate:
    found = kube.secret("vision", SERVER)
    assert found is not None
    return x509.load_pem_x509_certificate(secrets.decode(found, "tls.crt"))


def _issuances(kube: FakeKube, name: str) -> int:
    return kube.applies[("v1", "Secret", "vision", name)]


# (tls spec, when renewal is due counted from T0). Certificates start one minute back (BACKDATE), and the
# default two-thirds is of that whole lifetime: 91 minutes * 2/3 = 60m40s after the start, so T0 + 59m40s.
CASES = [
    pytest.param({"duration": "90m"}, datetime.timedelta(minutes=59, seconds=40), id="default-two-thirds"),
    pytest.param({"duration": "90m", "rotateBefore": "10m"}, datetime.timedelta(minutes=80), id="rotate-before-10m"),
    pytest.param({"duration": "2160h"}, datetime.timedelta(hours=1440, seconds=-20), id="default-90-days"),
]


@pytest.mark.parametrize(("tls", "due"), CASES)
def test_renewal_fires_at_the_configured_point_and_never_earlier(tls: dict[str, str], due: datetime.timedelta) -> None:
    kube, obj = FakeKube(), body(tls)
    first = reconcile_tls(kube, obj, T0)
    assert _issuances(kube, SERVER) == 1
    original, checksum = _server(kube), first.tls_checksum
    assert checksum is not None
    # Passes all along the lifetime up to one second before the renewal point: nothing is reissued.
    step = due / 50
    for moment in [T0 + step * i for i in range(1, 50)] + [T0 + due - SECOND]:
        ctx = reconcile_tls(kube, obj, moment)
        assert _issuances(kube, SERVER) == 1, f"renewed early at {moment - T0} (due at {due})"
        assert ctx.tls_checksum == checksum
    # The one pass that sees the renewal point renews, once.
    renewing = reconcile_tls(kube, obj, T0 + due)
    assert _issuances(kube, SERVER) == 2
    renewed = _server(kube)
    assert renewed.serial_number != original.serial_number
    assert renewed.not_valid_before_utc == T0 + due - datetime.timedelta(minutes=1)
    assert renewing.tls_checksum not in (None, checksum)
    assert [e[1] for e in kube.events] == ["CertificateIssued", "CertificateRenewed"]
    # Later passes, even at the same instant, keep the renewed certificate.
    for moment in (T0 + due, T0 + due + SECOND, T0 + due + step):
        again = reconcile_tls(kube, obj, moment)
        assert again.tls_checksum == renewing.tls_checksum
    assert _issuances(kube, SERVER) == 2


def test_the_condition_reports_expiry_and_renewal_time() -> None:
    kube, obj = FakeKube(), body({"duration": "90m", "rotateBefore": "10m"})
    ctx = reconcile_tls(kube, obj, T0)
    ready = ctx.condition(conditions.CERTIFICATE_READY)
    assert ready is not None and ready.status == "True" and ready.reason == "Issued"
    served = _served(kube)
    assert ready.message == (
        f"Certificate {certificates.fingerprint(served)} expires 2026-03-01T09:30:00Z, renews 2026-03-01T09:20:00Z"
    )


def _served(kube: FakeKube) -> x509.Certificate:
    stored = kube.secret("vision", SERVER)
    assert stored is not None
    return x509.load_pem_x509_certificate(secrets.decode(stored, "tls.crt"))


def test_a_reissue_whose_pass_stopped_before_its_status_write_is_announced_by_the_next_pass() -> None:
    """The runbook's renewal (the Secret deleted), crashed between the new Secret and the status write (the fault
    campaign's crash points): its CertificateIssued was never sent. The next pass names the served certificate,
    once; without this the reissue went unsaid for good."""
    kube, obj = FakeKube(), body({"duration": "90m"})
    reconcile_tls(kube, obj, T0)
    kube.delete("v1", "Secret", "vision", SERVER, owner=None)
    kube.events.clear()
    stored = dict(obj["status"])
    reconcile_tls(kube, obj, T0 + SECOND)  # reissues, says so, and (here) never writes its status:
    obj["status"] = stored
    reissued = _served(kube)
    kube.events.clear()

    ctx = reconcile_tls(kube, obj, T0 + 2 * SECOND)

    said = [e for e in ctx.events if e[1].startswith("Certificate")]
    assert len(said) == 1 and said[0][1] == "CertificateIssued", said
    assert certificates.fingerprint(reissued) in said[0][2] and "stopped before saying so" in said[0][2]
    assert _issuances(kube, SERVER) == 2  # said, not issued again
    later = reconcile_tls(kube, obj, T0 + 3 * SECOND)
    assert not [e for e in later.events if e[1].startswith("Certificate")]


def test_client_certificates_renew_on_the_same_clock() -> None:
    access_spec = {"allowedServiceAccounts": ["apps/camera-gateway"]}
    kube, obj = FakeKube(), body({"duration": "90m", "mutual": True}, access_spec)
    reconcile_tls(kube, obj, T0)
    client = access.Client("ServiceAccount", "camera-gateway", "apps")
    secret = client.secret_name(owners.Owner.from_body(obj))
    assert _issuances(kube, secret) == 1
    reconcile_tls(kube, obj, T0 + datetime.timedelta(minutes=59, seconds=39))
    assert _issuances(kube, secret) == 1
    reconcile_tls(kube, obj, T0 + datetime.timedelta(minutes=59, seconds=40))
    assert _issuances(kube, secret) == 2


def test_a_new_operator_ca_reissues_at_once() -> None:
    kube, obj = FakeKube(), body({"duration": "90m"})
    reconcile_tls(kube, obj, T0)
    kube.delete("v1", "Secret", SETTINGS.operator_namespace, secrets.CA_SECRET, owner=None)
    reconcile_tls(kube, obj, T0 + datetime.timedelta(minutes=5))
    assert _issuances(kube, SERVER) == 2
    assert kube.events[-1][1] == "CertificateReissued"


def test_a_disabled_mode_issues_nothing() -> None:
    kube, obj = FakeKube(), body({"mode": "disabled"})
    ctx = reconcile_tls(kube, obj, T0)
    assert kube.objects == {}
    assert ctx.tls_checksum is None
    ready = ctx.condition(conditions.CERTIFICATE_READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", "Disabled")
