"""A ModelDeployment with an encryption section and its KEK Secret, for the encryption reconciler's unit tests."""

from __future__ import annotations

import base64
import copy
from typing import Any

from tests.unit.tls_fake_kube import body

KEK_SECRET = "cams-kek"


def model(encryption_spec: dict[str, Any]) -> dict[str, Any]:
    """The fake `cams` model in `vision` with `spec.security.encryption` as given."""
    obj = body({})
    obj["spec"]["security"]["encryption"] = copy.deepcopy(encryption_spec)
    return obj


def kek_secret(data: dict[str, bytes]) -> dict[str, Any]:
    """The KEK Secret `cams-kek` holding `data` (raw bytes, encoded as the API returns them)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KEK_SECRET, "namespace": "vision"},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }
