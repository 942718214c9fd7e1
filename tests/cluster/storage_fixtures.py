"""Engines to store and a real MinIO to store them in: fixtures for the storage and loader suites.

Import what a test module uses (`from tests.cluster.storage_fixtures import minio_connection, ...`); the MinIO
server starts once per session, on loopback, and is stopped with its data at the end.
"""

from __future__ import annotations

import dataclasses
import pathlib
import secrets
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from kestrel.security import artifact, kms
from kestrel.security import manifest as manifests
from kestrel.storage import layout, s3
from testbed import minio
from testbed.engines import model_repository

REF = layout.EngineRef("vision", "cams", "0f" * 32)


@dataclasses.dataclass(frozen=True)
class Keys:
    """An operator's key material, and the files a pod would have it mounted as."""

    kek_bytes: bytes
    new_kek_bytes: bytes
    signing_key: ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Keys:
        return cls(secrets.token_bytes(32), secrets.token_bytes(32), manifests.generate_signing_key())

    @property
    def kek(self) -> kms.LocalKek:
        return kms.LocalKek(self.kek_bytes)

    @property
    def new_kek(self) -> kms.LocalKek:
        return kms.LocalKek(self.new_kek_bytes)

    @property
    def verify_key(self) -> ed25519.Ed25519PublicKey:
        return self.signing_key.public_key()

    def write(self, folder: pathlib.Path) -> dict[str, pathlib.Path]:
        """kek (raw bytes, as a Secret mounts it), new-kek (hex), verify-key and signing-key (PEM)."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "kek": (self.kek_bytes, folder / "kek"),
            "new-kek": (self.new_kek_bytes.hex().encode() + b"\n", folder / "new-kek"),
            "verify-key": (manifests.public_key_to_pem(self.verify_key), folder / "verify.pem"),
            "signing-key": (manifests.private_key_to_pem(self.signing_key), folder / "signing.pem"),
        }
        for data, path in files.values():
            path.write_bytes(data)
            path.chmod(0o600)
        return {name: path for name, (_, path) in files.items()}


def packed_engine(
    folder: pathlib.Path, keys: Keys, ref: layout.EngineRef = REF, *, weights_size: int = 3 << 20
) -> pathlib.Path:
    """An encrypted, signed artifact of `model_repository`, packed under the artifact id the loader expects."""
    source = model_repository(folder / "repository", weights_size=weights_size)
    packed = folder / "artifact"
    artifact.pack(source, packed, kek=keys.kek, signing_key=keys.signing_key, artifact_id=ref.artifact_id)
    return packed


def tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def minio_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[minio.Connection]:
    """The test bed's MinIO (built from Go modules on first use), shared by the session."""
    server = minio.MinioServer(bucket="engines", log_dir=tmp_path_factory.mktemp("minio"))
    with server as connection:
        yield connection


@pytest.fixture
def s3_store(minio_connection: minio.Connection) -> s3.S3Store:
    """An S3 store under a prefix of the test's own, in the session's bucket."""
    location = layout.parse_store_uri(f"s3://{minio_connection.bucket}/t-{uuid.uuid4().hex[:8]}/engines")
    return s3.S3Store(location, s3.Credentials.load(None, minio_connection.environment()))


@pytest.fixture
def keys() -> Keys:
    return Keys.generate()
