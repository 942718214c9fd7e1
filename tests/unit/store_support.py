"""Shared by the storage-reconciler, engine-cache and engine-GC unit suites: a model, its signing Secret, and an
engine published the way the build Job publishes it, into a pvc:// store in a temporary folder."""

from __future__ import annotations

import base64
import copy
import datetime
import pathlib
import tempfile
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel import settings as operator_settings
from kestrel.api import crd, keys, result, spec
from kestrel.engine import publish
from kestrel.kube import protocol
from kestrel.manifests import names, owners, secrets
from kestrel.reconcilers import context
from kestrel.security import artifact, manifest, x25519
from kestrel.storage import errors as storage_errors
from kestrel.storage import grants as store_grants
from kestrel.storage import layout
from testbed.engines import model_repository
from tests.unit.spec_support import UNMEASURED
from tests.unit.tls_fake_kube import UID, FakeKube

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
NAMESPACE, NAME = "vision", "cams"
STORE = "pvc://engines/kestrel"


def body(*, encrypted: bool = False, imgsz: int = 320) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "model": {"source": {"uri": "file:///models/shapes.pt"}, "imgsz": imgsz},
        "validation": UNMEASURED,
        "engine": {"format": "onnx"},
    }
    if encrypted:
        raw["security"] = {"encryption": {"enabled": True, "keySecret": "kek"}}
    spec.parse(raw)
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": UID, "generation": 1},
        "spec": copy.deepcopy(raw),
    }


def key_of(obj: dict[str, Any]) -> str:
    return keys.engine_key(spec.parse(obj["spec"]))


def ctx_of(kube: protocol.KubeApi, obj: dict[str, Any]) -> context.Context:
    return context.Context.load(kube, obj, NOW)


def settings(mount: pathlib.Path | None, store: str = STORE, **more: Any) -> operator_settings.Settings:
    return operator_settings.Settings(engine_store=store, pvc_root=mount, **more)


def signing_secret(kube: FakeKube, obj: dict[str, Any]) -> ed25519.Ed25519PrivateKey:
    """The model's signing Secret, as the encryption reconciler creates it; returns the private key."""
    key = manifest.generate_signing_key()
    made = secrets.signing(
        owners.Owner.from_body(obj),
        manifest.private_key_to_pem(key),
        manifest.public_key_to_pem(key.public_key()),
    )
    assert names.signing_secret(NAME) == made["metadata"]["name"]
    kube.put(made)
    return key


def build_result(key: str, *, passed: bool = True, gate: result.Gate | None = None) -> result.BuildResult:
    if gate is None:
        gate = result.Gate(passed=True, reason="Passed", message="mAP drop 0.001 <= 0.01")
    if not passed:
        gate = result.Gate(passed=False, reason="AccuracyDrop", message="mAP drop 0.09 > 0.01")
    return result.BuildResult(engine_key=key, format="onnx", precision="fp32", size_bytes=1, gate=gate)


def publish_engine(
    tmp: pathlib.Path,
    mount: pathlib.Path,
    key: str,
    signer: ed25519.Ed25519PrivateKey,
    *,
    kek: bytes | None = None,
    passed: bool = True,
    name: str = NAME,
    gate: result.Gate | None = None,
    extra: dict[str, bytes] | None = None,
) -> result.BuildResult:
    """Publish a small engine under `key` exactly as `kestrel build` does (signed manifest carrying the result)."""
    folder = tmp / f"publish-{key[:8]}-{name}"
    (folder / "keys").mkdir(parents=True)
    signing = folder / "keys" / "signing.pem"
    signing.write_bytes(manifest.private_key_to_pem(signer))
    kek_public = None
    if kek is not None:  # the build gets the KEK's public key, as the operator derives it
        kek_public = folder / "kek.pub"
        kek_public.write_bytes(x25519.PrivateKek(kek).public.to_pem())
    uri = f"{STORE}/{NAMESPACE}/{name}/{key}"
    destination = publish.Destination(uri, key, signing, kek_public_key=kek_public, pvc_root=mount)
    repository = model_repository(folder / "repository", weights_size=64 << 10)
    for relative, content in (extra or {}).items():  # files a build writes beside the models (its probes)
        (repository / relative).write_bytes(content)
    return publish.publish(repository, build_result(key, passed=passed, gate=gate), destination, folder / "scratch")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def ref(key: str) -> layout.EngineRef:
    return layout.EngineRef(NAMESPACE, NAME, key)


def signed_manifest(signing_key: ed25519.Ed25519PrivateKey, artifact_id: str) -> bytes:
    """The manifest of a one-file plaintext artifact, signed as a build signs it."""
    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder)
        (root / "repository" / "yolo").mkdir(parents=True)
        (root / "repository" / "yolo" / "config.pbtxt").write_bytes(b'name: "yolo"\n')
        artifact.pack(
            root / "repository", root / "artifact", kek=None, signing_key=signing_key, artifact_id=artifact_id
        )
        return (root / "artifact" / layout.MANIFEST_NAME).read_bytes()


class FakeSigner:
    """What `grants` asks of the store, recorded; it stores one engine per key signed with `signing_key`, if set."""

    def __init__(self, signing_key: ed25519.Ed25519PrivateKey | None = None) -> None:
        self.signing_key = signing_key
        self.cleared: list[str] = []
        self.issued: list[tuple[str, str, datetime.timedelta]] = []
        self.granted: list[list[str]] = []

    def exists(self, ref: layout.EngineRef) -> bool:
        return self.signing_key is not None

    def delete_engine(self, ref: layout.EngineRef) -> None:
        self.cleared.append(ref.path)

    def read_manifest(self, ref: layout.EngineRef) -> bytes:
        if self.signing_key is None:
            raise storage_errors.EngineNotFoundError(f"No engine at {ref.path}")
        return signed_manifest(self.signing_key, ref.artifact_id)

    def upload_grant(self, ref: layout.EngineRef, lifetime: datetime.timedelta) -> store_grants.UploadGrant:
        self.issued.append(("upload", ref.path, lifetime))
        expires = NOW + lifetime
        return store_grants.UploadGrant(ref.path, "http://store/b", {"policy": "p"}, f"p/{ref.path}/", expires)

    def download_grant(
        self, ref: layout.EngineRef, lifetime: datetime.timedelta, objects: Iterable[str]
    ) -> store_grants.DownloadGrant:
        self.issued.append(("download", ref.path, lifetime))
        self.granted.append(sorted(objects))
        urls = {name: f"http://store/b/p/{ref.path}/{name}?sig={len(self.issued)}" for name in objects}
        return store_grants.DownloadGrant(ref.path, urls, datetime.datetime.now(datetime.UTC) + lifetime)


def running_build(
    kube: Any, obj: dict[str, Any], pod_status: dict[str, Any], job_status: dict[str, Any] | None = None
) -> str:
    """A build Job (by default one that has not finished), and its newest pod as the kubelet reports it."""
    job_name = names.build_job(NAME, key_of(obj))
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "namespace": NAMESPACE, "uid": "job-uid", "ownerReferences": [_owner(obj)]},
        "status": job_status or {"active": 1},
    }
    kube.put(job)
    build_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job_name}-x1",
            "namespace": NAMESPACE,
            "creationTimestamp": "2026-12-07T10:00:00Z",
            "labels": {"batch.kubernetes.io/job-name": job_name},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": "job-uid"}],
        },
        "status": pod_status,
    }
    kube.put(build_pod)
    return job_name


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}
