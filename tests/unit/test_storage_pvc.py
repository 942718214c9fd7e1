"""The engine store on a mounted volume, and the layout both stores share: fast, temporary folders only."""

from __future__ import annotations

import datetime
import os
import pathlib

import pytest

from kestrel import storage
from kestrel.storage import errors, layout, pvc, store

NS, NAME = "vision", "cams"
HOUR = datetime.timedelta(hours=1)


def _artifact(root: pathlib.Path, *, marker: bytes = b"v1", extra: str | None = None) -> pathlib.Path:
    (root / "files" / "model" / "1").mkdir(parents=True)
    (root / "files" / "model" / "config.pbtxt").write_bytes(b"config " + marker)
    (root / "files" / "model" / "1" / "model.onnx").write_bytes(os.urandom(300_000) + marker)
    if extra:
        (root / "files" / extra).write_bytes(b"extra")
    (root / layout.MANIFEST_NAME).write_bytes(b'{"manifest": "' + marker + b'"}')
    return root


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def bed(tmp_path: pathlib.Path) -> pvc.PvcStore:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)  # the claim's mount point
    built = storage.open_store("pvc://engines/kestrel/v1", pvc_root=tmp_path / "mnt")
    assert isinstance(built, pvc.PvcStore)
    assert built.root == tmp_path / "mnt" / "engines" / "kestrel" / "v1"
    return built


def test_round_trip_is_byte_identical_and_exists_only_then(bed: pvc.PvcStore, tmp_path: pathlib.Path) -> None:
    source = _artifact(tmp_path / "art")
    ref = layout.EngineRef(NS, NAME, "a" * 64)
    assert not bed.exists(ref)
    sent = bed.upload(source, ref)
    assert bed.exists(ref)
    assert (bed.root / NS / NAME / ref.key / layout.MANIFEST_NAME).is_file()
    got = bed.download(ref, tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(source)
    assert sent == got == store.Transfer(files=3, bytes=sum(len(v) for v in _tree(source).values()))
    assert bed.read_manifest(ref) == (source / layout.MANIFEST_NAME).read_bytes()


def test_an_engine_without_its_manifest_does_not_exist(bed: pvc.PvcStore, tmp_path: pathlib.Path) -> None:
    ref = layout.EngineRef(NS, NAME, "k1")
    bed.upload(_artifact(tmp_path / "art"), ref)
    (bed.root / NS / NAME / "k1" / layout.MANIFEST_NAME).unlink()
    assert not bed.exists(ref)
    with pytest.raises(errors.EngineNotFoundError):
        bed.download(ref, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [(e.key, e.complete) for e in bed.list_engines(NS, NAME)] == [("k1", False)]


def test_upload_refuses_what_is_not_an_artifact(bed: pvc.PvcStore, tmp_path: pathlib.Path) -> None:
    ref = layout.EngineRef(NS, NAME, "k1")
    plain = tmp_path / "plain"
    (plain / "files").mkdir(parents=True)
    (plain / "files" / "x").write_bytes(b"x")
    with pytest.raises(errors.StoreConfigError, match=r"manifest\.json"):
        bed.upload(plain, ref)
    linked = _artifact(tmp_path / "linked")
    (linked / "files" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(errors.StoreConfigError, match="not a regular file"):
        bed.upload(linked, ref)
    assert bed.list_engines(NS, NAME) == []


def test_reupload_replaces_the_engine_and_drops_stale_files(bed: pvc.PvcStore, tmp_path: pathlib.Path) -> None:
    ref = layout.EngineRef(NS, NAME, "k1")
    bed.upload(_artifact(tmp_path / "one", extra="stale.bin"), ref)
    second = _artifact(tmp_path / "two", marker=b"v2")
    bed.upload(second, ref)
    bed.download(ref, tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(second)
    assert [p.name for p in (bed.root / NS / NAME).iterdir()] == ["k1"]  # no staging or trash left


def test_download_needs_an_empty_target_and_leaves_nothing_on_failure(
    bed: pvc.PvcStore, tmp_path: pathlib.Path
) -> None:
    ref = layout.EngineRef(NS, NAME, "k1")
    bed.upload(_artifact(tmp_path / "art"), ref)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_bytes(b"mine")
    with pytest.raises(errors.StoreConfigError, match="not an empty directory"):
        bed.download(ref, busy)
    assert _tree(busy) == {"keep": b"mine"}
    # A link planted in the store is refused, and the half-written target is removed again.
    (bed.root / NS / NAME / "k1" / "files" / "evil").symlink_to("/etc/hostname")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(errors.StoreConfigError, match="not a regular file"):
        bed.download(ref, empty)
    assert list(empty.iterdir()) == []


def test_garbage_collection_keeps_what_it_is_told(bed: pvc.PvcStore, tmp_path: pathlib.Path) -> None:
    for key in ("a1", "b2", "c3", "d4"):
        bed.upload(_artifact(tmp_path / key), layout.EngineRef(NS, NAME, key))
    other = layout.EngineRef(NS, "other", "a1")
    bed.upload(_artifact(tmp_path / "other"), other)
    folder = bed.root / NS / NAME
    fresh = folder / ".upload-e5-0000"
    fresh.mkdir()
    old = folder / ".upload-f6-0000"
    old.mkdir()
    (old / "part").write_bytes(b"x")
    two_hours_ago = (datetime.datetime.now(datetime.UTC) - 2 * HOUR).timestamp()
    for path in (old / "part", old):
        os.utime(path, (two_hours_ago, two_hours_ago))

    removed = bed.collect_garbage(NS, NAME, {"b2", "c3"})

    assert removed == [".upload-f6-0000", "a1", "d4"]
    assert sorted(p.name for p in folder.iterdir()) == [".upload-e5-0000", "b2", "c3"]
    assert bed.exists(other)
    assert bed.collect_garbage(NS, NAME, {"b2", "c3"}) == []


def test_a_claim_that_is_not_mounted_is_refused_not_written_around(tmp_path: pathlib.Path) -> None:
    unmounted = storage.open_store("pvc://elsewhere/kestrel", pvc_root=tmp_path / "mnt")
    ref = layout.EngineRef(NS, NAME, "k1")
    with pytest.raises(errors.StoreConfigError, match="not mounted"):
        unmounted.upload(_artifact(tmp_path / "art"), ref)
    with pytest.raises(errors.StoreConfigError, match="not mounted"):
        unmounted.exists(ref)
    assert not (tmp_path / "mnt").exists()


def test_select_garbage_spares_recent_incomplete_uploads() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    engines = [
        store.StoredEngine("kept", True, now - 5 * HOUR),
        store.StoredEngine("old", True, now - 5 * HOUR),
        store.StoredEngine("new", True, now),
        store.StoredEngine("uploading", False, now - HOUR / 2),
        store.StoredEngine("abandoned", False, now - HOUR),
    ]
    assert store.select_garbage(engines, {"kept"}, now=now) == ["abandoned", "new", "old"]


def test_manifest_replacement_is_atomic_and_needs_an_engine(bed: pvc.PvcStore, tmp_path: pathlib.Path) -> None:
    ref = layout.EngineRef(NS, NAME, "k1")
    with pytest.raises(errors.EngineNotFoundError):
        bed.replace_manifest(ref, b"{}")
    bed.upload(_artifact(tmp_path / "art"), ref)
    bed.replace_manifest(ref, b'{"rotated": 1}')
    assert bed.read_manifest(ref) == b'{"rotated": 1}'
    assert sorted(p.name for p in (bed.root / NS / NAME / "k1").iterdir()) == ["files", "manifest.json"]


@pytest.mark.parametrize(
    ("namespace", "name", "key"),
    [("Vision", NAME, "k"), ("..", NAME, "k"), (NS, "a/b", "k"), (NS, NAME, ".."), (NS, NAME, "a/b"), (NS, NAME, "")],
)
def test_engine_refs_refuse_names_that_are_not_one_segment(namespace: str, name: str, key: str) -> None:
    with pytest.raises(errors.StoreConfigError):
        layout.EngineRef(namespace, name, key)


def test_store_and_engine_uris_parse_and_print_back() -> None:
    location, ref = layout.parse_engine_uri("s3://engines/kestrel/prod/vision/cams/" + "f" * 64)
    assert location == layout.StoreLocation("s3", "engines", "kestrel/prod")
    assert ref == layout.EngineRef("vision", "cams", "f" * 64)
    assert location.engine_uri(ref) == "s3://engines/kestrel/prod/vision/cams/" + "f" * 64
    assert layout.parse_engine_uri("pvc://claim/ns/n/k")[0] == layout.StoreLocation("pvc", "claim", "")
    for bad in ("http://x/y", "s3://Bad_Bucket/p", "s3://bucket/../p", "pvc://", "s3://bucket/a?x=1"):
        with pytest.raises(errors.StoreConfigError):
            layout.parse_store_uri(bad)
    with pytest.raises(errors.StoreConfigError):
        layout.parse_engine_uri("s3://bucket/ns/name")
