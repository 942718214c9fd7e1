"""`kestrel load` into a memory-backed volume: refused on the mount point itself, loaded into a folder inside it.

The Triton pod's loader used to unpack onto `/models`, the emptyDir's mount point: its staging folder went to `/`
(read-only in the pod) and the final rename onto a mount point fails with EBUSY. These tests mount a real tmpfs,
as the kubelet does for a memory-backed emptyDir (mounting needs root, as the test bed's real node does).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator

import pytest

from kestrel import cli, loader
from kestrel.security import errors as security_errors
from kestrel.storage import layout, pvc
from tests.cluster.storage_fixtures import REF, Keys, packed_engine, tree

STORE_URI = "pvc://engines/kestrel"


@pytest.fixture
def volume(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the test bed's real node runs as root too)")
    mount_point = tmp_path / "models"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def stored(tmp_path: pathlib.Path) -> tuple[pathlib.Path, Keys]:
    keys = Keys.generate()
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    engines = pvc.PvcStore(layout.parse_store_uri(STORE_URI), tmp_path / "mnt")
    engines.upload(packed_engine(tmp_path / "build", keys, weights_size=1 << 20), REF)
    return tmp_path / "mnt", keys


def test_loading_onto_the_mount_point_is_refused_with_the_fix(
    volume: pathlib.Path, stored: tuple[pathlib.Path, Keys], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount, keys = stored
    with pytest.raises(security_errors.TargetIsMountPointError, match=r"models/repository"):
        loader.load(
            f"{STORE_URI}/{REF.path}", volume, kek_provider=keys.kek, verify_key=keys.verify_key, pvc_root=mount
        )
    files = keys.write(tmp_path / "keys")
    argv = ["load", f"--from={STORE_URI}/{REF.path}", f"--to={volume}", f"--pvc-root={mount}"]
    argv += [f"--kek-file={files['kek']}", f"--verify-key-file={files['verify-key']}"]
    assert cli.main(argv) == loader.EXIT_BAD_INPUT
    assert "is a mount point" in capsys.readouterr().err
    assert list(volume.iterdir()) == []


def test_a_folder_inside_the_volume_receives_the_whole_repository(
    volume: pathlib.Path, stored: tuple[pathlib.Path, Keys], tmp_path: pathlib.Path
) -> None:
    mount, keys = stored
    target = volume / "repository"
    loader.load(f"{STORE_URI}/{REF.path}", target, kek_provider=keys.kek, verify_key=keys.verify_key, pvc_root=mount)
    assert tree(target) == tree(tmp_path / "build" / "repository")
    # Nothing was staged outside the volume, and no staging folder is left inside it.
    assert [p.name for p in volume.iterdir()] == ["repository"]
