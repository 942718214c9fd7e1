"""The operator CA issues certificates that verify as TLS peers would; renewal runs on a fake clock."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kestrel.security import certificates, errors

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca() -> certificates.Issued:
    return certificates.create_ca(now=NOW)


@pytest.fixture(scope="module")
def server(ca: certificates.Issued) -> certificates.Issued:
    return certificates.issue_server(
        ca, name="cams", namespace="vision", now=NOW, extra_sans=["cams.example.com", "10.0.0.7", "::1"]
    )


def sans(issued: certificates.Issued) -> x509.SubjectAlternativeName:
    return issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_service_dns_names() -> None:
    assert certificates.service_dns_names("cams", "vision") == [
        "cams",
        "cams.vision",
        "cams.vision.svc",
        "cams.vision.svc.cluster.local",
    ]
    assert certificates.service_dns_names("a", "b", "corp.internal")[-1] == "a.b.svc.corp.internal"


def test_server_certificate_names_every_service_name_and_the_extras(server: certificates.Issued) -> None:
    names = sans(server)
    assert names.get_values_for_type(x509.DNSName) == [
        "cams",
        "cams.vision",
        "cams.vision.svc",
        "cams.vision.svc.cluster.local",
        "cams.example.com",
    ]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("::1")]


def test_keys_are_p256_and_the_ca_is_a_constrained_ca(ca: certificates.Issued, server: certificates.Issued) -> None:
    for issued in (ca, server):
        key = issued.certificate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    assert not server.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize(
    "dns_name", ["cams", "cams.vision", "cams.vision.svc", "cams.vision.svc.cluster.local", "cams.example.com"]
)
def test_the_server_chain_verifies_for_each_name(
    ca: certificates.Issued, server: certificates.Issued, dns_name: str
) -> None:
    certificates.verify_server(server.certificate, ca.certificate, dns_name=dns_name, now=NOW + DAY)


def test_the_server_certificate_does_not_verify_for_other_names(
    ca: certificates.Issued, server: certificates.Issued
) -> None:
    with pytest.raises(errors.CertificateError, match=r"other\.vision\.svc"):
        certificates.verify_server(server.certificate, ca.certificate, dns_name="other.vision.svc", now=NOW + DAY)


def test_another_ca_does_not_verify(server: certificates.Issued) -> None:
    stranger = certificates.create_ca(now=NOW, common_name="Someone else")
    with pytest.raises(errors.CertificateError):
        certificates.verify_server(server.certificate, stranger.certificate, dns_name="cams", now=NOW + DAY)


def test_an_expired_certificate_does_not_verify(ca: certificates.Issued, server: certificates.Issued) -> None:
    after = server.certificate.not_valid_after_utc + datetime.timedelta(seconds=1)
    with pytest.raises(errors.CertificateError):
        certificates.verify_server(server.certificate, ca.certificate, dns_name="cams", now=after)


def test_a_client_certificate_verifies_for_mutual_tls_and_not_as_a_server(ca: certificates.Issued) -> None:
    client = certificates.issue_client(ca, common_name="detector.apps", now=NOW)
    assert certificates.verify_client(client.certificate, ca.certificate, now=NOW + DAY) == ["detector.apps"]
    with pytest.raises(errors.CertificateError, match="EKU"):
        certificates.verify_server(client.certificate, ca.certificate, dns_name="detector.apps", now=NOW + DAY)


def test_a_server_certificate_is_not_a_client_certificate(ca: certificates.Issued, server: certificates.Issued) -> None:
    with pytest.raises(errors.CertificateError, match="client certificate"):
        certificates.verify_client(server.certificate, ca.certificate, now=NOW + DAY)


def test_a_client_certificate_from_another_ca_is_refused(ca: certificates.Issued) -> None:
    stranger = certificates.create_ca(now=NOW)
    client = certificates.issue_client(stranger, common_name="intruder", now=NOW)
    with pytest.raises(errors.CertificateError):
        certificates.verify_client(client.certificate, ca.certificate, now=NOW + DAY)


def test_pem_round_trip(ca: certificates.Issued, server: certificates.Issued) -> None:
    loaded = certificates.Issued.from_pem(server.certificate_pem(), server.private_key_pem())
    assert loaded.certificate == server.certificate
    assert server.certificate_pem().startswith(b"-----BEGIN CERTIFICATE-----")
    assert server.private_key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    chain = certificates.load_certificates(server.certificate_pem() + ca.certificate_pem())
    assert chain == [server.certificate, ca.certificate]


def test_a_mismatched_key_is_refused(ca: certificates.Issued, server: certificates.Issued) -> None:
    with pytest.raises(errors.CertificateError, match="does not belong"):
        certificates.Issued.from_pem(server.certificate_pem(), ca.private_key_pem())


@pytest.mark.parametrize("name", ["Upper.Case", "under_score", "-leading", "a..b", "sp ace", "x" * 64])
def test_bad_extra_sans_are_refused(ca: certificates.Issued, name: str) -> None:
    with pytest.raises(errors.CertificateError, match="not a lowercase DNS name"):
        certificates.issue_server(ca, name="cams", namespace="vision", now=NOW, extra_sans=[name])


def test_a_certificate_cannot_outlive_its_ca(ca: certificates.Issued) -> None:
    with pytest.raises(errors.CertificateError, match="CA expires"):
        certificates.issue_server(ca, name="cams", namespace="vision", now=NOW, validity=20 * 365 * DAY)


def test_naive_clocks_are_refused(ca: certificates.Issued) -> None:
    with pytest.raises(ValueError, match="timezone"):
        certificates.issue_client(ca, common_name="x", now=NOW.replace(tzinfo=None))


# --- renewal on a fake clock -------------------------------------------------------------------------------------


def test_lifetime_and_backdating(server: certificates.Issued) -> None:
    assert server.certificate.not_valid_before_utc == NOW - certificates.BACKDATE
    assert server.certificate.not_valid_after_utc == NOW + certificates.DEFAULT_VALIDITY


def test_renewal_defaults_to_two_thirds_of_the_lifetime_and_never_earlier(server: certificates.Issued) -> None:
    start = server.certificate.not_valid_before_utc
    lifetime = server.certificate.not_valid_after_utc - start
    point = start + lifetime * 2 // 3
    assert certificates.renewal_time(server.certificate) == point
    second = datetime.timedelta(seconds=1)
    for now in (start, NOW, NOW + 59 * DAY, point - second):
        assert not certificates.renewal_due(server.certificate, now)
    for now in (point, point + second, server.certificate.not_valid_after_utc + DAY):
        assert certificates.renewal_due(server.certificate, now)


def test_rotate_before_moves_the_renewal_point(server: certificates.Issued) -> None:
    end = server.certificate.not_valid_after_utc
    rotate_before = 7 * DAY
    assert certificates.renewal_time(server.certificate, rotate_before) == end - rotate_before
    assert not certificates.renewal_due(
        server.certificate, end - rotate_before - datetime.timedelta(seconds=1), rotate_before
    )
    assert certificates.renewal_due(server.certificate, end - rotate_before, rotate_before)


@pytest.mark.parametrize("rotate_before", [datetime.timedelta(0), -DAY, 90 * DAY, 365 * DAY])
def test_a_rotate_before_that_would_renew_forever_falls_back_to_two_thirds(
    server: certificates.Issued, rotate_before: datetime.timedelta
) -> None:
    assert certificates.renewal_time(server.certificate, rotate_before) == certificates.renewal_time(server.certificate)
    assert not certificates.renewal_due(server.certificate, NOW, rotate_before)


def test_a_renewed_certificate_is_not_due_again_at_once(ca: certificates.Issued, server: certificates.Issued) -> None:
    due = certificates.renewal_time(server.certificate)
    renewed = certificates.issue_server(ca, name="cams", namespace="vision", now=due)
    assert not certificates.renewal_due(renewed.certificate, due)
    assert renewed.certificate.serial_number != server.certificate.serial_number


def test_renewal_due_refuses_a_naive_clock(server: certificates.Issued) -> None:
    with pytest.raises(ValueError, match="timezone"):
        certificates.renewal_due(server.certificate, NOW.replace(tzinfo=None))


def test_fingerprint_is_a_tagged_digest(server: certificates.Issued) -> None:
    assert certificates.fingerprint(server.certificate).startswith("sha256:")
    assert len(certificates.fingerprint(server.certificate)) == len("sha256:") + 64
