"""A new certificate, from the operator CA or from cert-manager, changes the serving pod template (and so rolls
the pods); a pass that changes nothing keeps the template as it is."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kestrel.manifests import certificate, labels, names, owners, triton
from kestrel.reconcilers import context
from kestrel.reconcilers.security import tls
from kestrel.reconcilers.serving import serving
from kestrel.security import certificates
from tests.unit.tls_fake_kube import SETTINGS, FakeKube, body, cert_manager_writes_secret

T0 = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
ENGINE_KEY = "ab" * 32
DEPLOYMENT = ("apps/v1", "Deployment", "vision", names.triton("cams"))


def _pass(kube: FakeKube, obj: dict[str, Any], now: datetime.datetime) -> str | None:
    """TLS then serving, as one operator pass runs them; the rolled-out template's checksum annotation."""
    ctx = context.Context.load(kube, obj, now)
    tls.reconcile(ctx, SETTINGS)
    serving.reconcile(ctx, SETTINGS)
    obj["status"] = ctx.status.to_wire()
    deployment = kube.get(*DEPLOYMENT)
    assert deployment is not None, f"no Deployment: {ctx.status.conditions}"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[labels.ENGINE_KEY_ANNOTATION] == ENGINE_KEY
    found: str | None = annotations.get(labels.TLS_CHECKSUM_ANNOTATION)
    return found


def _serving(kube: FakeKube, obj: dict[str, Any]) -> None:
    """A ModelDeployment whose engine is validated and current, with the Secrets its pods mount in place."""
    obj["status"] = {"revision": {"current": ENGINE_KEY}}
    pod = triton.deployment(
        context.Context.load(kube, obj, T0).spec,
        owners.Owner.from_body(obj),
        SETTINGS,
        ENGINE_KEY,
    )["spec"]["template"]["spec"]
    for name in serving.referenced_secrets(pod) - {names.tls_secret("cams")}:
        kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "vision"}, "data": {}})


def test_an_operator_renewal_changes_the_template_and_nothing_else_does() -> None:
    kube, obj = FakeKube(), body({"duration": "90m", "rotateBefore": "30m"})
    _serving(kube, obj)
    first = _pass(kube, obj, T0)
    assert first is not None
    assert _pass(kube, obj, T0 + datetime.timedelta(minutes=59, seconds=59)) == first
    renewed = _pass(kube, obj, T0 + datetime.timedelta(minutes=60))
    assert renewed not in (None, first)


@pytest.mark.parametrize("rewrite", ["renewal", "same-content"])
def test_a_secret_cert_manager_rewrites_changes_the_template_only_when_its_content_changes(rewrite: str) -> None:
    kube, obj = FakeKube(), body({"mode": "cert-manager", "issuerRef": {"name": "ca"}})
    _serving(kube, obj)
    kube.put(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": certificate.CRD},
        }
    )
    ca = certificates.create_ca(now=T0)

    def cert_manager_issues() -> bytes:
        pem = certificates.issue_server(ca, name="cams", namespace="vision", now=T0).certificate_pem()
        cert_manager_writes_secret(kube, {"tls.crt": pem, "ca.crt": ca.certificate_pem()})
        return pem

    first_pem = cert_manager_issues()
    first = _pass(kube, obj, T0)
    assert first == tls.checksum(first_pem)
    if rewrite == "renewal":
        second_pem = cert_manager_issues()
        assert _pass(kube, obj, T0) == tls.checksum(second_pem) != first
    else:
        assert _pass(kube, obj, T0) == first
