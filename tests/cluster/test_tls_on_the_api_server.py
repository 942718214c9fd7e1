"""TLS objects on the real API server: cert-manager mode against a Certificate CRD, and mutual-TLS client
certificates from the model's own client CA that only their own subject may read.

cert-manager itself cannot run here, so a minimal Certificate CRD stands in for it and the test plays
cert-manager's part: it writes the Secret and sets the Certificate's status. The first tests run the operator's
own pass (`run.reconcile`) in process, one pass per step, so each step's outcome is read without waiting on a
timer; the last runs `kestrel run` as a subprocess under the chart's RBAC.
"""

from __future__ import annotations

import base64
import datetime
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client
from kubernetes.client import exceptions

from kestrel import settings as operator_settings
from kestrel.kube import client as kube_client
from kestrel.manifests import access, certificate, names, owners
from kestrel.reconcilers import run
from kestrel.reconcilers.security import tls
from kestrel.security import audit, certificates
from tests.cluster.operator_support import condition, get_mdep, mdep_spec, name_of, wait_for

CRD_FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "certificates.cert-manager.io.yaml"
SETTINGS = operator_settings.Settings(engine_store="s3://engines/kestrel")
NOW = datetime.datetime.now(datetime.UTC)


def _crd_gone(kube: Any) -> None:
    extensions = client.ApiextensionsV1Api(kube.api)
    try:
        extensions.delete_custom_resource_definition(certificate.CRD)
    except exceptions.ApiException as error:
        if error.status != 404:
            raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            extensions.read_custom_resource_definition(certificate.CRD)
        except exceptions.ApiException as error:
            if error.status == 404:
                return
            raise
        time.sleep(0.3)
    raise AssertionError(f"{certificate.CRD} was not deleted within 60s")


@pytest.fixture
def no_cert_manager(kube: Any) -> Iterator[None]:
    """The test bed without cert-manager's CRD, before and after the test (other suites expect none)."""
    _crd_gone(kube)
    yield
    _crd_gone(kube)


def _install_crd(kube: Any) -> None:
    kube.kubectl("apply", "--server-side", "--field-manager=kestrel-tests", "-f", str(CRD_FIXTURE))
    kube.wait_established(certificate.CRD)
    # Established is not yet served: wait until the resource answers a list.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if kube.kubectl("get", "certificates.cert-manager.io", "-A", check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError("certificates.cert-manager.io is not served")


def _reconcile(kube: Any, namespace: str, name: str, now: datetime.datetime = NOW) -> Any:
    return run.reconcile(kube_client.Kube(kube.api), get_mdep(kube, namespace, name), SETTINGS, now)


def _can_get(kube: Any, namespace: str, secret: str, account: str) -> bool:
    done = kube.kubectl(
        "auth",
        "can-i",
        "get",
        f"secret/{secret}",
        f"--namespace={namespace}",
        f"--as=system:serviceaccount:{namespace}:{account}",
        check=False,
    )
    return bool(done.stdout.strip() == "yes")


def _certificate(kube: Any, namespace: str, name: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = kube.custom.get_namespaced_custom_object(
            "cert-manager.io", "v1", namespace, "certificates", name
        )
    except exceptions.ApiException as error:
        if missing_ok and error.status == 404:
            return None
        raise
    return found


def _write_tls_secret(kube: Any, namespace: str, name: str, pair: certificates.Issued, ca: certificates.Issued) -> None:
    """The Secret cert-manager writes for a Certificate once its issuer signed it, marked with its name."""
    data = {"tls.crt": pair.certificate_pem(), "tls.key": pair.private_key_pem(), "ca.crt": ca.certificate_pem()}
    kube.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": name, "annotations": {tls.CERT_MANAGER_ANNOTATION: name}},
            "type": "kubernetes.io/tls",
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        },
    )


def test_cert_manager_mode_applies_certificates_and_mirrors_readiness(
    with_crd: Any, no_cert_manager: None, namespace: str
) -> None:
    kube = with_crd
    raw = {
        **mdep_spec(namespace),
        "security": {
            "tls": {
                "mode": "cert-manager",
                "mutual": True,
                "duration": "720h",
                "rotateBefore": "240h",
                "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
            },
            "access": {"allowedServiceAccounts": [f"{namespace}/gateway"]},
        },
    }
    kube.create_mdep(namespace, "cams", raw)

    # Without the CRD: nothing applied, and the condition says what to install.
    _reconcile(kube, namespace, "cams")
    missing = condition(get_mdep(kube, namespace, "cams"), "CertificateReady")
    assert missing is not None
    assert (missing["status"], missing["reason"]) == ("False", "CertManagerMissing")
    assert "install cert-manager" in missing["message"]

    # With it: the server Certificate, applied by the kestrel field manager; client certificates come from the
    # model's own client CA, once the server's Secret holds the CA they verify the server with.
    _install_crd(kube)
    _reconcile(kube, namespace, "cams")
    server = _certificate(kube, namespace, names.tls_secret("cams"))
    assert server is not None
    assert server["spec"]["secretName"] == names.tls_secret("cams")
    assert server["spec"]["dnsNames"] == certificates.service_dns_names("cams", namespace)
    assert server["spec"]["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert (server["spec"]["duration"], server["spec"]["renewBefore"]) == ("720h", "240h")
    assert {m["manager"] for m in server["metadata"]["managedFields"]} == {"kestrel"}
    owner = owners.Owner.from_body(get_mdep(kube, namespace, "cams"))
    gateway = access.Client("ServiceAccount", "gateway", namespace)
    assert _certificate(kube, namespace, gateway.secret_name(owner), missing_ok=True) is None
    pending = condition(get_mdep(kube, namespace, "cams"), "CertificateReady")
    assert pending is not None and (pending["status"], pending["reason"]) == ("False", "Pending")

    # cert-manager's part: the issuer signed, the Secret is written, the Certificate turns Ready.
    ca = certificates.create_ca(now=NOW)
    issued = certificates.issue_server(ca, name="cams", namespace=namespace, now=NOW)
    not_after = issued.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, pair in ((names.tls_secret("cams"), issued),):
        _write_tls_secret(kube, namespace, name, pair, ca)
        kube.custom.patch_namespaced_custom_object_status(
            "cert-manager.io",
            "v1",
            namespace,
            "certificates",
            name,
            {
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "up to date"}],
                    "notAfter": not_after,
                    "renewalTime": "2030-01-01T00:00:00Z",
                }
            },
        )
    ctx = _reconcile(kube, namespace, "cams")
    ready = condition(get_mdep(kube, namespace, "cams"), "CertificateReady")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Issued")
    assert f"expires {not_after}" in ready["message"]
    client_ca = kube.core.read_namespaced_secret(names.client_ca_secret("cams"), namespace).data
    authority = certificates.Issued.from_pem(
        base64.b64decode(client_ca["tls.crt"]), base64.b64decode(client_ca["tls.key"])
    )
    assert ctx.tls_checksum == tls.checksum(issued.certificate_pem(), authority)
    gateway_secret = kube.core.read_namespaced_secret(gateway.secret_name(owner), namespace).data
    gateway_certificate = x509.load_pem_x509_certificate(base64.b64decode(gateway_secret["tls.crt"]))
    assert certificates.verify_client(gateway_certificate, authority.certificate, now=NOW) == [gateway.common_name]
    assert base64.b64decode(gateway_secret["ca.crt"]) == ca.certificate_pem()  # the CA that verifies the server

    # Only the allowed ServiceAccount may read its client certificate.
    assert _can_get(kube, namespace, gateway.secret_name(owner), "gateway")
    assert not _can_get(kube, namespace, gateway.secret_name(owner), "default")

    # A renewal rewrites the Secret: the checksum the pod template carries follows it.
    renewed = certificates.issue_server(ca, name="cams", namespace=namespace, now=NOW)
    kube.core.patch_namespaced_secret(
        names.tls_secret("cams"),
        namespace,
        {"data": {"tls.crt": base64.b64encode(renewed.certificate_pem()).decode()}},
    )
    after = _reconcile(kube, namespace, "cams")
    assert after.tls_checksum == tls.checksum(renewed.certificate_pem(), authority) != ctx.tls_checksum


def test_mutual_tls_client_certificates_are_readable_by_their_subject_only(with_crd: Any, namespace: str) -> None:
    kube = with_crd
    kube.kubectl("create", "namespace", SETTINGS.operator_namespace, check=False)
    raw = {
        **mdep_spec(namespace),
        "security": {
            "tls": {"mutual": True},
            "access": {"allowedServiceAccounts": [f"{namespace}/gateway", f"{namespace}/dashboard"]},
        },
    }
    kube.create_mdep(namespace, "cams", raw)
    _reconcile(kube, namespace, "cams")
    owner = owners.Owner.from_body(get_mdep(kube, namespace, "cams"))
    gateway = access.Client("ServiceAccount", "gateway", namespace).secret_name(owner)
    dashboard = access.Client("ServiceAccount", "dashboard", namespace).secret_name(owner)
    assert _can_get(kube, namespace, gateway, "gateway")
    assert not _can_get(kube, namespace, dashboard, "gateway")
    assert _can_get(kube, namespace, dashboard, "dashboard")
    assert not _can_get(kube, namespace, gateway, "default")
    ready = condition(get_mdep(kube, namespace, "cams"), "CertificateReady")
    assert ready is not None and ready["status"] == "True"

    # Dropping a subject revokes its certificate and its access.
    kube.custom.patch_namespaced_custom_object(
        "kestrel.dev",
        "v1alpha1",
        namespace,
        "modeldeployments",
        "cams",
        {"spec": {"security": {"access": {"allowedServiceAccounts": [f"{namespace}/gateway"]}}}},
    )
    _reconcile(kube, namespace, "cams")
    left = {name_of(s) for s in kube.core.list_namespaced_secret(namespace).items}
    assert gateway in left and dashboard not in left
    assert not _can_get(kube, namespace, dashboard, "dashboard")


def test_the_running_operator_under_the_charts_rbac_drives_a_cert_manager_certificate(
    with_crd: Any, no_cert_manager: None, operator: Any, namespace: str
) -> None:
    """The same path through `kestrel run` as a subprocess: the chart's rules must let it apply the Certificate."""
    kube = with_crd
    _install_crd(kube)
    raw = {
        **mdep_spec(namespace),
        "security": {"tls": {"mode": "cert-manager", "issuerRef": {"name": "internal-ca"}}},
    }
    kube.create_mdep(namespace, "cams", raw)
    name = names.tls_secret("cams")

    def applied() -> dict[str, Any] | None:
        try:
            return _certificate(kube, namespace, name)
        except exceptions.ApiException as error:
            if error.status == 404:
                return None
            raise

    found = wait_for("the operator to apply the Certificate", applied, timeout=60)
    assert found["spec"]["secretName"] == name
    assert "renewBefore" not in found["spec"]  # cert-manager's default: two-thirds of the duration

    def certificate_ready() -> dict[str, Any] | None:
        return condition(get_mdep(kube, namespace, "cams"), "CertificateReady")

    pending = wait_for(
        "CertificateReady=False Pending", lambda: (c := certificate_ready()) and c["reason"] == "Pending" and c
    )
    assert pending["status"] == "False"

    ca = certificates.create_ca(now=NOW)
    issued = certificates.issue_server(ca, name="cams", namespace=namespace, now=NOW)
    _write_tls_secret(kube, namespace, name, issued, ca)
    not_after = issued.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.custom.patch_namespaced_custom_object_status(
        "cert-manager.io",
        "v1",
        namespace,
        "certificates",
        name,
        {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}], "notAfter": not_after}},
    )
    ready = wait_for("CertificateReady=True", lambda: (c := certificate_ready()) and c["status"] == "True" and c)
    assert ready["reason"] == "Issued"
    assert f"expires {not_after}" in ready["message"]
    log = operator.log()
    assert "Forbidden" not in log
    assert audit.find_key_material(log) is None
