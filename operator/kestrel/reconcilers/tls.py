"""TLS: the server certificate Triton presents, issued by the operator's CA and renewed before it expires;
owns CertificateReady.

The certificate's digest goes into the pod template (`Context.tls_checksum`), so a renewal rolls the pods
one at a time (maxUnavailable 0) and no client sees an expired certificate.
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509

from kestrel.api import base, conditions, errors
from kestrel.manifests import context as manifest_context
from kestrel.manifests import names, secrets
from kestrel.reconcilers import context
from kestrel.security import certificates


def _authority(ctx: context.Context, settings: manifest_context.Settings) -> certificates.Issued:
    """The operator CA, created on first use; a concurrent creation by another pass wins and is read back."""
    found = ctx.kube.get("v1", "Secret", settings.operator_namespace, secrets.CA_SECRET)
    if found is None:
        ca = certificates.create_ca(now=ctx.now)
        try:
            ctx.kube.apply(
                secrets.certificate_authority(settings, ca.certificate_pem(), ca.private_key_pem()), force=False
            )
            return ca
        except errors.ConflictError:
            found = ctx.kube.get("v1", "Secret", settings.operator_namespace, secrets.CA_SECRET)
            if found is None:
                raise
    return certificates.Issued.from_pem(secrets.decode(found, "tls.crt"), secrets.decode(found, "tls.key"))


def _needs_new(
    current: dict[str, object] | None, ca: certificates.Issued, ctx: context.Context, rotate_before: float | None
) -> str | None:
    """Why the server certificate must be (re)issued, or None when it is good."""
    if current is None:
        return "Issued"
    certificate = x509.load_pem_x509_certificate(secrets.decode(current, "tls.crt"))
    if certificate.issuer != ca.certificate.subject or secrets.decode(current, "ca.crt") != ca.certificate_pem():
        return "Reissued"
    before = datetime.timedelta(seconds=rotate_before) if rotate_before is not None else None
    if certificates.renewal_due(certificate, ctx.now, before):
        return "Renewed"
    return None


def reconcile(ctx: context.Context, settings: manifest_context.Settings) -> None:
    tls = ctx.spec.security.tls
    if tls.mode == "disabled":
        ctx.set(conditions.CERTIFICATE_READY, "False", conditions.DISABLED, "spec.security.tls.mode is disabled")
        return
    if tls.mode == "cert-manager":
        ctx.set(
            conditions.CERTIFICATE_READY,
            "False",
            "Unsupported",
            "spec.security.tls.mode cert-manager is not supported by this Kestrel version: use mode operator",
        )
        return
    ca = _authority(ctx, settings)
    secret_name = names.tls_secret(ctx.name)
    current = ctx.kube.get("v1", "Secret", ctx.namespace, secret_name)
    rotate_before = base.parse_duration(tls.rotate_before) if tls.rotate_before else None
    why = _needs_new(current, ca, ctx, rotate_before)
    if why is not None:
        issued = certificates.issue_server(
            ca,
            name=names.service(ctx.name),
            namespace=ctx.namespace,
            now=ctx.now,
            validity=datetime.timedelta(seconds=base.parse_duration(tls.duration)),
        )
        owner = manifest_context.Owner.from_body(ctx.body)
        current = ctx.kube.apply(
            secrets.tls(owner, issued.certificate_pem(), issued.private_key_pem(), ca.certificate_pem())
        )
        ctx.event("Normal", f"Certificate{why}", f"{why} certificate in Secret {secret_name}", "Certificate")
    assert current is not None
    certificate_pem = secrets.decode(current, "tls.crt")
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    ctx.tls_checksum = hashlib.sha256(certificate_pem).hexdigest()[:16]
    expires = certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    renews = certificates.renewal_time(
        certificate, datetime.timedelta(seconds=rotate_before) if rotate_before is not None else None
    ).strftime("%Y-%m-%dT%H:%M:%SZ")
    ctx.set(conditions.CERTIFICATE_READY, "True", "Issued", f"Certificate expires {expires}, renews {renews}")
