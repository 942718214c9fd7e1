"""The TLS reconciler's two issuers and its client certificates, on an in-memory API server.

cert-manager mode: without the CRD it says what to install; with it, it applies the Certificate, mirrors
cert-manager's Ready condition and expiry, and hashes whatever Secret cert-manager wrote into the pod template.
Mutual TLS: one client certificate per allowed subject from the model's own client CA, readable by that subject
only, short-lived, and revoked when it leaves (its objects go and the client CA is replaced).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509

from kestrel.api import conditions
from kestrel.manifests import access, certificate, names, owners, secrets
from kestrel.reconcilers.security import tls
from kestrel.security import certificates, errors
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body, cert_manager_writes_secret, reconcile_tls

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
CERT_MANAGER_TLS = {"mode": "cert-manager", "issuerRef": {"name": "internal-ca"}, "rotateBefore": "240h"}
CERT_KEY = (certificate.API_VERSION, certificate.KIND, "vision", names.tls_secret("cams"))


def _with_crd(kube: FakeKube) -> None:
    kube.put(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": certificate.CRD},
        }
    )


def _condition(ctx: Any) -> tuple[str, str, str]:
    found = ctx.condition(conditions.CERTIFICATE_READY)
    assert found is not None
    return found.status, found.reason, found.message


def _cert_manager_writes(
    kube: FakeKube, *, ready: str, not_after: str, certificate_pem: bytes, with_ca: bool = True
) -> None:
    """What cert-manager does once its issuer signed: the Secret (marked with the Certificate's name), then the
    Certificate's status."""
    cert_manager_writes_secret(
        kube,
        {
            "tls.crt": certificate_pem,
            "tls.key": b"not read by the operator",
            **({"ca.crt": b"the issuer's CA"} if with_ca else {}),
        },
    )
    found = kube.objects[CERT_KEY]
    found["status"] = {
        "conditions": [{"type": "Ready", "status": ready, "reason": "Ready", "message": "Certificate is up to date"}],
        "notAfter": not_after,
        "renewalTime": "2026-03-21T08:00:00Z",
    }


def test_cert_manager_mode_without_the_crd_names_the_fix_and_applies_nothing() -> None:
    kube, obj = FakeKube(), body(CERT_MANAGER_TLS)
    ctx = reconcile_tls(kube, obj, NOW)
    status, reason, message = _condition(ctx)
    assert (status, reason) == ("False", "CertManagerMissing")
    assert "certificates.cert-manager.io" in message and "install cert-manager" in message
    assert "set spec.security.tls.mode to operator" in message
    assert sum(kube.applies.values()) == 0
    assert ctx.tls_checksum is None


def test_cert_manager_mode_applies_the_certificate_and_mirrors_its_readiness() -> None:
    kube, obj = FakeKube(), body(CERT_MANAGER_TLS)
    _with_crd(kube)
    ctx = reconcile_tls(kube, obj, NOW)
    applied = kube.objects[CERT_KEY]
    owner = owners.Owner.from_body(obj)
    assert applied == certificate.server_certificate(ctx.spec, owner)
    assert _condition(ctx)[:2] == ("False", "Pending")
    assert ctx.tls_checksum is None
    # No key of its own in cert-manager mode: the operator CA is never created.
    assert kube.get("v1", "Secret", SETTINGS.operator_namespace, secrets.CA_SECRET) is None

    ca = certificates.create_ca(now=NOW)
    first = certificates.issue_server(ca, name="cams", namespace="vision", now=NOW).certificate_pem()
    _cert_manager_writes(kube, ready="True", not_after="2026-05-30T08:00:00Z", certificate_pem=first)
    ctx = reconcile_tls(kube, obj, NOW)
    status, reason, message = _condition(ctx)
    assert (status, reason) == ("True", "Issued")
    assert "expires 2026-05-30T08:00:00Z" in message and "renews 2026-03-21T08:00:00Z" in message
    assert ctx.tls_checksum == tls.checksum(first)

    # cert-manager renews into the same Secret: the checksum, and so the pod template, follows.
    second = certificates.issue_server(ca, name="cams", namespace="vision", now=NOW).certificate_pem()
    _cert_manager_writes(kube, ready="True", not_after="2026-06-30T08:00:00Z", certificate_pem=second)
    renewed = reconcile_tls(kube, obj, NOW + datetime.timedelta(days=1))
    assert renewed.tls_checksum == tls.checksum(second) != tls.checksum(first)
    assert "expires 2026-06-30T08:00:00Z" in _condition(renewed)[2]


def test_a_failing_issuer_is_reported_with_cert_managers_reason() -> None:
    kube, obj = FakeKube(), body(CERT_MANAGER_TLS)
    _with_crd(kube)
    reconcile_tls(kube, obj, NOW)
    kube.objects[CERT_KEY]["status"] = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "DoesNotExist", "message": "Issuer internal-ca not found"}
        ]
    }
    ctx = reconcile_tls(kube, obj, NOW)
    status, reason, message = _condition(ctx)
    assert (status, reason) == ("False", "DoesNotExist")
    assert message == "cert-manager Certificate cams-tls is not ready: Issuer internal-ca not found"


def test_ready_without_the_secret_is_not_ready() -> None:
    kube, obj = FakeKube(), body(CERT_MANAGER_TLS)
    _with_crd(kube)
    reconcile_tls(kube, obj, NOW)
    kube.objects[CERT_KEY]["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}
    assert _condition(reconcile_tls(kube, obj, NOW))[:2] == ("False", "SecretMissing")


def test_an_issuer_that_writes_no_ca_is_not_ready_and_says_why() -> None:
    kube, obj = FakeKube(), body(CERT_MANAGER_TLS)
    _with_crd(kube)
    reconcile_tls(kube, obj, NOW)
    pem = certificates.issue_server(certificates.create_ca(now=NOW), name="cams", namespace="vision", now=NOW)
    _cert_manager_writes(
        kube, ready="True", not_after="2026-05-30T08:00:00Z", certificate_pem=pem.certificate_pem(), with_ca=False
    )
    status, reason, message = _condition(reconcile_tls(kube, obj, NOW))
    assert (status, reason) == ("False", "SecretMissing")
    assert "lacks ca.crt" in message


MUTUAL_ACCESS = {"allowedServiceAccounts": ["apps/camera-gateway", "apps/dashboard"], "allowedGroups": ["analysts"]}


def _client_secret(kube: FakeKube, obj: dict[str, Any], client: access.Client) -> dict[str, Any] | None:
    return kube.secret("vision", client.secret_name(owners.Owner.from_body(obj)))


def _client_ca(kube: FakeKube, name: str = "cams") -> x509.Certificate:
    secret = kube.secret("vision", names.client_ca_secret(name))
    assert secret is not None
    return x509.load_pem_x509_certificate(secrets.decode(secret, "tls.crt"))


def _certificate(secret: dict[str, Any] | None) -> x509.Certificate:
    assert secret is not None
    return x509.load_pem_x509_certificate(secrets.decode(secret, "tls.crt"))


def test_mutual_tls_issues_one_client_certificate_per_subject_readable_by_that_subject_only() -> None:
    kube, obj = FakeKube(), body({"mutual": True}, MUTUAL_ACCESS)
    ctx = reconcile_tls(kube, obj, NOW)
    ca_secret = kube.get("v1", "Secret", SETTINGS.operator_namespace, secrets.CA_SECRET)
    assert ca_secret is not None
    operator_ca = x509.load_pem_x509_certificate(secrets.decode(ca_secret, "tls.crt"))
    client_ca = _client_ca(kube)
    owner = owners.Owner.from_body(obj)
    clients = access.mtls_clients(ctx.spec)
    assert [c.subject for c in clients] == [
        "Group analysts",
        "ServiceAccount apps/camera-gateway",
        "ServiceAccount apps/dashboard",
    ]
    for client in clients:
        secret = _client_secret(kube, obj, client)
        issued = _certificate(secret)
        assert secret is not None
        # Signed by the model's own client CA, and by nothing the operator CA vouches for.
        assert certificates.verify_client(issued, client_ca, now=NOW) == [client.common_name]
        with pytest.raises(errors.CertificateError):
            certificates.verify_client(issued, operator_ca, now=NOW)
        assert issued.not_valid_after_utc - NOW <= tls.CLIENT_VALIDITY  # (not before: backdated for clock skew)
        # The CA in the client's Secret is the one that verifies the server.
        assert secrets.decode(secret, "ca.crt") == secrets.decode(ca_secret, "tls.crt")
        certificates.Issued.from_pem(secrets.decode(secret, "tls.crt"), secrets.decode(secret, "tls.key"))
        role = kube.get("rbac.authorization.k8s.io/v1", "Role", "vision", client.secret_name(owner))
        binding = kube.get("rbac.authorization.k8s.io/v1", "RoleBinding", "vision", client.secret_name(owner))
        assert role is not None and binding is not None
        assert role["rules"][0]["resourceNames"] == [client.secret_name(owner)]
        assert binding["subjects"] == [client.rbac_subject()]
    assert "client certificates for Group analysts" in _condition(ctx)[2]
    assert sum(e[1] == "CertificateIssued" for e in kube.events) == 4
    assert sum(e[1] == "ClientAuthorityCreated" for e in kube.events) == 1


def test_a_client_certificate_of_one_model_is_not_signed_by_anothers_client_ca() -> None:
    kube = FakeKube()
    first = body({"mutual": True}, {"allowedServiceAccounts": ["apps/gw"]}, name="cams")
    second = body({"mutual": True}, {"allowedServiceAccounts": ["apps/gw"]}, name="doors")
    reconcile_tls(kube, first, NOW)
    reconcile_tls(kube, second, NOW)
    gateway = access.Client("ServiceAccount", "gw", "apps")
    of_first = _certificate(_client_secret(kube, first, gateway))
    assert certificates.verify_client(of_first, _client_ca(kube, "cams"), now=NOW) == [gateway.common_name]
    with pytest.raises(errors.CertificateError):
        certificates.verify_client(of_first, _client_ca(kube, "doors"), now=NOW)


def test_client_certificates_are_renewed_well_before_they_expire() -> None:
    kube, obj = FakeKube(), body({"mutual": True}, {"allowedServiceAccounts": ["apps/gw"]})
    reconcile_tls(kube, obj, NOW)
    gateway = access.Client("ServiceAccount", "gw", "apps")
    first = _certificate(_client_secret(kube, obj, gateway))
    reconcile_tls(kube, obj, NOW + tls.CLIENT_VALIDITY * 0.5)
    assert _certificate(_client_secret(kube, obj, gateway)) == first
    reconcile_tls(kube, obj, NOW + tls.CLIENT_VALIDITY * 0.7)
    renewed = _certificate(_client_secret(kube, obj, gateway))
    assert renewed != first and renewed.not_valid_after_utc > first.not_valid_after_utc
    assert kube.events[-1][1] == "CertificateRenewed"


def test_a_subject_removed_from_the_spec_loses_its_client_certificate_and_its_ca() -> None:
    """Its objects go, and the client CA that signed its still unexpired certificate is replaced: the pod template
    changes (the pods roll onto the new CA) and the subjects still allowed get certificates from the new one."""
    kube, obj = FakeKube(), body({"mutual": True}, MUTUAL_ACCESS)
    before = reconcile_tls(kube, obj, NOW)
    dashboard = access.Client("ServiceAccount", "dashboard", "apps")
    gateway = access.Client("ServiceAccount", "camera-gateway", "apps")
    revoked = _certificate(_client_secret(kube, obj, dashboard))
    old_ca = _client_ca(kube)
    obj["spec"]["security"]["access"]["allowedServiceAccounts"] = ["apps/camera-gateway"]
    later = NOW + datetime.timedelta(minutes=1)
    after = reconcile_tls(kube, obj, later)
    name = dashboard.secret_name(owners.Owner.from_body(obj))
    assert _client_secret(kube, obj, dashboard) is None
    for kind in ("Role", "RoleBinding"):
        assert kube.get("rbac.authorization.k8s.io/v1", kind, "vision", name) is None
    assert ("ClientCertificateRevoked", "Revoked the client certificate of ServiceAccount apps/dashboard") in [
        e[1:] for e in kube.events
    ]
    new_ca = _client_ca(kube)
    assert new_ca != old_ca
    assert any(e[1] == "ClientAuthorityReplaced" for e in kube.events)
    with pytest.raises(errors.CertificateError):
        certificates.verify_client(revoked, new_ca, now=later)
    assert after.tls_checksum != before.tls_checksum
    kept = _certificate(_client_secret(kube, obj, gateway))
    assert certificates.verify_client(kept, new_ca, now=later) == [gateway.common_name]


def test_adding_a_subject_keeps_the_client_ca_and_the_others_certificates() -> None:
    kube, obj = FakeKube(), body({"mutual": True}, {"allowedServiceAccounts": ["apps/camera-gateway"]})
    before = reconcile_tls(kube, obj, NOW)
    gateway = access.Client("ServiceAccount", "camera-gateway", "apps")
    issued = _certificate(_client_secret(kube, obj, gateway))
    old_ca = _client_ca(kube)
    obj["spec"]["security"]["access"] = MUTUAL_ACCESS
    after = reconcile_tls(kube, obj, NOW + datetime.timedelta(minutes=1))
    assert _client_ca(kube) == old_ca and after.tls_checksum == before.tls_checksum
    assert _certificate(_client_secret(kube, obj, gateway)) == issued


def test_removing_every_subject_revokes_every_client_certificate() -> None:
    kube, obj = FakeKube(), body({"mutual": True}, MUTUAL_ACCESS)
    reconcile_tls(kube, obj, NOW)
    obj["spec"]["security"]["access"] = {}
    reconcile_tls(kube, obj, NOW + datetime.timedelta(minutes=1))
    owner = owners.Owner.from_body(obj)
    assert kube.list("rbac.authorization.k8s.io/v1", "Role", "vision", labels=access.client_selector(owner)) == []
    client_ca = names.client_ca_secret("cams")
    assert [s for (_, kind, _, s) in kube.objects if kind == "Secret" and "-client-" in s and s != client_ca] == []
    assert sum(e[1] == "ClientCertificateRevoked" for e in kube.events) == 3


def test_cert_manager_mode_issues_client_certificates_from_the_models_client_ca() -> None:
    """cert-manager issues the server certificate; client certificates come from the model's own client CA, as in
    operator mode, carrying the CA cert-manager wrote to verify the server."""
    kube, obj = FakeKube(), body({**CERT_MANAGER_TLS, "mutual": True}, {"allowedServiceAccounts": ["apps/gw"]})
    _with_crd(kube)
    reconcile_tls(kube, obj, NOW)
    server = certificates.issue_server(certificates.create_ca(now=NOW), name="cams", namespace="vision", now=NOW)
    _cert_manager_writes(kube, ready="True", not_after="2026-05-30T08:00:00Z", certificate_pem=server.certificate_pem())
    ctx = reconcile_tls(kube, obj, NOW)
    client = access.Client("ServiceAccount", "gw", "apps")
    owner = owners.Owner.from_body(obj)
    assert kube.get(certificate.API_VERSION, certificate.KIND, "vision", client.secret_name(owner)) is None
    secret = _client_secret(kube, obj, client)
    assert secret is not None and secrets.decode(secret, "ca.crt") == b"the issuer's CA"
    assert certificates.verify_client(_certificate(secret), _client_ca(kube), now=NOW) == [client.common_name]
    assert kube.get("rbac.authorization.k8s.io/v1", "Role", "vision", client.secret_name(owner)) is not None
    assert _condition(ctx)[:2] == ("True", "Issued")


def test_switching_from_cert_manager_to_the_operator_ca_retires_the_certificate() -> None:
    kube, obj = FakeKube(), body(CERT_MANAGER_TLS)
    _with_crd(kube)
    reconcile_tls(kube, obj, NOW)
    other_ca = certificates.create_ca(now=NOW)
    issued = certificates.issue_server(other_ca, name="cams", namespace="vision", now=NOW).certificate_pem()
    _cert_manager_writes(kube, ready="True", not_after="2026-05-30T08:00:00Z", certificate_pem=issued, with_ca=False)
    kube.objects[("v1", "Secret", "vision", names.tls_secret("cams"))]["metadata"]["annotations"] = {
        tls.CERT_MANAGER_ANNOTATION: names.tls_secret("cams")
    }
    obj["spec"]["security"]["tls"] = {"mode": "operator"}
    ctx = reconcile_tls(kube, obj, NOW)
    assert CERT_KEY not in kube.objects
    assert kube.events[-1][1] == "CertificateReissued"
    assert _condition(ctx)[:2] == ("True", "Issued")
    assert ctx.tls_checksum != tls.checksum(issued)
