"""The cert-manager `Certificate` of the server, for `spec.security.tls.mode: cert-manager`.

cert-manager then issues and renews the key pair into the very Secret the operator mode writes
(`names.tls_secret`): the pod template mounts one Secret name whatever the mode, and the checksum
annotation follows its content either way. Client certificates come from the model's own client CA in both modes
(reconcilers/security/tls.py): a shared issuer would make one model's clients another's.
"""

from __future__ import annotations

from typing import Any

from kestrel.api import spec as specs
from kestrel.manifests import labels, names, owners
from kestrel.security import certificates

API_VERSION = "cert-manager.io/v1"
KIND = "Certificate"
CRD = "certificates.cert-manager.io"
MAX_COMMON_NAME = 64
# ECDSA P-256, as the operator CA issues: one key type for Triton and its clients whatever the issuer.
PRIVATE_KEY = {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}


def dns_names(owner: owners.Owner) -> list[str]:
    """The names in-cluster clients use for the model's Service: the server certificate's SANs in both modes."""
    return certificates.service_dns_names(names.service(owner.name), owner.namespace)


def _certificate(
    spec: specs.ModelDeploymentSpec,
    owner: owners.Owner,
    *,
    name: str,
    common_name: str,
    dns: list[str],
    usages: list[str],
) -> dict[str, Any]:
    tls = spec.security.tls
    if tls.issuer_ref is None:
        raise ValueError("spec.security.tls.issuerRef is required when spec.security.tls.mode is cert-manager")
    object_labels = labels.common(owner.name, "triton")
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": object_labels,
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            "secretName": name,
            # The Secret carries the same labels, so it is found and audited like the operator mode's.
            "secretTemplate": {"labels": dict(object_labels)},
            "issuerRef": {"name": tls.issuer_ref.name, "kind": tls.issuer_ref.kind, "group": tls.issuer_ref.group},
            "dnsNames": dns,
            # The spec's durations are Go durations already (CEL's format), which is what cert-manager parses.
            "duration": tls.duration,
            "privateKey": dict(PRIVATE_KEY),
            "usages": usages,
        },
    }
    # cert-manager refuses a commonName over 64 characters (X.509's limit); the SANs carry the identity anyway.
    if len(common_name) <= MAX_COMMON_NAME:
        body["spec"]["commonName"] = common_name
    # Without renewBefore cert-manager renews at two-thirds of the duration: the operator mode's default too.
    if tls.rotate_before is not None:
        body["spec"]["renewBefore"] = tls.rotate_before
    return body


def server_certificate(spec: specs.ModelDeploymentSpec, owner: owners.Owner) -> dict[str, Any]:
    """The Certificate whose Secret Triton (and the HTTPS proxy) mount: `tls.crt`, `tls.key`, `ca.crt`."""
    dns = dns_names(owner)
    return _certificate(
        spec,
        owner,
        name=names.tls_secret(owner.name),
        common_name=dns[2],
        dns=dns,
        usages=["digital signature", "server auth"],
    )
