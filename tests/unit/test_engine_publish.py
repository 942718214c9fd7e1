"""Publishing a gated engine into a pvc:// store: what the build Job uploads is what `kestrel load` accepts,
encrypted exactly when the Job mounts the KEK's public key, and carrying its BuildResult inside the signed
manifest."""

from __future__ import annotations

import hashlib
import pathlib

import pytest

from kestrel import loader
from kestrel.api import errors as api_errors
from kestrel.api import result as api_result
from kestrel.engine import publish
from kestrel.security import artifact, keyfiles, x25519
from kestrel.security import errors as security_errors
from kestrel.storage import layout, pvc
from testbed.engines import PLAINTEXT_MARKER, model_repository
from tests.cluster.storage_fixtures import REF, Keys, tree

STORE_URI = "pvc://engines/kestrel"
ENGINE_URI = f"{STORE_URI}/{REF.path}"


def result(key: str = REF.key) -> api_result.BuildResult:
    return api_result.BuildResult(
        engine_key=key, format="onnx", precision="fp32", gate=api_result.Gate(passed=True, reason="Passed")
    )


@pytest.fixture
def keys() -> Keys:
    return Keys.generate()


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    return tmp_path / "mnt"


def environ(files: dict[str, pathlib.Path], mount: pathlib.Path, kek_public: pathlib.Path | None) -> dict[str, str]:
    """What manifests.build_job sets for a pvc:// store."""
    env = {
        "KESTREL_ENGINE_URI": ENGINE_URI,
        "KESTREL_ENGINE_KEY": REF.key,
        "KESTREL_SIGNING_KEY": str(files["signing-key"]),
        "KESTREL_PVC_ROOT": str(mount),
    }
    if kek_public is not None:
        env["KESTREL_KEK_PUBLIC_KEY"] = str(kek_public)
    return env


def kek_public_secret(folder: pathlib.Path, keys: Keys) -> pathlib.Path:
    """The operator's public-key Secret as the kubelet mounts it (a link into a hidden, timestamped folder); returns
    the file the Job's KESTREL_KEK_PUBLIC_KEY names."""
    data = folder / "..2026_11_28_10_00_00.1"
    data.mkdir(parents=True)
    (data / "kek.pub").write_bytes(x25519.PrivateKek(keys.kek_bytes).public.to_pem())
    (folder / "..data").symlink_to(data.name)
    (folder / "kek.pub").symlink_to("..data/kek.pub")
    return folder / "kek.pub"


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plaintext"])
def test_published_engine_loads_back_byte_for_byte_with_its_result(
    tmp_path: pathlib.Path, mount: pathlib.Path, keys: Keys, encrypted: bool
) -> None:
    files = keys.write(tmp_path / "keys")
    repository = model_repository(tmp_path / "repository", weights_size=256 << 10)
    kek_public = kek_public_secret(tmp_path / "kek-public", keys) if encrypted else None
    destination = publish.Destination.from_environ(environ(files, mount, kek_public))
    assert destination is not None

    published = publish.publish(repository, result(), destination, tmp_path / "scratch")

    assert published.uri == ENGINE_URI
    assert published.size_bytes == sum(p.stat().st_size for p in repository.rglob("*") if p.is_file())
    stored = mount / "engines" / "kestrel" / REF.path
    manifest_bytes = (stored / artifact.MANIFEST_NAME).read_bytes()
    assert published.digest == "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    ciphertext_only = all(PLAINTEXT_MARKER not in p.read_bytes() for p in stored.rglob("*") if p.is_file())
    assert ciphertext_only is encrypted
    assert not (tmp_path / "scratch" / "artifact").exists()  # the local copy is gone once uploaded

    loaded = loader.load(
        ENGINE_URI,
        tmp_path / "models",
        kek_provider=x25519.PrivateKek(keys.kek_bytes) if encrypted else None,
        verify_key=keys.verify_key,
        require_encryption=encrypted,
        pvc_root=mount,
    )
    assert tree(tmp_path / "models") == tree(repository)
    carried = publish.stored_result(loaded.metadata)
    assert carried is not None
    assert carried.engine_key == REF.key and carried.uri == ENGINE_URI and carried.gate.passed


def test_a_plaintext_engine_is_refused_where_encryption_is_required(
    tmp_path: pathlib.Path, mount: pathlib.Path, keys: Keys
) -> None:
    files = keys.write(tmp_path / "keys")
    destination = publish.Destination.from_environ(environ(files, mount, None))
    assert destination is not None
    publish.publish(model_repository(tmp_path / "repository"), result(), destination, tmp_path / "scratch")
    with pytest.raises(security_errors.EncryptionRequiredError):
        loader.load(
            ENGINE_URI,
            tmp_path / "models",
            kek_provider=keys.kek,
            verify_key=keys.verify_key,
            require_encryption=True,
            pvc_root=mount,
        )
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_nothing_is_published_outside_a_build_job() -> None:
    assert publish.Destination.from_environ({}) is None


def test_an_engine_of_another_spec_is_not_published_under_the_jobs_key(
    tmp_path: pathlib.Path, mount: pathlib.Path, keys: Keys
) -> None:
    files = keys.write(tmp_path / "keys")
    destination = publish.Destination.from_environ(environ(files, mount, None))
    assert destination is not None
    with pytest.raises(api_errors.SpecError, match="differs from the Job's"):
        publish.publish(model_repository(tmp_path / "repository"), result("ab" * 32), destination, tmp_path / "s")
    assert not pvc.PvcStore(layout.parse_store_uri(STORE_URI), mount).exists(REF)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KESTREL_ENGINE_URI": ENGINE_URI}, "KESTREL_ENGINE_KEY, KESTREL_SIGNING_KEY is not"),
        (
            {
                "KESTREL_ENGINE_URI": ENGINE_URI,
                "KESTREL_ENGINE_KEY": REF.key,
                "KESTREL_SIGNING_KEY": "/k",
                "KESTREL_KEK_DIR": "/kek",
            },
            "a build takes the KEK's public key",
        ),
        (
            {"KESTREL_ENGINE_URI": "ftp://x/y", "KESTREL_ENGINE_KEY": REF.key, "KESTREL_SIGNING_KEY": "/k"},
            "does not end in /<namespace>/<name>/<engine key>",
        ),
    ],
    ids=["incomplete", "private-kek-dir", "bad-uri"],
)
def test_a_misconfigured_job_fails_before_building(env: dict[str, str], message: str) -> None:
    with pytest.raises(api_errors.KestrelError, match=message):
        publish.Destination.from_environ(env)


def test_a_kek_secret_with_several_keys_must_name_the_current_one(tmp_path: pathlib.Path, keys: Keys) -> None:
    folder = tmp_path / "kek"
    folder.mkdir()
    (folder / "a").write_bytes(keys.kek_bytes)
    (folder / "b").write_bytes(keys.new_kek_bytes)
    with pytest.raises(keyfiles.KeyFileError, match="none is named 'kek'"):
        keyfiles.read_kek_dir(folder)
    (folder / "kek").write_bytes(keys.new_kek_bytes)
    current, *older = keyfiles.read_kek_dir(folder)
    assert current.key_id == x25519.PrivateKek(keys.new_kek_bytes).key_id
    assert {k.key_id for k in older} == {x25519.PrivateKek(raw).key_id for raw in (keys.kek_bytes, keys.new_kek_bytes)}
