"""The encryption reconciler derives the KEK's public key into a Secret the model owns, the one the build mounts.

It is written from the current key of the KEK Secret on every pass, follows a rotation of that key, is never
written for a KEK the loader could not read, and is removed by the pass that turns Encrypted from True to False.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from kestrel.api import conditions, crd
from kestrel.manifests import names, secrets
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import storage
from kestrel.reconcilers.security import encryption
from kestrel.security import x25519
from tests.unit import encryption_support
from tests.unit.tls_fake_kube import SETTINGS, UID, FakeKube

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
KEK = bytes(range(1, 33))
NEW_KEK = bytes(range(101, 133))
ENCRYPTED = {"enabled": True, "keySecret": "cams-kek"}
PUBLIC = names.kek_public_secret("cams")


def _pass(kube: FakeKube, obj: dict[str, Any]) -> context.Context:
    ctx = context.Context.load(kube, obj, NOW)
    encryption.reconcile(ctx, SETTINGS, storage.Access())
    obj["status"] = ctx.status.to_wire()
    return ctx


def _public_key(kube: FakeKube) -> x25519.PublicKek:
    found = kube.secret("vision", PUBLIC)
    assert found is not None
    return x25519.PublicKek.from_pem(secrets.decode(found, secrets.KEK_PUBLIC_KEY))


def test_the_public_key_secret_holds_the_current_keks_public_key_and_is_owned_by_the_model() -> None:
    kube = FakeKube()
    kube.put(encryption_support.kek_secret({"kek": KEK, "kek.previous": NEW_KEK}))
    ctx = _pass(kube, encryption_support.model(ENCRYPTED))

    found = kube.secret("vision", PUBLIC)
    assert found is not None
    assert set(found["data"]) == {secrets.KEK_PUBLIC_KEY}
    assert _public_key(kube).to_pem() == x25519.PrivateKek(KEK).public.to_pem()
    assert found["metadata"]["annotations"][secrets.KEK_ID_ANNOTATION] == x25519.PrivateKek(KEK).key_id
    (reference,) = found["metadata"]["ownerReferences"]
    assert (reference["kind"], reference["name"], reference["uid"]) == (crd.KIND, "cams", UID)
    assert reference["controller"] is True
    # Nothing of either private key is in it.
    text = repr(found)
    for private in (KEK, NEW_KEK):
        assert private.hex()[:16] not in text and base64.b64encode(private).decode()[:16] not in text
    encrypted = ctx.condition(conditions.ENCRYPTED)
    assert encrypted is not None and encrypted.status == "True"
    assert x25519.PrivateKek(KEK).key_id in encrypted.message


def test_a_rotated_kek_reaches_the_public_key_secret_at_the_next_pass() -> None:
    kube, obj = FakeKube(), encryption_support.model(ENCRYPTED)
    kube.put(encryption_support.kek_secret({"kek": KEK}))
    _pass(kube, obj)
    kube.put(encryption_support.kek_secret({"kek": NEW_KEK, "kek.previous": KEK}))
    _pass(kube, obj)
    assert _public_key(kube).key_id == x25519.PrivateKek(NEW_KEK).key_id


def test_no_public_key_is_written_for_a_kek_the_loader_could_not_read() -> None:
    for data in ({"kek": KEK[:16]}, {"a": KEK, "b": NEW_KEK}, {}):
        kube = FakeKube()
        kube.put(encryption_support.kek_secret(data))
        ctx = _pass(kube, encryption_support.model(ENCRYPTED))
        assert kube.secret("vision", PUBLIC) is None
        encrypted = ctx.condition(conditions.ENCRYPTED)
        assert encrypted is not None and encrypted.status == "False"


def test_the_public_key_goes_with_the_kek_and_when_encryption_is_switched_off() -> None:
    kube, obj = FakeKube(), encryption_support.model(ENCRYPTED)
    kube.put(encryption_support.kek_secret({"kek": KEK}))
    _pass(kube, obj)
    assert kube.secret("vision", PUBLIC) is not None
    kube.delete("v1", "Secret", "vision", "cams-kek", owner=None)
    ctx = _pass(kube, obj)
    assert kube.secret("vision", PUBLIC) is None
    encrypted = ctx.condition(conditions.ENCRYPTED)
    assert encrypted is not None and encrypted.reason == "KeySecretMissing"

    kube.put(encryption_support.kek_secret({"kek": KEK}))
    _pass(kube, obj)
    assert kube.secret("vision", PUBLIC) is not None
    obj["spec"]["security"]["encryption"] = {"enabled": False}
    _pass(kube, obj)
    assert kube.secret("vision", PUBLIC) is None


def test_a_model_that_never_encrypted_deletes_nothing() -> None:
    kube, obj = FakeKube(), encryption_support.model({"enabled": False})
    for _ in range(2):
        _pass(kube, obj)
    assert kube.deleted == []


def test_someone_elses_secret_of_that_name_is_left_alone() -> None:
    kube, obj = FakeKube(), encryption_support.model(ENCRYPTED)
    kube.put(encryption_support.kek_secret({"kek": KEK}))
    _pass(kube, obj)
    theirs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": PUBLIC, "namespace": "vision"}, "data": {}}
    kube.put(theirs)  # replaced behind the operator's back by an object the model does not own
    obj["spec"]["security"]["encryption"] = {"enabled": False}
    _pass(kube, obj)
    assert kube.secret("vision", PUBLIC) == theirs
