"""Each model's CA bundle ConfigMap holds the CA that verifies its server certificate, and nothing secret.

In operator mode that is the operator's CA; in cert-manager mode the ca.crt cert-manager wrote; with TLS off the
bundle goes. The model's readers may get it by name (tests/unit/test_manifests_access.py).
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509

from kestrel.manifests import names, secrets
from kestrel.security import certificates
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body, cert_manager_writes_secret, reconcile_tls

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
BUNDLE = ("v1", "ConfigMap", "vision", names.ca_bundle("cams"))


def _bundle(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[BUNDLE]


def test_operator_mode_publishes_the_ca_that_verifies_the_server_and_no_key() -> None:
    kube = FakeKube()
    reconcile_tls(kube, body({"mode": "operator"}), NOW)
    bundle = _bundle(kube)
    assert set(bundle["data"]) == {"ca.crt"} and "PRIVATE KEY" not in bundle["data"]["ca.crt"]
    assert bundle["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    ca = x509.load_pem_x509_certificate(bundle["data"]["ca.crt"].encode())
    operator_ca = kube.get("v1", "Secret", SETTINGS.operator_namespace, secrets.CA_SECRET)
    server_secret = kube.secret("vision", names.tls_secret("cams"))
    assert operator_ca is not None and server_secret is not None, "the TLS pass wrote no CA or no server Secret"
    assert ca == x509.load_pem_x509_certificate(secrets.decode(operator_ca, "tls.crt"))
    server = x509.load_pem_x509_certificate(secrets.decode(server_secret, "tls.crt"))
    server.verify_directly_issued_by(ca)  # what a client does with the bundle


def test_cert_manager_mode_publishes_the_issuers_ca_once_it_is_written() -> None:
    kube, obj = FakeKube(), body({"mode": "cert-manager", "issuerRef": {"name": "internal-ca"}})
    kube.put(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "certificates.cert-manager.io"},
        }
    )
    reconcile_tls(kube, obj, NOW)
    assert BUNDLE not in kube.objects  # nothing to publish before cert-manager wrote its Secret
    ca = certificates.create_ca(now=NOW)
    issued = certificates.issue_server(ca, name="cams", namespace="vision", now=NOW)
    cert_manager_writes_secret(
        kube,
        {"tls.crt": issued.certificate_pem(), "tls.key": issued.private_key_pem(), "ca.crt": ca.certificate_pem()},
    )
    reconcile_tls(kube, obj, NOW)
    assert _bundle(kube)["data"] == {"ca.crt": ca.certificate_pem().decode()}


def test_turning_tls_off_deletes_the_bundle() -> None:
    kube = FakeKube()
    reconcile_tls(kube, body({"mode": "operator"}), NOW)
    assert BUNDLE in kube.objects
    reconcile_tls(kube, body({"mode": "disabled"}), NOW)
    assert BUNDLE not in kube.objects
