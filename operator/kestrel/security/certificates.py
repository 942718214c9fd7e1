"""The operator CA, the certificates it issues, and when to renew them.

Every function takes `now` explicitly: issuing and renewal are pure, so the rotation timer and its tests run on
any clock. Keys are ECDSA P-256 (small, fast handshakes, accepted by Triton's gRPC/OpenSSL and every client).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import oid, verification

from kestrel.security import errors

DEFAULT_CA_VALIDITY = datetime.timedelta(days=5 * 365)
DEFAULT_VALIDITY = datetime.timedelta(days=90)
# Certificates start slightly in the past so a peer whose clock lags a little does not reject a fresh one.
BACKDATE = datetime.timedelta(minutes=1)
_DNS_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


@dataclasses.dataclass(frozen=True)
class Issued:
    """A certificate with its private key; the CA is one too."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def private_key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, certificate_pem: bytes, private_key_pem: bytes) -> Issued:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise errors.CertificateError("the private key is not an ECDSA key")
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        if certificate.public_key() != key.public_key():
            raise errors.CertificateError("the private key does not belong to the certificate")
        return cls(certificate, key)


def service_dns_names(name: str, namespace: str, cluster_domain: str = "cluster.local") -> list[str]:
    """The names a client inside the cluster may use for Service `name` in `namespace`."""
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.{cluster_domain}"]


def create_ca(
    *,
    now: datetime.datetime,
    common_name: str = "Kestrel operator CA",
    validity: datetime.timedelta = DEFAULT_CA_VALIDITY,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, common_name)])
    builder = (
        _base(subject, key.public_key(), now, validity)
        .issuer_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    return Issued(builder.sign(key, hashes.SHA256()), key)


def issue_server(
    ca: Issued,
    *,
    name: str,
    namespace: str,
    now: datetime.datetime,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    extra_sans: Iterable[str] = (),
    cluster_domain: str = "cluster.local",
) -> Issued:
    """A TLS server certificate for Service `name` in `namespace`, plus `extra_sans` (DNS names or IPs)."""
    names = service_dns_names(name, namespace, cluster_domain)
    sans = _subject_alternative_names([*names, *extra_sans])
    return _issue(
        ca, common_name=names[2], sans=sans, usage=oid.ExtendedKeyUsageOID.SERVER_AUTH, now=now, validity=validity
    )


def issue_client(
    ca: Issued, *, common_name: str, now: datetime.datetime, validity: datetime.timedelta = DEFAULT_VALIDITY
) -> Issued:
    """A client certificate for mutual TLS; `common_name` (a DNS-style name) is also its SAN."""
    sans = _subject_alternative_names([common_name])
    return _issue(
        ca, common_name=common_name, sans=sans, usage=oid.ExtendedKeyUsageOID.CLIENT_AUTH, now=now, validity=validity
    )


def renewal_time(certificate: x509.Certificate, rotate_before: datetime.timedelta | None = None) -> datetime.datetime:
    """When to renew: `rotate_before` ahead of expiry, or at two-thirds of the lifetime.

    A `rotate_before` that is not positive or not shorter than the lifetime would renew at issuance, forever; like
    cert-manager's renewBefore, it then falls back to the two-thirds default.
    """
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    lifetime = end - start
    # The backdating minute does not count: a rotate_before equal to the requested validity renews at issuance.
    if rotate_before is None or rotate_before <= datetime.timedelta(0) or end - rotate_before <= start + BACKDATE:
        return start + lifetime * 2 // 3
    return end - rotate_before


def renewal_due(
    certificate: x509.Certificate, now: datetime.datetime, rotate_before: datetime.timedelta | None = None
) -> bool:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now >= renewal_time(certificate, rotate_before)


def verify_server(
    certificate: x509.Certificate,
    ca_certificate: x509.Certificate,
    *,
    dns_name: str,
    now: datetime.datetime,
    intermediates: Sequence[x509.Certificate] = (),
) -> None:
    """Verify the chain to `ca_certificate` for a TLS server named `dns_name`, as a client would."""
    builder = verification.PolicyBuilder().store(verification.Store([ca_certificate])).time(now)
    verifier = builder.build_server_verifier(x509.DNSName(dns_name))
    try:
        verifier.verify(certificate, list(intermediates))
    except verification.VerificationError as error:
        raise errors.CertificateError(f"server certificate does not verify for {dns_name}: {error}") from None


def verify_client(
    certificate: x509.Certificate,
    ca_certificate: x509.Certificate,
    *,
    now: datetime.datetime,
    intermediates: Sequence[x509.Certificate] = (),
) -> list[str]:
    """Verify a client certificate's chain as a mutual-TLS server would; return its DNS SANs."""
    builder = verification.PolicyBuilder().store(verification.Store([ca_certificate])).time(now)
    try:
        verified = builder.build_client_verifier().verify(certificate, list(intermediates))
    except verification.VerificationError as error:
        raise errors.CertificateError(f"client certificate does not verify: {error}") from None
    sans = verified.subjects or []
    return [san.value for san in sans if isinstance(san, x509.DNSName)]


def fingerprint(certificate: x509.Certificate) -> str:
    """A log-safe identity: "sha256:<hex>" of the DER (the audit guard accepts tagged digests)."""
    return "sha256:" + hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _issue(
    ca: Issued,
    *,
    common_name: str,
    sans: x509.SubjectAlternativeName,
    usage: x509.ObjectIdentifier,
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    subject = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, common_name[:64])])
    not_after = _second(now) + validity
    if not_after > ca.certificate.not_valid_after_utc:
        raise errors.CertificateError("the CA expires before the requested certificate would; rotate the CA first")
    builder = (
        _base(subject, key.public_key(), now, validity)
        .issuer_name(ca.certificate.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(sans, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    return Issued(builder.sign(ca.private_key, hashes.SHA256()), key)


def _base(
    subject: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime.datetime, validity: datetime.timedelta
) -> x509.CertificateBuilder:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    start = _second(now)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alternative_names(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if len(name) > 253 or not _DNS_NAME.match(name):
            raise errors.CertificateError(f"not a lowercase DNS name or IP address: {name!r}")
        entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _second(moment: datetime.datetime) -> datetime.datetime:
    # X.509 times have whole seconds; truncating here keeps renewal arithmetic equal to what the certificate says.
    return moment.astimezone(datetime.UTC).replace(microsecond=0)
