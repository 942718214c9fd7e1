"""`kestrel load` says how far its download got while it runs (a multi-GB engine takes a while in an init
container), and how much it fetched in how long when it is done."""

from __future__ import annotations

import io
import pathlib
import threading
import time

from kestrel import loader


def test_a_growing_download_is_reported_and_a_still_one_is_not_repeated(tmp_path: pathlib.Path) -> None:
    folder, said = tmp_path / "artifact", io.StringIO()
    written = threading.Event()

    def download() -> None:
        (folder / "files").mkdir(parents=True)
        with (folder / "files" / "model.onnx.enc").open("wb") as out:
            for _ in range(3):
                out.write(b"x" * 500_000)
                out.flush()
                time.sleep(0.15)
        written.set()
        time.sleep(0.3)  # the size stands still: no new line

    with loader._download_progress(folder, said, interval=0.05):
        download()
    lines = said.getvalue().splitlines()
    assert written.is_set() and lines, lines
    assert all(line.startswith("kestrel load: fetching, ") for line in lines)
    assert lines[-1] == "kestrel load: fetching, 1.5 MB so far"
    assert len(lines) == len(set(lines))  # each size said once


def test_the_count_survives_a_download_that_removes_its_folder(tmp_path: pathlib.Path) -> None:
    assert loader._bytes_under(tmp_path / "absent") == 0
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"12345")
    assert loader._bytes_under(tmp_path) == 5
