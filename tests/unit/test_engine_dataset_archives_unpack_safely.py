"""A dataset archive is the user's input: it unpacks to regular files below its folder, or not at all; and one
digest is fetched once per build."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kestrel.api import errors as api_errors
from kestrel.engine import dataset_archives, errors, fetch

URI = "https://data.example.com/shapes.tar.gz"


def _tar(target: Path, members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return target


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _entry(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


GOOD = [
    _file("./data.yaml", b"path: .\ntrain: images/train\nval: images/val\nnames:\n  0: circle\n"),
    _file("./images/val/a.png", b"png-a"),
    _file("images/train/b.png", b"png-b"),
]


def test_a_well_formed_archive_unpacks_below_its_folder(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", GOOD)
    dataset_archives.unpack(archive, tmp_path / "out", URI)
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert found == ["data.yaml", "images/train/b.png", "images/val/a.png"]


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (_file("../escape.png"), "would unpack outside"),
        (_file("images/../../escape.png"), "would unpack outside"),
        (_file("/etc/cron.d/x"), "would unpack outside"),
        (_entry("images/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (_entry("images/hard", tarfile.LNKTYPE, "data.yaml"), "is a link"),
        (_entry("images/dev", tarfile.CHRTYPE), "is a special file"),
        (_entry("images/fifo", tarfile.FIFOTYPE), "is a special file"),
    ],
)
def test_anything_but_files_below_the_folder_stops_the_unpacking(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], said: str
) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [*GOOD, member])
    with pytest.raises(errors.FetchError, match=said):
        dataset_archives.unpack(archive, tmp_path / "out", URI)
    assert not (tmp_path / "escape.png").exists()


def _fake_fetch(archives: dict[str, Path], calls: list[str]) -> Any:
    def fetch_(uri: str, destination: Path, expected: str | None, options: fetch.FetchOptions) -> Any:
        calls.append(uri)
        body = archives[uri].read_bytes()
        if expected is not None and hashlib.sha256(body).hexdigest() != expected:
            raise errors.ChecksumMismatchError(fetch.SHA256_FIELD, uri, expected, hashlib.sha256(body).hexdigest())
        shutil.copyfile(archives[uri], destination)

    return fetch_


def test_one_digest_is_fetched_once_and_a_wrong_one_names_the_datasets_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _tar(tmp_path / "a.tar.gz", GOOD)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    calls: list[str] = []
    monkeypatch.setattr(fetch, "fetch", _fake_fetch({URI: archive}, calls))
    options, cache = fetch.FetchOptions(), tmp_path / "cache"
    first = dataset_archives.data_yaml(URI, digest, options, "spec.validation.dataset", cache)
    again = dataset_archives.data_yaml(URI, digest, options, "spec.engine.calibration.dataset", cache)
    assert first == again == cache / digest / "data.yaml" and calls == [URI]
    assert sorted(p.name for p in cache.iterdir()) == [digest]  # the archive itself is gone once unpacked
    with pytest.raises(errors.ChecksumMismatchError, match=r"^spec\.validation\.datasetSha256: "):
        dataset_archives.data_yaml(URI, "0" * 64, options, "spec.validation.dataset", cache)


def test_an_archive_without_a_data_yaml_at_its_root_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("shapes/data.yaml", b"names: {}"), _file("shapes/images/a.png")])
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(fetch, "fetch", _fake_fetch({URI: archive}, []))
    with pytest.raises(api_errors.SpecError, match=r"holds no data\.yaml at its root") as refused:
        dataset_archives.data_yaml(URI, digest, fetch.FetchOptions(), "spec.validation.dataset", tmp_path / "c")
    assert refused.value.field == "spec.validation.dataset"
