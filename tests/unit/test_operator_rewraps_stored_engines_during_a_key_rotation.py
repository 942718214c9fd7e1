"""A KEK rotation, as docs/runbooks.md runs it: the KEK Secret gets a new `kek` and keeps the old key beside it;
the operator's pass re-wraps every stored engine of the model under the new key and says, in Encrypted's reason,
whether the old key still wraps any engine (OlderKeysInUse) or may be removed (OlderKeysUnused).

Engines are published into a pvc:// store in a temporary folder exactly as the build Job publishes them."""

from __future__ import annotations

import base64
import pathlib
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.api import conditions
from kestrel.reconcilers.engine import storage
from kestrel.reconcilers.security import encryption, key_rotation
from kestrel.security import manifest as manifests
from kestrel.security import x25519
from tests.unit import store_support
from tests.unit.store_support import NAMESPACE
from tests.unit.tls_fake_kube import FakeKube

OLD, NEW = secrets.token_bytes(32), secrets.token_bytes(32)


def _kek_secret(data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kek", "namespace": NAMESPACE},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def _stored_kek_ids(mount: pathlib.Path, signer: ed25519.Ed25519PrivateKey) -> list[str]:
    """The KEK id each stored engine's manifest names (verified with the model's signing key)."""
    store = storage.open_store(store_support.settings(mount), storage.Access())[0]
    assert store is not None
    found = []
    for engine in store.list_engines(NAMESPACE, store_support.NAME):
        document = manifests.verify(store.read_manifest(store_support.ref(engine.key)), signer.public_key())
        assert isinstance(document, manifests.Manifest)  # encrypted: it names the KEK that wraps its data key
        found.append(document.wrapped_key.kek_id)
    return sorted(found)


def _rotating(tmp_path: pathlib.Path) -> tuple[FakeKube, dict[str, Any], pathlib.Path, ed25519.Ed25519PrivateKey]:
    """A model with two engines stored under OLD, and its KEK Secret mid-rotation: `kek` NEW, `kek-1` OLD."""
    kube, obj, mount = FakeKube(), store_support.body(encrypted=True), tmp_path / "mnt"
    (mount / "engines").mkdir(parents=True)  # the claim `engines`, mounted
    signer = store_support.signing_secret(kube, obj)
    for key in ("a" * 64, "b" * 64):
        store_support.publish_engine(tmp_path, mount, key, signer, kek=OLD)
    kube.put(_kek_secret({"kek": NEW, "kek-1": OLD}))
    return kube, obj, mount, signer


def test_a_pass_rewraps_every_stored_engine_under_the_new_key_and_says_the_old_one_may_go(
    tmp_path: pathlib.Path,
) -> None:
    kube, obj, mount, signer = _rotating(tmp_path)
    assert _stored_kek_ids(mount, signer) == [x25519.PrivateKek(OLD).public.key_id] * 2
    ctx = store_support.ctx_of(kube, obj)
    encryption.reconcile(ctx, store_support.settings(mount), storage.Access())
    new_id = x25519.PrivateKek(NEW).public.key_id
    assert _stored_kek_ids(mount, signer) == [new_id] * 2
    encrypted = ctx.condition(conditions.ENCRYPTED)
    assert encrypted is not None and encrypted.status == "True"
    assert encrypted.reason == key_rotation.OLDER_KEYS_UNUSED
    assert "every stored engine (2) is wrapped by it" in encrypted.message and "(kek-1)" in encrypted.message
    assert [e for e in kube.events if e[1] == key_rotation.REWRAPPED]

    # Idempotent: the next pass finds nothing to re-wrap and tells the same.
    kube.events.clear()
    again = store_support.ctx_of(kube, obj)
    encryption.reconcile(again, store_support.settings(mount), storage.Access())
    settled = again.condition(conditions.ENCRYPTED)
    assert settled is not None and settled.reason == key_rotation.OLDER_KEYS_UNUSED
    assert not [e for e in kube.events if e[1] == key_rotation.REWRAPPED]


def test_a_store_the_operator_cannot_open_keeps_the_older_keys_in_use(tmp_path: pathlib.Path) -> None:
    kube, obj, mount, signer = _rotating(tmp_path)
    ctx = store_support.ctx_of(kube, obj)
    encryption.reconcile(ctx, store_support.settings(None), storage.Access())  # the claim is not mounted
    encrypted = ctx.condition(conditions.ENCRYPTED)
    assert encrypted is not None and encrypted.status == "True"
    assert encrypted.reason == key_rotation.OLDER_KEYS_IN_USE
    assert "could not be checked" in encrypted.message and "keep the older keys (kek-1)" in encrypted.message
    assert _stored_kek_ids(mount, signer) == [x25519.PrivateKek(OLD).public.key_id] * 2


def test_an_engine_whose_signature_fails_is_left_and_keeps_the_older_keys_in_use(tmp_path: pathlib.Path) -> None:
    kube, obj, mount, _ = _rotating(tmp_path)
    store_support.signing_secret(kube, obj)  # a different signing key than the one the engines were signed with
    ctx = store_support.ctx_of(kube, obj)
    encryption.reconcile(ctx, store_support.settings(mount), storage.Access())
    encrypted = ctx.condition(conditions.ENCRYPTED)
    assert encrypted is not None and encrypted.reason == key_rotation.OLDER_KEYS_IN_USE
    assert "re-wrapping the stored engines failed" in encrypted.message


def test_one_key_is_no_rotation_and_the_store_is_not_read(tmp_path: pathlib.Path) -> None:
    kube, obj = FakeKube(), store_support.body(encrypted=True)
    store_support.signing_secret(kube, obj)
    kube.put(_kek_secret({"kek": NEW}))
    ctx = store_support.ctx_of(kube, obj)
    # A store that does not exist: reading it would fail the rotation, and Encrypted would say so.
    encryption.reconcile(ctx, store_support.settings(tmp_path / "absent"), storage.Access())
    encrypted = ctx.condition(conditions.ENCRYPTED)
    assert encrypted is not None and encrypted.reason == "KeySecret"
    assert encrypted.message.endswith("builds get its public key only")


def test_a_single_key_under_another_name_is_the_current_one_not_an_older_one(tmp_path: pathlib.Path) -> None:
    """The loader takes the only key of a Secret as the current one whatever its name: no rotation, no store read,
    and never a message telling to remove it."""
    kube, obj = FakeKube(), store_support.body(encrypted=True)
    store_support.signing_secret(kube, obj)
    kube.put(_kek_secret({"current": NEW}))
    ctx = store_support.ctx_of(kube, obj)
    encryption.reconcile(ctx, store_support.settings(tmp_path / "absent"), storage.Access())
    encrypted = ctx.condition(conditions.ENCRYPTED)
    assert encrypted is not None and encrypted.reason == "KeySecret", encrypted
    assert "may be removed" not in encrypted.message
