"""Secrets the operator writes: the signing pair, the KEK's public key, the server certificate, each model's client
CA, the API key, and the operator's own CA."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from kestrel import settings as operator_settings
from kestrel.manifests import labels, names, owners

CA_SECRET = "kestrel-ca"  # noqa: S105 - a Secret's name, not a password
ISSUED_TO_ANNOTATION = "kestrel.dev/issued-to"
API_KEY_ID_ANNOTATION = "kestrel.dev/key-id"
KEK_PUBLIC_KEY = "kek.pub"
KEK_ID_ANNOTATION = "kestrel.dev/kek-id"
READERS_ANNOTATION = "kestrel.dev/readers"


def _secret(
    name: str, namespace: str, data: Mapping[str, bytes], *, owner: owners.Owner | None, kind: str = "Opaque"
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if owner is not None:
        metadata["labels"] = labels.common(owner.name, "triton")
        metadata["ownerReferences"] = [owner.owner_reference()]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": kind,
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())},
    }


def signing(owner: owners.Owner, private_pem: bytes, public_pem: bytes) -> dict[str, Any]:
    """The per-model Ed25519 pair: the build Job projects `signing.key`, the loader only `signing.pub`."""
    return _secret(
        names.signing_secret(owner.name),
        owner.namespace,
        {"signing.key": private_pem, "signing.pub": public_pem},
        owner=owner,
    )


def kek_public(owner: owners.Owner, public_pem: bytes, kek_id: str) -> dict[str, Any]:
    """The public key of the model's KEK (`kek.pub`, PEM), derived by the operator from keySecret: what the build
    Job mounts instead of the KEK. Annotation: the KEK's id, the one its engines' manifests name."""
    secret = _secret(names.kek_public_secret(owner.name), owner.namespace, {KEK_PUBLIC_KEY: public_pem}, owner=owner)
    secret["metadata"]["annotations"] = {KEK_ID_ANNOTATION: kek_id}
    return secret


def tls(owner: owners.Owner, certificate_pem: bytes, key_pem: bytes, ca_pem: bytes) -> dict[str, Any]:
    """The server certificate Triton (and the HTTPS proxy) present, with the CA clients verify it against."""
    return _secret(
        names.tls_secret(owner.name),
        owner.namespace,
        {"tls.crt": certificate_pem, "tls.key": key_pem, "ca.crt": ca_pem},
        owner=owner,
        kind="kubernetes.io/tls",
    )


def client_authority(
    owner: owners.Owner, certificate_pem: bytes, key_pem: bytes, issued_to: Iterable[str]
) -> dict[str, Any]:
    """The model's client CA; `issued_to` (an annotation): the labels of every client it has signed for."""
    secret = _secret(
        names.client_ca_secret(owner.name),
        owner.namespace,
        {"tls.crt": certificate_pem, "tls.key": key_pem},
        owner=owner,
    )
    secret["metadata"]["annotations"] = {ISSUED_TO_ANNOTATION: ",".join(sorted(set(issued_to)))}
    return secret


def api_key(owner: owners.Owner, key: bytes, key_id: str, readers: Iterable[str]) -> dict[str, Any]:
    """The inference API key; only the subjects in spec.security.access may read it. Annotations: the key's id (what
    the pod template carries, never the key) and the subjects that could read it (`readers`, labels)."""
    secret = _secret(names.api_key_secret(owner.name), owner.namespace, {"api-key": key}, owner=owner)
    secret["metadata"]["annotations"] = {
        API_KEY_ID_ANNOTATION: key_id,
        READERS_ANNOTATION: ",".join(sorted(set(readers))),
    }
    return secret


def annotated(secret: dict[str, Any], annotation: str) -> set[str]:
    """The comma-separated labels an annotation of `secret` lists (ISSUED_TO_ANNOTATION, READERS_ANNOTATION)."""
    text = (secret.get("metadata", {}).get("annotations") or {}).get(annotation, "")
    return {label for label in text.split(",") if label}


def certificate_authority(
    settings: operator_settings.Settings, certificate_pem: bytes, key_pem: bytes
) -> dict[str, Any]:
    """The operator's CA, in the operator's namespace; it outlives every ModelDeployment, so it has no owner."""
    return _secret(
        CA_SECRET,
        settings.operator_namespace,
        {"tls.crt": certificate_pem, "tls.key": key_pem},
        owner=None,
        kind="kubernetes.io/tls",
    )


def decode(secret: Mapping[str, Any], key: str) -> bytes:
    """One value of a Secret as read from the API server."""
    return base64.b64decode(secret.get("data", {})[key])
