"""The build's probes (serving/probes.py) as the operator reads them from the engine store; owns no condition.

Read for the live check of a revision (checks.py): the engine's signed manifest, then only the probes file, verified
against the model's signing key and decrypted with its KEK where the engine is encrypted (security/artifact.py
`open_file`, the loader's checks on one file). What was read is kept in memory while the revision's check is pending
(a failing check is retried every pass), at most MAX_ENTRIES revisions, each bounded by probes.MAX_FILE_BYTES.
Where no probes can be had, the answer is why, which the check says in its condition: it never passes silently as
a parity check.
"""

from __future__ import annotations

import base64
import collections
import threading

from kestrel import settings as operator_settings
from kestrel.api import errors as api_errors
from kestrel.manifests import names
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import storage
from kestrel.security import artifact, keyfiles, kms, x25519
from kestrel.security import manifest as manifests
from kestrel.serving import probes

MAX_ENTRIES = 16
_CACHE: collections.OrderedDict[tuple[str, str], probes.Probes] = collections.OrderedDict()
_LOCK = threading.Lock()  # passes of different models run on several threads


def load(ctx: context.Context, settings: operator_settings.Settings, revision: str) -> probes.Probes | str:
    """The probes engine `revision` was built with, or why the operator has none to compare (a sentence)."""
    key = (ctx.uid, revision)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    found = _read(ctx, settings, revision)
    if isinstance(found, probes.Probes):  # what the store holds for an engine key never changes: kept
        with _LOCK:
            _CACHE[key] = found
            while len(_CACHE) > MAX_ENTRIES:
                _CACHE.popitem(last=False)
    return found


def forget(ctx: context.Context, revision: str) -> None:
    """The revision's check passed: its probes are not needed again."""
    with _LOCK:
        _CACHE.pop((ctx.uid, revision), None)


def _read(ctx: context.Context, settings: operator_settings.Settings, revision: str) -> probes.Probes | str:
    short = revision[:8]
    engines, why = storage.open_store(settings, ctx.store_access or storage.Access())
    if engines is None:
        return f"the operator cannot read the engine store: {why}"
    signing = ctx.kube.get("v1", "Secret", ctx.namespace, names.signing_secret(ctx.name))
    if signing is None or "signing.pub" not in (signing.get("data") or {}):
        return f"Secret {names.signing_secret(ctx.name)} holds no signing.pub to verify the engine's manifest with"
    verify_key = manifests.load_public_key(base64.b64decode(signing["data"]["signing.pub"]))
    encrypted = ctx.spec.security.encryption.enabled
    kek: kms.KeyRing | None = None
    if encrypted:
        secret_name = ctx.spec.security.encryption.key_secret or ""
        secret = ctx.kube.get("v1", "Secret", ctx.namespace, secret_name)
        if secret is None:
            return f"the KEK Secret {secret_name} does not exist, so the encrypted probes cannot be read"
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        try:
            kek = x25519.key_ring(keyfiles.read_kek_secret(data, f"Secret {secret_name}"))
        except keyfiles.KeyFileError as error:
            return f"the KEK Secret cannot be read ({error}), so the encrypted probes cannot be read"
    ref = storage.engine_ref(ctx, revision)
    try:
        content = artifact.open_file(
            engines.read_manifest(ref),
            probes.FILE,
            lambda relative, limit: engines.read_file(ref, relative, limit),
            kek=kek,
            verify_key=verify_key,
            require_encryption=encrypted,
            expected_artifact_id=ref.artifact_id,
            limit=probes.MAX_FILE_BYTES,
        )
        if content is None:
            return (
                f"engine {short} holds no {probes.FILE} (built by a Kestrel that recorded no probes): rebuild it "
                "to have its answers checked"
            )
        return probes.decode(content)
    except (api_errors.KestrelError, probes.ProbesError) as error:
        return f"reading the probes of engine {short} failed: {error}"
