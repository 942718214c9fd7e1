"""`Encrypted=True` only where the loader holds the key: the keySecret exists and holds keys the loader can read.

No key source without a client (spec.security.encryption.kms) gets that far, and a status an older operator wrote
for one is withdrawn once the spec can no longer be read.
"""

from __future__ import annotations

import base64
import datetime
import pathlib

import pytest

from kestrel.api import conditions, errors
from kestrel.reconcilers import context, run
from kestrel.reconcilers.engine import storage
from kestrel.reconcilers.security import encryption
from kestrel.security import keyfiles
from tests.unit import encryption_support
from tests.unit.tls_fake_kube import SETTINGS, FakeKube

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
KEK = bytes(range(1, 33))
ENCRYPTED = {"enabled": True, "keySecret": "cams-kek"}


def _encrypted(kube: FakeKube) -> conditions.Condition:
    ctx = context.Context.load(kube, encryption_support.model(ENCRYPTED), NOW)
    encryption.reconcile(ctx, SETTINGS, storage.Access())
    found = ctx.condition(conditions.ENCRYPTED)
    assert found is not None
    return found


# Secret contents, and whether `kestrel load` (keyfiles.read_kek_dir on the mounted Secret) reads them.
SECRETS: dict[str, tuple[dict[str, bytes], bool]] = {
    "raw": ({"kek": KEK}, True),
    "base64": ({"kek": base64.b64encode(KEK)}, True),
    "hex-with-newline": ({"kek": KEK.hex().encode() + b"\n"}, True),
    "one-key-of-another-name": ({"key": KEK}, True),
    "rotation": ({"kek": KEK, "kek.previous": bytes(32)}, True),
    "short": ({"kek": KEK[:16]}, False),
    "a-password": ({"kek": b"correct horse battery staple"}, False),
    "bad-older-key": ({"kek": KEK, "kek.previous": b"tbd"}, False),
    "two-keys-none-current": ({"a": KEK, "b": KEK}, False),
    "empty": ({}, False),
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_encrypted_is_true_exactly_when_the_loader_reads_the_key_secret(tmp_path: pathlib.Path, name: str) -> None:
    data, loads = SECRETS[name]
    for key, value in data.items():  # the Secret as the loader's volume mounts it
        (tmp_path / key).write_bytes(value)
    try:
        keyfiles.read_kek_dir(tmp_path)
        loader_reads = True
    except keyfiles.KeyFileError:
        loader_reads = False
    assert loader_reads == loads

    kube = FakeKube()
    kube.put(encryption_support.kek_secret(data))
    condition = _encrypted(kube)
    assert (condition.status == "True") == loads
    if not loads:
        assert condition.reason == "KeySecretInvalid"
        assert "cams-kek" in condition.message and "spec.security.encryption.keySecret" in condition.message
        assert KEK.hex() not in condition.message and base64.b64encode(KEK).decode() not in condition.message


def test_a_missing_key_secret_is_not_encrypted() -> None:
    condition = _encrypted(FakeKube())
    assert (condition.status, condition.reason) == ("False", "KeySecretMissing")


def test_a_kms_spec_cannot_be_loaded_at_all() -> None:
    obj = encryption_support.model({"enabled": True, "kms": {"provider": "aws-kms", "keyId": "alias/kestrel"}})
    with pytest.raises(errors.SpecError, match=r"spec\.security\.encryption\.kms is not supported yet"):
        context.Context.load(FakeKube(), obj, NOW)


def test_an_older_operators_kms_claim_is_withdrawn_when_the_spec_cannot_be_read() -> None:
    # Stored before the CRD refused kms, reported by an operator that called a KMS key "encrypted".
    obj = encryption_support.model({"enabled": True, "kms": {"provider": "aws-kms", "keyId": "alias/kestrel"}})
    obj["metadata"]["generation"] = 3
    then = "2026-02-01T00:00:00Z"
    obj["status"] = {
        "phase": "Building",
        "conditions": [
            {"type": "Encrypted", "status": "True", "reason": "KmsKey", "lastTransitionTime": then},
            {"type": "Ready", "status": "False", "reason": "Building", "lastTransitionTime": then},
        ],
    }
    kube = FakeKube()
    with pytest.raises(errors.SpecError):
        run.reconcile(kube, obj, SETTINGS, NOW)
    (patch,) = kube.status_patches
    written = {c["type"]: c for c in patch["conditions"]}
    assert (written["Encrypted"]["status"], written["Encrypted"]["reason"]) == ("Unknown", conditions.INVALID_SPEC)
    assert (written["Ready"]["status"], written["Ready"]["reason"]) == ("False", conditions.INVALID_SPEC)
    assert "spec.security.encryption.kms" in written["Ready"]["message"]
    assert written["Ready"]["observedGeneration"] == 3
