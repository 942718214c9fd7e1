"""The cert-manager Certificates and the mutual-TLS client objects, against reviewed golden YAML.

Regenerate after an intended change, then review the diff like code:

    KESTREL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_tls_certificate_manifest.py
"""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest
import yaml

from kestrel import settings as operator_settings
from kestrel.api import spec as specs
from kestrel.manifests import access, certificate, names, owners, transport, triton
from kestrel.security import certificates
from tests.unit import golden_support as golden
from tests.unit.spec_support import UNMEASURED

GOLDEN = pathlib.Path(__file__).parent / "golden" / "tls"
OWNER = owners.Owner(name="traffic", namespace="lab", uid="6f1c2a9e-0d4b-4c8e-9a57-3b2d1e0f4a6c", generation=3)
SETTINGS = operator_settings.Settings(engine_store="s3://kestrel-engines/lab", loader_image="loader:golden")
ENGINE_KEY = "5f3c9e0a" + "7d41b2c6" * 7
NOW = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)
GATEWAY = access.Client("ServiceAccount", "camera-gateway", "apps")
ANALYSTS = access.Client("Group", "traffic-analysts")


def _spec(tls: dict[str, Any], **access_spec: Any) -> specs.ModelDeploymentSpec:
    return specs.parse(
        {
            "model": {"source": {"uri": "pvc://models/traffic.pt"}},
            "validation": UNMEASURED,
            "engine": {"format": "onnx"},
            "security": {"tls": tls, "access": access_spec},
        }
    )


CERT_MANAGER = _spec(
    {
        "mode": "cert-manager",
        "mutual": True,
        "duration": "720h",
        "rotateBefore": "240h",
        "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
    },
    allowedGroups=["traffic-analysts"],
    allowedServiceAccounts=["apps/camera-gateway"],
)

RENDERED: dict[str, dict[str, Any]] = {
    "certificate-server": certificate.server_certificate(CERT_MANAGER, OWNER),
    "client-role": access.client_role(OWNER, GATEWAY),
    "client-role-binding": access.client_role_binding(OWNER, GATEWAY),
    "client-role-binding-group": access.client_role_binding(OWNER, ANALYSTS),
}


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_rendered_object_matches_golden_file(name: str) -> None:
    text = yaml.safe_dump(RENDERED[name], sort_keys=False, width=120)
    golden.check(GOLDEN / f"{name}.yaml", text, same=lambda expected: yaml.safe_load(expected) == RENDERED[name])


def test_no_stale_golden_files() -> None:
    assert not golden.stale(GOLDEN, "*.yaml", [GOLDEN / f"{name}.yaml" for name in RENDERED])


def test_the_server_certificate_issues_into_the_secret_the_pods_mount() -> None:
    body = certificate.server_certificate(CERT_MANAGER, OWNER)
    pod = triton.deployment(CERT_MANAGER, OWNER, SETTINGS, ENGINE_KEY)["spec"]["template"]["spec"]
    mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert body["spec"]["secretName"] == names.tls_secret(OWNER.name)
    assert body["spec"]["secretName"] in mounted
    assert body["spec"]["dnsNames"] == certificates.service_dns_names(names.service(OWNER.name), OWNER.namespace)
    assert body["spec"]["dnsNames"][-1] == "traffic.lab.svc.cluster.local"
    assert body["spec"]["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert (body["spec"]["duration"], body["spec"]["renewBefore"]) == ("720h", "240h")


def test_without_rotate_before_cert_manager_keeps_its_two_thirds_default() -> None:
    spec = _spec({"mode": "cert-manager", "issuerRef": {"name": "ca"}})
    body = certificate.server_certificate(spec, OWNER)
    assert "renewBefore" not in body["spec"]
    assert body["spec"]["duration"] == "2160h"


def test_every_allowed_subject_gets_its_own_client_and_only_with_mutual_tls() -> None:
    assert access.mtls_clients(CERT_MANAGER) == [ANALYSTS, GATEWAY]
    assert len({c.secret_name(OWNER) for c in (ANALYSTS, GATEWAY)}) == 2
    one_way = _spec({"mutual": False}, allowedServiceAccounts=["apps/camera-gateway"])
    assert access.mtls_clients(one_way) == []


def test_a_client_role_grants_get_on_its_own_secret_only() -> None:
    role = access.client_role(OWNER, GATEWAY)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [GATEWAY.secret_name(OWNER)], "verbs": ["get"]}
    ]
    binding = access.client_role_binding(OWNER, GATEWAY)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "camera-gateway", "namespace": "apps"}]


def test_group_names_become_dns_identities() -> None:
    client = access.Client("Group", "system:Traffic Analysts")
    assert client.common_name.endswith(".group.kestrel.dev")
    # issue_client refuses anything that is not a DNS name.
    issued = certificates.issue_client(certificates.create_ca(now=NOW), common_name=client.common_name, now=NOW)
    assert issued.certificate.subject.rfc4514_string() == f"CN={client.common_name}"


def test_mutual_tls_asks_triton_for_client_certificates() -> None:
    assert "--grpc-use-ssl-mutual=true" in transport.server_args(CERT_MANAGER)
    assert "--grpc-use-ssl-mutual=true" not in transport.server_args(_spec({"mutual": False}))
