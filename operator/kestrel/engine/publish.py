"""Publishing a gated engine: pack its Triton repository (encrypted when a KEK is given), sign it, upload it.

The build Job says where and with which keys through `KESTREL_*` variables (`kestrel.manifests.build_job`):

    KESTREL_ENGINE_URI         <store>/<namespace>/<name>/<engine key>: where the artifact goes
    KESTREL_ENGINE_KEY         the key the operator expects; a build of another spec refuses to publish under it
    KESTREL_SIGNING_KEY        the model's Ed25519 private key (PEM file)
    KESTREL_KEK_PUBLIC_KEY     the model's KEK public key (X25519, PEM file): the engine is encrypted to it;
                               absent: signed plaintext
    KESTREL_STORE_GRANT        a mounted store grant for this engine (s3:// stores: what the operator's Jobs get)
    KESTREL_STORE_CREDENTIALS  a mounted S3 credentials Secret (s3:// stores, a developer's own run)
    KESTREL_PVC_ROOT           where pvc:// claims are mounted (pvc:// stores)

A build gets the KEK's public key and never the KEK: it runs user code, and with the public key it can seal the
engine it built but open no engine of the model. `KESTREL_KEK_DIR` (the private KEK Secret, what builds of older
operators mounted) is refused rather than used.

Without `KESTREL_ENGINE_URI` (a developer running `kestrel build --out DIR`) nothing is published. The build's
`BuildResult` travels inside the signed manifest (metadata `result`), so the operator's engine cache can trust what
it reads back from the store as much as the termination message of the Job that built it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
from collections.abc import Mapping

from kestrel import storage
from kestrel.api import errors as api_errors
from kestrel.api import result as api_result
from kestrel.engine import progress
from kestrel.security import artifact, keyfiles
from kestrel.storage import grants, layout, pvc

RESULT_METADATA = "result"


@dataclasses.dataclass(frozen=True)
class Destination:
    engine_uri: str
    engine_key: str
    signing_key_file: pathlib.Path
    kek_public_key: pathlib.Path | None = None
    credentials_dir: pathlib.Path | None = None
    grant_file: pathlib.Path | None = None
    pvc_root: pathlib.Path = pvc.DEFAULT_MOUNT_ROOT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Destination | None:
        """Where the build Job publishes, or None outside one (no `KESTREL_ENGINE_URI`)."""
        uri = environ.get("KESTREL_ENGINE_URI")
        if not uri:
            return None
        missing = [name for name in ("KESTREL_ENGINE_KEY", "KESTREL_SIGNING_KEY") if not environ.get(name)]
        if missing:
            raise api_errors.SpecError("env", f"KESTREL_ENGINE_URI is set but {', '.join(missing)} is not")
        if environ.get("KESTREL_KEK_DIR"):
            raise api_errors.SpecError(
                "env",
                "KESTREL_KEK_DIR is set: a build takes the KEK's public key (KESTREL_KEK_PUBLIC_KEY), never the KEK",
            )
        layout.parse_engine_uri(uri)  # a malformed URI fails before minutes of building, not after
        optional = {
            name: environ.get(f"KESTREL_{name}")
            for name in ("KEK_PUBLIC_KEY", "STORE_CREDENTIALS", "STORE_GRANT", "PVC_ROOT")
        }
        return cls(
            engine_uri=uri,
            engine_key=environ["KESTREL_ENGINE_KEY"],
            signing_key_file=pathlib.Path(environ["KESTREL_SIGNING_KEY"]),
            kek_public_key=pathlib.Path(optional["KEK_PUBLIC_KEY"]) if optional["KEK_PUBLIC_KEY"] else None,
            credentials_dir=pathlib.Path(optional["STORE_CREDENTIALS"]) if optional["STORE_CREDENTIALS"] else None,
            grant_file=pathlib.Path(optional["STORE_GRANT"]) if optional["STORE_GRANT"] else None,
            pvc_root=pathlib.Path(optional["PVC_ROOT"]) if optional["PVC_ROOT"] else pvc.DEFAULT_MOUNT_ROOT,
        )


def publish(
    repository: pathlib.Path,
    result: api_result.BuildResult,
    destination: Destination,
    scratch: pathlib.Path,
) -> api_result.BuildResult:
    """Pack, sign and upload `repository`; the result, with where it went and the signed manifest's digest."""
    if result.engine_key != destination.engine_key:
        raise api_errors.SpecError(
            "spec",
            f"this build's engine key {result.engine_key[:8]} differs from the Job's {destination.engine_key[:8]}: "
            "the spec file and the Job disagree",
        )
    progress.report("publish")
    location, ref = layout.parse_engine_uri(destination.engine_uri)
    if ref.key != destination.engine_key:
        raise api_errors.SpecError("env", f"KESTREL_ENGINE_URI names engine {ref.key[:8]}, not this build's")
    kek = keyfiles.read_kek_public(destination.kek_public_key) if destination.kek_public_key else None
    signing_key = keyfiles.read_signing_key(destination.signing_key_file)
    size = sum(path.stat().st_size for path in repository.rglob("*") if path.is_file())
    published = result.model_copy(update={"uri": destination.engine_uri, "size_bytes": size})
    packed = scratch / "artifact"
    shutil.rmtree(packed, ignore_errors=True)
    metadata = {RESULT_METADATA: published.to_termination_message()}
    if kek is not None:
        artifact.pack(
            repository, packed, kek=kek, signing_key=signing_key, artifact_id=ref.artifact_id, metadata=metadata
        )
    else:
        artifact.pack(
            repository, packed, kek=None, signing_key=signing_key, artifact_id=ref.artifact_id, metadata=metadata
        )
    digest = hashlib.sha256((packed / artifact.MANIFEST_NAME).read_bytes()).hexdigest()
    try:
        _upload(packed, location, ref, destination)
    finally:
        shutil.rmtree(packed, ignore_errors=True)
    return published.model_copy(update={"digest": f"sha256:{digest}"})


def _upload(
    packed: pathlib.Path, location: layout.StoreLocation, ref: layout.EngineRef, destination: Destination
) -> None:
    if destination.grant_file is not None:
        grants.upload(grants.read(destination.grant_file, grants.UploadGrant), packed, ref)
        return
    engines = storage.open_store(
        location.uri, pvc_root=destination.pvc_root, credentials_dir=destination.credentials_dir
    )
    engines.upload(packed, ref)


def stored_result(manifest_metadata: Mapping[str, object]) -> api_result.BuildResult | None:
    """The BuildResult a verified manifest carries, or None for an artifact published without one."""
    text = manifest_metadata.get(RESULT_METADATA)
    return api_result.parse(text) if isinstance(text, str) else None
