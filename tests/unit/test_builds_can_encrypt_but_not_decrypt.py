"""A build encrypts its engine with what its pod mounts, and nothing its pod mounts decrypts that engine.

The build Job is rendered for an encrypted model, its Secret volumes are filled from the Secrets the encryption
reconciler wrote (and the user's KEK Secret), and the engine is published with the Job's own environment into a
pvc:// store. Then every key file the build pod holds is tried against the engine it published, and fails; the KEK
Secret that only the loader mounts opens it. Engines wrapped before X25519 still open with the same KEK Secret.
"""

from __future__ import annotations

import base64
import datetime
import pathlib
from typing import Any

import pytest

from kestrel import cli, loader
from kestrel import settings as operator_settings
from kestrel.api import keys as api_keys
from kestrel.api import result as api_result
from kestrel.engine import publish
from kestrel.manifests import build_job, names, owners
from kestrel.reconcilers import context
from kestrel.reconcilers.engine import storage
from kestrel.reconcilers.security import encryption
from kestrel.security import artifact, errors, keyfiles, kms, x25519
from kestrel.storage import layout, pvc
from testbed.engines import PLAINTEXT_MARKER, model_repository
from tests.cluster.storage_fixtures import tree
from tests.unit.tls_fake_kube import FakeKube, body

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
KEK = bytes(range(1, 33))
KEK_SECRET = "cams-kek"
SETTINGS = operator_settings.Settings(engine_store="pvc://engine-claim/engines")


def _model() -> dict[str, Any]:
    obj = body({})
    obj["spec"]["security"]["encryption"] = {"enabled": True, "keySecret": KEK_SECRET}
    return obj


def _kek_secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KEK_SECRET, "namespace": "vision"},
        "data": {"kek": base64.b64encode(KEK.hex().encode()).decode()},
    }


def _mount(kube: FakeKube, pod: dict[str, Any], container: dict[str, Any], root: pathlib.Path) -> list[pathlib.Path]:
    """Write the pod's Secret volumes under `root` as the kubelet would mount them; return every file written."""
    mount_paths = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    written = []
    for volume in pod["volumes"]:
        if "secret" not in volume:
            continue
        secret = kube.secret("vision", volume["secret"]["secretName"])
        assert secret is not None, f"the pod mounts Secret {volume['secret']['secretName']}, which nobody wrote"
        keys = [item["key"] for item in volume["secret"].get("items", [])] or list(secret["data"])
        folder = root / mount_paths[volume["name"]].lstrip("/")
        folder.mkdir(parents=True)
        for key in keys:
            (folder / key).write_bytes(base64.b64decode(secret["data"][key]))
            written.append(folder / key)
    return written


@pytest.fixture
def built(tmp_path: pathlib.Path) -> dict[str, Any]:
    """An engine built and published by the build Job of an encrypted model, with what the Job's pod held."""
    kube = FakeKube()
    kube.put(_kek_secret())
    obj = _model()
    ctx = context.Context.load(kube, obj, NOW)
    encryption.reconcile(ctx, SETTINGS, storage.Access())
    key = api_keys.engine_key(ctx.spec)
    job = build_job.build_job(ctx.spec, owners.Owner.from_body(obj), SETTINGS, key)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_root = tmp_path / "build-pod"
    held = _mount(kube, pod, container, pod_root)
    (pod_root / "mnt" / "pvc" / "engine-claim").mkdir(parents=True)  # the store's claim
    environ = {
        item["name"]: (str(pod_root) + item["value"] if item["value"].startswith("/") else item["value"])
        for item in container["env"]
        if item["name"].startswith("KESTREL_")
    }
    destination = publish.Destination.from_environ(environ)
    assert destination is not None
    repository = model_repository(tmp_path / "repository", weights_size=64 << 10)
    outcome = api_result.BuildResult(
        engine_key=key, format="onnx", precision="fp32", gate=api_result.Gate(passed=True, reason="Passed")
    )
    publish.publish(repository, outcome, destination, tmp_path / "scratch")
    ref = layout.EngineRef("vision", "cams", key)
    stored = pvc.PvcStore(layout.parse_store_uri(SETTINGS.engine_store), pod_root / "mnt" / "pvc")
    signing = kube.secret("vision", names.signing_secret("cams"))
    assert signing is not None
    loader_keys = tmp_path / "loader-keys"
    loader_keys.mkdir()
    (loader_keys / "signing.pub").write_bytes(base64.b64decode(signing["data"]["signing.pub"]))
    kek_dir = loader_keys / "kek"
    kek_dir.mkdir()
    (kek_dir / "kek").write_bytes(KEK.hex().encode())
    return {
        "job": job,
        "held": held,
        "repository": repository,
        "store": stored,
        "ref": ref,
        "artifact": stored.root / ref.namespace / ref.name / ref.key,
        "verify_key": loader_keys / "signing.pub",
        "kek_dir": kek_dir,
        "pvc_root": pod_root / "mnt" / "pvc",
    }


def _load(built: dict[str, Any], target: pathlib.Path, *kek_options: str) -> int:
    argv = ["load", f"--from={SETTINGS.engine_store}/{built['ref'].path}", f"--to={target}"]
    argv += [f"--pvc-root={built['pvc_root']}", f"--verify-key-file={built['verify_key']}", "--require-encryption"]
    return cli.main(argv + list(kek_options))


def test_the_build_pod_holds_the_kek_public_key_and_not_the_kek(built: dict[str, Any]) -> None:
    pod = built["job"]["spec"]["template"]["spec"]
    mounted = {volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume}
    assert KEK_SECRET not in mounted
    assert names.kek_public_secret("cams") in mounted
    (container,) = pod["containers"]
    assert "KESTREL_KEK_DIR" not in {item["name"] for item in container["env"]}
    assert sorted(path.name for path in built["held"]) == ["kek.pub", "signing.key"]
    assert all(KEK not in path.read_bytes() and KEK.hex().encode() not in path.read_bytes() for path in built["held"])


def test_the_engine_the_build_published_is_encrypted_to_the_kek(built: dict[str, Any]) -> None:
    stored = [path for path in built["artifact"].rglob("*") if path.is_file()]
    assert stored and all(PLAINTEXT_MARKER not in path.read_bytes() for path in stored)
    document = (built["artifact"] / artifact.MANIFEST_NAME).read_bytes()
    assert x25519.PrivateKek(KEK).key_id.encode() in document


def test_nothing_the_build_pod_holds_decrypts_the_engine_it_published(
    built: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    public_file = next(path for path in built["held"] if path.name == "kek.pub")
    target = tmp_path / "as-the-build" / "repository"
    with pytest.raises(errors.PublicKeyOnlyError):
        artifact.unpack(
            built["artifact"],
            target,
            kek=keyfiles.read_kek_public(public_file),
            verify_key=keyfiles.read_verify_key(built["verify_key"]),
        )
    assert not target.exists()
    # Nor does any file of the pod read as a KEK: `kestrel load` refuses each one before it downloads anything.
    for index, held in enumerate(built["held"]):
        assert _load(built, tmp_path / f"try-{index}", f"--kek-file={held}") == loader.EXIT_BAD_INPUT
        assert not (tmp_path / f"try-{index}").exists()


def test_the_kek_secret_the_loader_mounts_decrypts_it(built: dict[str, Any], tmp_path: pathlib.Path) -> None:
    assert _load(built, tmp_path / "served", f"--kek-dir={built['kek_dir']}") == loader.EXIT_OK
    assert tree(tmp_path / "served") == tree(built["repository"])


def _store_a_legacy_engine(built: dict[str, Any], folder: pathlib.Path) -> None:
    """Replace the published engine by one wrapped as an older build did: with the KEK itself, in its symmetric
    form (`local/…`), signed by the same key."""
    signing_file = next(path for path in built["held"] if path.name == "signing.key")
    legacy = folder / "legacy"
    artifact.pack(
        built["repository"],
        legacy,
        kek=kms.LocalKek(KEK),
        signing_key=keyfiles.read_signing_key(signing_file),
        artifact_id=built["ref"].artifact_id,
    )
    built["store"].delete_engine(built["ref"])
    built["store"].upload(legacy, built["ref"])
    assert b'"kekId":"local/' in (built["artifact"] / artifact.MANIFEST_NAME).read_bytes()


def test_an_engine_wrapped_before_x25519_loads_with_the_same_kek_secret(
    built: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    _store_a_legacy_engine(built, tmp_path)
    assert _load(built, tmp_path / "served", f"--kek-dir={built['kek_dir']}") == loader.EXIT_OK
    assert tree(tmp_path / "served") == tree(built["repository"])


def test_rotating_a_key_onto_itself_moves_legacy_engines_to_x25519(
    built: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    _store_a_legacy_engine(built, tmp_path)
    kek_file = built["kek_dir"] / "kek"
    signing_file = next(path for path in built["held"] if path.name == "signing.key")
    argv = ["keys", "rotate", f"--store={SETTINGS.engine_store}", "--namespace=vision", "--name=cams"]
    argv += [f"--pvc-root={built['pvc_root']}", f"--old-kek-file={kek_file}", f"--new-kek-file={kek_file}"]
    assert cli.main([*argv, f"--signing-key-file={signing_file}"]) == loader.EXIT_OK
    document = (built["artifact"] / artifact.MANIFEST_NAME).read_bytes()
    assert f'"kekId":"{x25519.PrivateKek(KEK).key_id}"'.encode() in document
    assert _load(built, tmp_path / "served", f"--kek-dir={built['kek_dir']}") == loader.EXIT_OK
    assert tree(tmp_path / "served") == tree(built["repository"])
