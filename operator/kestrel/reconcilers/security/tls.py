"""TLS: the server certificate Triton presents and, with mutual TLS, one client certificate per allowed subject;
owns CertificateReady.

The server certificate: `operator` mode issues it from the operator's CA and renews it before it expires;
`cert-manager` mode applies a cert-manager `Certificate` that issues into the same Secret name.

Client certificates, in both modes, come from the model's own client CA (`names.client_ca_secret`), the only CA
its Triton accepts clients of: a certificate issued for one model opens no other, whatever the subject names.
They live CLIENT_VALIDITY and are renewed at two thirds of it. When a subject leaves the spec, its objects go and
the client CA is replaced in the same pass (the others are reissued from the new one): the pods roll onto the new
CA, and the removed subject's certificate, still unexpired, stops working.

Clients verify the server with the CA in the model's CA bundle ConfigMap (`names.ca_bundle`), which holds no key:
the CA that signed the server certificate in either mode, rewritten when it changes, deleted when TLS is off.

The digests of the server certificate and of the client CA go into the pod template (`Context.tls_checksum`), so a
renewal or a revocation rolls the pods one at a time (maxUnavailable 0) and no client sees an expired certificate.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from kestrel import operator_metrics
from kestrel import settings as operator_settings
from kestrel.api import base, conditions, errors
from kestrel.kube import ownership
from kestrel.manifests import access, certificate, names, owners, secrets, trust
from kestrel.reconcilers import context, installed
from kestrel.reconcilers.security import generated
from kestrel.security import certificates

Body = dict[str, Any]
CRD_API = "apiextensions.k8s.io/v1"
CERT_MANAGER_MISSING = "CertManagerMissing"
CERT_MANAGER_ANNOTATION = "cert-manager.io/certificate-name"  # set by cert-manager on every Secret it issues
# Short enough that a leaked client certificate is worth hours, long enough that a client rereading its Secret
# every few minutes never holds an expired one.
CLIENT_VALIDITY = datetime.timedelta(hours=12)


def _timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rotate_before(ctx: context.Context) -> datetime.timedelta | None:
    text = ctx.spec.security.tls.rotate_before
    return datetime.timedelta(seconds=base.parse_duration(text)) if text else None


def _authority(ctx: context.Context, settings: operator_settings.Settings) -> certificates.Issued:
    """The operator CA, created on first use; a concurrent creation by another pass wins and is read back."""
    # Kestrel alone writes the CA: what a recent pass read is still it.
    found = ctx.kube.get(
        "v1",
        "Secret",
        settings.operator_namespace,
        secrets.CA_SECRET,
        cached=True,
        trust=context.OPERATOR_WIDE_TRUST,
    )
    if found is None:
        ca = certificates.create_ca(now=ctx.now)
        try:
            # Create, not apply: passes of several new models race here, and an apply (same field manager) by the
            # slower one would replace the CA the faster one has already issued certificates from.
            ctx.kube.create(secrets.certificate_authority(settings, ca.certificate_pem(), ca.private_key_pem()))
            return ca
        except errors.ConflictError:
            found = ctx.kube.get("v1", "Secret", settings.operator_namespace, secrets.CA_SECRET)
            if found is None:
                raise
    return certificates.Issued.from_pem(secrets.decode(found, "tls.crt"), secrets.decode(found, "tls.key"))


def _signed_by(issued: x509.Certificate, ca: certificates.Issued) -> bool:
    """Whether `ca`'s key signed `issued`: a replaced CA keeps its name, so the name alone proves nothing."""
    try:
        issued.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _needs_new(
    current: Body | None,
    signer: certificates.Issued,
    ca_pem: bytes,
    now: datetime.datetime,
    rotate_before: datetime.timedelta | None,
) -> str | None:
    """Why a certificate Secret must be (re)issued, or None when it is good: signed by `signer`, carrying `ca_pem`
    (the CA its holder verifies the other side with) and not due for renewal."""
    if current is None or "tls.crt" not in current.get("data", {}):
        return "Issued"
    issued = x509.load_pem_x509_certificate(secrets.decode(current, "tls.crt"))
    # A Secret written by another issuer (cert-manager before a mode change) may lack ca.crt altogether.
    found_ca = secrets.decode(current, "ca.crt") if "ca.crt" in current["data"] else None
    if not _signed_by(issued, signer) or found_ca != ca_pem:
        return "Reissued"
    if certificates.renewal_due(issued, now, rotate_before):
        return "Renewed"
    return None


def _ensure(
    ctx: context.Context,
    signer: certificates.Issued,
    name: str,
    *,
    ca_pem: bytes,
    rotate_before: datetime.timedelta | None,
    issue: Callable[[], certificates.Issued],
    build: Callable[[certificates.Issued], Body],
    what: str,
) -> Body:
    """The Secret `name` holding a good certificate: read it, or issue and apply a new one (one per renewal)."""
    unreported = False
    if ctx.first_pass:
        created = _create(ctx, name, issue, build, what)
        if created is not None:
            return created
        unreported = True  # made by a first pass that stopped before saying so
    # Operator mode: Kestrel alone writes these Secrets (a mode change is a spec change, whose pass trusts nothing).
    current = ctx.kube.get("v1", "Secret", ctx.namespace, name, cached=True)
    from_cert_manager = current is not None and _issued_for(current, name)
    if current is not None and not ownership.owned_by(current, ctx.uid):
        _adopt_from_cert_manager(ctx, current, name)
    why = _needs_new(current, signer, ca_pem, ctx.now, rotate_before)
    if why is None:
        assert current is not None
        stored = current
        if unreported:
            found = x509.load_pem_x509_certificate(secrets.decode(current, "tls.crt"))
            _issued(ctx, "Issued", what, found, name, made=generated.Made.UNREPORTED)
    else:
        issued = issue()
        stored = ctx.kube.apply(build(issued))
        _issued(ctx, why, what, issued.certificate, name)
    if from_cert_manager:
        # The mode changed from cert-manager: its Certificate would go on rewriting the Secret the operator now owns.
        ctx.kube.delete(certificate.API_VERSION, certificate.KIND, ctx.namespace, name, owner=ctx.uid)
    return stored


def _issued_for(secret: Body, name: str) -> bool:
    """Whether cert-manager wrote `secret` for a Certificate called `name` (it marks every Secret it issues)."""
    return bool(secret["metadata"].get("annotations", {}).get(CERT_MANAGER_ANNOTATION) == name)


def _adopt_from_cert_manager(ctx: context.Context, secret: Body, name: str) -> None:
    """A certificate Secret the model does not own is written over only when cert-manager issued it for the model's
    own Certificate (the mode changed from cert-manager); any other stops the pass (NameConflictError)."""
    found = (
        ctx.kube.get(certificate.API_VERSION, certificate.KIND, ctx.namespace, name)
        if _issued_for(secret, name)
        else None
    )
    if found is None or not ownership.owned_by(found, ctx.uid):
        raise ownership.conflict(secret)
    ctx.kube.adopt(secret, ctx.uid)


def _create(
    ctx: context.Context,
    name: str,
    issue: Callable[[], certificates.Issued],
    build: Callable[[certificates.Issued], Body],
    what: str,
) -> Body | None:
    """A model's first pass has no Secret to read: create it. None when one is there (a first pass that was
    killed after writing it): that one is read and judged as on any pass, not replaced by a second issuance."""
    issued = issue()
    try:
        stored = ctx.kube.create(build(issued))
    except errors.ConflictError:
        return None
    _issued(ctx, "Issued", what, issued.certificate, name)
    return stored


def _issued(
    ctx: context.Context,
    why: str,
    what: str,
    issued: x509.Certificate,
    name: str,
    *,
    made: generated.Made = generated.Made.CREATED,
) -> None:
    said = f"{why} {what} certificate {certificates.fingerprint(issued)} in Secret {name}"
    ctx.event("Normal", f"Certificate{why}", made.said(said), "Certificate")


def _client_authority(ctx: context.Context, owner: owners.Owner, clients: list[access.Client]) -> certificates.Issued:
    """The model's own client CA: made on first need, and replaced when a subject it signed for left the spec.

    Its Secret lists (an annotation) every client it has signed for, written before any new client's certificate
    is issued: a pass cut short never leaves a certificate its CA does not know of.
    """
    name = names.client_ca_secret(ctx.name)
    wanted = {client.label for client in clients}
    current = ctx.kube.get("v1", "Secret", ctx.namespace, name, cached=True)
    # A CA the model does not own may be someone's who kept its key: never sign with it (NameConflictError).
    ownership.require(current, ctx.uid)
    why = "Created"
    if current is not None and {"tls.crt", "tls.key"} <= set(current.get("data") or {}):
        ca = certificates.Issued.from_pem(secrets.decode(current, "tls.crt"), secrets.decode(current, "tls.key"))
        signed = secrets.annotated(current, secrets.ISSUED_TO_ANNOTATION)
        if not signed - wanted:
            if wanted - signed:
                ctx.kube.apply(
                    secrets.client_authority(owner, ca.certificate_pem(), ca.private_key_pem(), signed | wanted)
                )
            return ca
        why = "Replaced"
    ca = certificates.create_ca(now=ctx.now, common_name=f"Kestrel client CA {ctx.name}"[:64])
    ctx.kube.apply(secrets.client_authority(owner, ca.certificate_pem(), ca.private_key_pem(), wanted))
    ctx.event(
        "Normal",
        f"ClientAuthority{why}",
        f"{why} the client CA {certificates.fingerprint(ca.certificate)} in Secret {name}"
        + (": certificates of removed subjects stop working once the pods roll" if why == "Replaced" else ""),
        "Certificate",
    )
    return ca


def _client_certificates(ctx: context.Context, owner: owners.Owner, server_ca_pem: bytes) -> certificates.Issued | None:
    """Under mutual TLS: each allowed subject's certificate from the model's client CA (returned), its Role and
    binding, and the revocation of subjects no longer allowed. None without mutual TLS."""
    if not ctx.spec.security.tls.mutual:
        return None
    clients = access.mtls_clients(ctx.spec)
    # Revoked subjects' objects go before the CA is replaced: nothing of theirs is signed by the new one.
    _prune_clients(ctx, owner, clients)
    authority = _client_authority(ctx, owner, clients)
    validity = min(CLIENT_VALIDITY, datetime.timedelta(seconds=base.parse_duration(ctx.spec.security.tls.duration)))
    for client in clients:
        _ensure(
            ctx,
            authority,
            client.secret_name(owner),
            ca_pem=server_ca_pem,
            rotate_before=None,
            issue=functools.partial(
                certificates.issue_client, authority, common_name=client.common_name, now=ctx.now, validity=validity
            ),
            build=functools.partial(_client_secret, owner, client, server_ca_pem),
            what=f"client ({client.subject})",
        )
        _grant(ctx, owner, client)
    return authority


def _operator_mode(ctx: context.Context, settings: operator_settings.Settings, owner: owners.Owner) -> None:
    ca = _authority(ctx, settings)
    validity = datetime.timedelta(seconds=base.parse_duration(ctx.spec.security.tls.duration))
    server = _ensure(
        ctx,
        ca,
        names.tls_secret(ctx.name),
        ca_pem=ca.certificate_pem(),
        rotate_before=_rotate_before(ctx),
        issue=lambda: certificates.issue_server(
            ca, name=names.service(ctx.name), namespace=ctx.namespace, now=ctx.now, validity=validity
        ),
        build=lambda issued: secrets.tls(
            owner, issued.certificate_pem(), issued.private_key_pem(), ca.certificate_pem()
        ),
        what="server",
    )
    clients = access.mtls_clients(ctx.spec)
    authority = _client_certificates(ctx, owner, ca.certificate_pem())
    ctx.kube.apply(trust.ca_bundle(owner, ca.certificate_pem()))
    certificate_pem = secrets.decode(server, "tls.crt")
    ctx.tls_checksum = checksum(certificate_pem, authority)
    issued = x509.load_pem_x509_certificate(certificate_pem)
    _announce_unreported(ctx, issued, names.tls_secret(ctx.name))
    _expires(ctx, issued)
    renews = certificates.renewal_time(issued, _rotate_before(ctx))
    ctx.set(
        conditions.CERTIFICATE_READY,
        "True",
        "Issued",
        f"Certificate {certificates.fingerprint(issued)} expires {_timestamp(issued.not_valid_after_utc)}, "
        f"renews {_timestamp(renews)}{_clients(clients)}",
    )


def _announce_unreported(ctx: context.Context, served: x509.Certificate, name: str) -> None:
    """Say which certificate is served when the last status reported another and no Event of this pass named it: a
    pass that issued it (a renewal, a reissue after the Secret's deletion) stopped between its write and its status
    write, so its Event was never sent (found by the fault campaign's crash points)."""
    reported = ctx.condition(conditions.CERTIFICATE_READY)
    found = re.match(r"Certificate (sha256:[0-9a-f]{64}) expires", reported.message) if reported else None
    fingerprint = certificates.fingerprint(served)
    if found is None or found.group(1) == fingerprint:
        return  # first reported now, or reported already (a status written before fingerprints: nothing to compare)
    if any(fingerprint in message for _, reason, message in ctx.events if reason.startswith("Certificate")):
        return  # issued and said by this pass
    _issued(ctx, "Issued", "server", served, name, made=generated.Made.UNREPORTED)


def _client_secret(
    owner: owners.Owner, client: access.Client, server_ca_pem: bytes, issued: certificates.Issued
) -> Body:
    return access.client_secret(owner, client, issued.certificate_pem(), issued.private_key_pem(), server_ca_pem)


def _cert_manager_mode(ctx: context.Context, owner: owners.Owner) -> None:
    if not installed.crd(ctx, certificate.CRD, required=True):
        ctx.set(
            conditions.CERTIFICATE_READY,
            "False",
            CERT_MANAGER_MISSING,
            f"spec.security.tls.mode is cert-manager, but the cluster has no {certificate.CRD} CRD: "
            "install cert-manager (https://cert-manager.io/docs/installation/), or set spec.security.tls.mode "
            "to operator",
        )
        return
    # cert-manager writes the Secret a Certificate names, whoever's it is: it must be the model's, or one that
    # cert-manager issued for the Certificate of that name (which the apply below only writes if it is the model's).
    secret_name = names.tls_secret(ctx.name)
    secret = ctx.kube.get("v1", "Secret", ctx.namespace, secret_name)
    _check_issued_secret(ctx, secret, secret_name)
    applied = ctx.kube.apply(certificate.server_certificate(ctx.spec, owner))
    clients = access.mtls_clients(ctx.spec)
    pending = [] if _ready(applied)[0] == "True" else [applied]
    data = (secret or {}).get("data") or {}
    lacking = [key for key in ("tls.crt", "tls.key", "ca.crt") if key not in data]
    # Clients verify the server with the CA cert-manager wrote beside its certificate: until it is there, their
    # certificates wait (the condition below says why); so does the CA bundle.
    authority = None
    if secret is not None and "ca.crt" in data:
        server_ca = secrets.decode(secret, "ca.crt")
        authority = _client_certificates(ctx, owner, server_ca)
        ctx.kube.apply(trust.ca_bundle(owner, server_ca))
    if secret is not None and "tls.crt" in data:
        # cert-manager rewrites the Secret on renewal: its new content changes the template and rolls the pods.
        certificate_pem = secrets.decode(secret, "tls.crt")
        ctx.tls_checksum = checksum(certificate_pem, authority)
        _expires(ctx, x509.load_pem_x509_certificate(certificate_pem))
    if pending:
        first = pending[0]
        _, reason, message = _ready(first)
        ctx.set(
            conditions.CERTIFICATE_READY,
            "False",
            reason,
            f"cert-manager Certificate {first['metadata']['name']} is not ready: {message}",
        )
        return
    if lacking:
        # Triton's gRPC TLS needs all three (the CA too, to verify mutual-TLS clients): an issuer that writes
        # no ca.crt (ACME) cannot serve here, and ACME cannot name in-cluster Services anyway.
        ctx.set(
            conditions.CERTIFICATE_READY,
            "False",
            "SecretMissing",
            f"cert-manager Certificate {secret_name} is Ready but Secret {secret_name} lacks {', '.join(lacking)}: "
            "use an issuer that writes ca.crt (CA, Vault or self-signed)",
        )
        return
    state = applied.get("status", {})
    ctx.set(
        conditions.CERTIFICATE_READY,
        "True",
        "Issued",
        f"Certificate expires {state.get('notAfter', 'at an unreported time')}, "
        f"renews {state.get('renewalTime', 'when cert-manager decides')} (cert-manager)" + _clients(clients),
    )


def _expires(ctx: context.Context, issued: x509.Certificate) -> None:
    operator_metrics.CERTIFICATE_EXPIRY.labels(ctx.namespace, ctx.name).set(issued.not_valid_after_utc.timestamp())


def _check_issued_secret(ctx: context.Context, secret: Body | None, name: str) -> None:
    if secret is not None and not ownership.owned_by(secret, ctx.uid) and not _issued_for(secret, name):
        raise ownership.conflict(secret)


def _ready(found: Body) -> tuple[conditions.ConditionStatus, str, str]:
    """cert-manager's Ready condition of a Certificate: (status, reason, message); Unknown before it reports."""
    for condition in found.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            state = condition.get("status", "Unknown")
            status: conditions.ConditionStatus = state if state in ("True", "False") else "Unknown"
            reason = str(condition.get("reason") or "NotReady")
            if not re.fullmatch(conditions.REASON_PATTERN, reason):
                reason = "NotReady"
            return status, reason, str(condition.get("message") or reason)
    return "Unknown", "Pending", "cert-manager has not reported on it yet"


def _grant(ctx: context.Context, owner: owners.Owner, client: access.Client) -> None:
    ctx.kube.apply(access.client_role(owner, client))
    ctx.kube.apply(access.client_role_binding(owner, client))


def _prune_clients(ctx: context.Context, owner: owners.Owner, clients: list[access.Client]) -> None:
    """Remove the objects of subjects no longer allowed (their certificates stop working when the client CA that
    signed them is replaced, `_client_authority`).

    Only while TLS is mutual: without it Triton asks for no client certificate, so a leftover one opens
    nothing (and the owner reference collects it with the model); turning mutual back on prunes again.
    The Role goes last: it is what marks a client as issued, so a pass cut short finishes the job next time.
    A cert-manager Certificate of the client (written by Kestrel before client certificates came from the model's
    own CA) goes too.
    Labels anyone can set: only a Role the model owns marks one of its clients, and of the objects named after it,
    only those the model owns go.
    """
    if not ctx.spec.security.tls.mutual:
        return
    keep = {client.secret_name(owner) for client in clients}
    for role in ctx.kube.list(
        "rbac.authorization.k8s.io/v1", "Role", ctx.namespace, labels=access.client_selector(owner)
    ):
        name = role["metadata"]["name"]
        if name in keep or not ownership.owned_by(role, owner.uid):
            continue
        subject = role["metadata"].get("annotations", {}).get(access.CLIENT_ANNOTATION, name)
        ctx.kube.delete("rbac.authorization.k8s.io/v1", "RoleBinding", ctx.namespace, name, owner=owner.uid)
        if installed.crd(ctx, certificate.CRD, required=False):
            ctx.kube.delete(certificate.API_VERSION, certificate.KIND, ctx.namespace, name, owner=owner.uid)
        ctx.kube.delete("v1", "Secret", ctx.namespace, name, owner=owner.uid)
        ctx.kube.delete("rbac.authorization.k8s.io/v1", "Role", ctx.namespace, name, owner=owner.uid)
        ctx.event("Normal", "ClientCertificateRevoked", f"Revoked the client certificate of {subject}", "Certificate")


def _clients(clients: list[access.Client]) -> str:
    return f"; client certificates for {', '.join(c.subject for c in clients)}" if clients else ""


def checksum(certificate_pem: bytes, client_authority: certificates.Issued | None = None) -> str:
    """What the pod template carries: a new server certificate, however issued, or a new client CA is a new
    template."""
    digest = hashlib.sha256(certificate_pem)
    if client_authority is not None:
        digest.update(client_authority.certificate_pem())
    return digest.hexdigest()[:16]


def reconcile(ctx: context.Context, settings: operator_settings.Settings) -> None:
    tls = ctx.spec.security.tls
    owner = owners.Owner.from_body(ctx.body)
    if tls.mode == "disabled":
        ctx.kube.delete("v1", "ConfigMap", ctx.namespace, names.ca_bundle(ctx.name), owner=owner.uid)
        operator_metrics.forget(operator_metrics.CERTIFICATE_EXPIRY, ctx.namespace, ctx.name)
        ctx.set(conditions.CERTIFICATE_READY, "False", conditions.DISABLED, "spec.security.tls.mode is disabled")
        return
    if tls.mode == "cert-manager":
        _cert_manager_mode(ctx, owner)
        return
    _operator_mode(ctx, settings, owner)
