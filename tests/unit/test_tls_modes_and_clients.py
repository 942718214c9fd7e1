"""The TLS reconciler's two issuers and its client certificates, on an in-memory API server.

cert-manager mode: without the CRD it says what to install; with it, it applies the Certificate, mirrors
cert-manager's Ready condition and expiry, and hashes whatever Secret cert-manager wrote into the pod template.
Mutual TLS: one client certificate per allowed subject, readable by that subject only, revoked when it leaves.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509

from kestrel.api import conditions
from kestrel.manifests import access, certificate, names, secrets
from kestrel.manifests import context as manifest_context
from kestrel.reconcilers import tls
from kestrel.security import certificates
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body, reconcile_tls

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
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": names.tls_secret("cams"),
                "namespace": "vision",
                "annotations": {tls.CERT_MANAGER_ANNOTATION: names.tls_secret("cams")},
            },
            "data": {
                "tls.crt": base64.b64encode(certificate_pem).decode(),
                "tls.key": base64.b64encode(b"not read by the operator").decode(),
                **({"ca.crt": base64.b64encode(b"the issuer's CA").decode()} if with_ca else {}),
            },
        }
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
    owner = manifest_context.Owner.from_body(obj)
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
    return kube.secret("vision", client.secret_name(manifest_context.Owner.from_body(obj)))


def test_mutual_tls_issues_one_client_certificate_per_subject_readable_by_that_subject_only() -> None:
    kube, obj = FakeKube(), body({"mutual": True}, MUTUAL_ACCESS)
    ctx = reconcile_tls(kube, obj, NOW)
    ca_secret = kube.get("v1", "Secret", SETTINGS.operator_namespace, secrets.CA_SECRET)
    assert ca_secret is not None
    ca = x509.load_pem_x509_certificate(secrets.decode(ca_secret, "tls.crt"))
    owner = manifest_context.Owner.from_body(obj)
    clients = access.mtls_clients(ctx.spec)
    assert [c.subject for c in clients] == [
        "Group analysts",
        "ServiceAccount apps/camera-gateway",
        "ServiceAccount apps/dashboard",
    ]
    for client in clients:
        secret = _client_secret(kube, obj, client)
        assert secret is not None
        issued = x509.load_pem_x509_certificate(secrets.decode(secret, "tls.crt"))
        assert certificates.verify_client(issued, ca, now=NOW) == [client.common_name]
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


def test_a_subject_removed_from_the_spec_loses_its_client_certificate() -> None:
    kube, obj = FakeKube(), body({"mutual": True}, MUTUAL_ACCESS)
    reconcile_tls(kube, obj, NOW)
    dashboard = access.Client("ServiceAccount", "dashboard", "apps")
    gateway = access.Client("ServiceAccount", "camera-gateway", "apps")
    assert _client_secret(kube, obj, dashboard) is not None
    obj["spec"]["security"]["access"]["allowedServiceAccounts"] = ["apps/camera-gateway"]
    issued_before = dict(kube.applies)
    reconcile_tls(kube, obj, NOW + datetime.timedelta(minutes=1))
    name = dashboard.secret_name(manifest_context.Owner.from_body(obj))
    assert _client_secret(kube, obj, dashboard) is None
    for kind in ("Role", "RoleBinding"):
        assert kube.get("rbac.authorization.k8s.io/v1", kind, "vision", name) is None
    assert kube.events[-1][1:] == (
        "ClientCertificateRevoked",
        "Revoked the client certificate of ServiceAccount apps/dashboard",
    )
    # The others keep theirs, not reissued.
    gateway_key = ("v1", "Secret", "vision", gateway.secret_name(manifest_context.Owner.from_body(obj)))
    assert kube.applies[gateway_key] == issued_before[gateway_key] == 1


def test_removing_every_subject_revokes_every_client_certificate() -> None:
    kube, obj = FakeKube(), body({"mutual": True}, MUTUAL_ACCESS)
    reconcile_tls(kube, obj, NOW)
    obj["spec"]["security"]["access"] = {}
    reconcile_tls(kube, obj, NOW + datetime.timedelta(minutes=1))
    owner = manifest_context.Owner.from_body(obj)
    assert kube.list("rbac.authorization.k8s.io/v1", "Role", "vision", labels=access.client_selector(owner)) == []
    assert [s for (_, kind, _, s) in kube.objects if kind == "Secret" and "-client-" in s] == []
    assert sum(e[1] == "ClientCertificateRevoked" for e in kube.events) == 3


def test_cert_manager_mode_issues_client_certificates_through_cert_manager() -> None:
    kube, obj = FakeKube(), body({**CERT_MANAGER_TLS, "mutual": True}, {"allowedServiceAccounts": ["apps/gw"]})
    _with_crd(kube)
    ctx = reconcile_tls(kube, obj, NOW)
    client = access.Client("ServiceAccount", "gw", "apps")
    owner = manifest_context.Owner.from_body(obj)
    found = kube.get(certificate.API_VERSION, certificate.KIND, "vision", client.secret_name(owner))
    assert found == certificate.client_certificate(ctx.spec, owner, client)
    assert found["spec"]["usages"] == ["digital signature", "client auth"]
    assert _client_secret(kube, obj, client) is None  # cert-manager writes it, not the operator
    assert kube.get("rbac.authorization.k8s.io/v1", "Role", "vision", client.secret_name(owner)) is not None


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
