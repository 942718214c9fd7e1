"""What a client needs to trust a model's server: the CA certificate, alone, in a ConfigMap.

The model's TLS Secret holds the same CA beside the server's private key, so reading it there would need `get` on a
Secret that opens the server; this ConfigMap holds no secret (as trust-manager's bundles), and the model's readers
(`access.api_key_role`) may get it by name.
"""

from __future__ import annotations

from typing import Any

from kestrel.manifests import labels, names, owners

CA_FIELD = "ca.crt"


def ca_bundle(owner: owners.Owner, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.ca_bundle(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, "triton"),
            "ownerReferences": [owner.owner_reference()],
        },
        "data": {CA_FIELD: ca_pem.decode()},
    }
