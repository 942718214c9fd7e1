"""`kestrel upload CHECKPOINT s3://bucket/key`: the file is read once, each block hashed as the uploader takes it,
and the printed spec.model.source carries the sha256 of exactly what was sent; a URI the spec would refuse is
refused before anything is sent. The S3 call is a local stand-in here (tests/engine has the real MinIO one)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pathlib
from typing import Any

import pytest
import yaml

from kestrel import cli
from kestrel.api import spec
from kestrel.commands import transfer_progress, upload
from kestrel.storage import s3

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


class Store:
    """Stands in for storage.s3.put_object: reads as the MinIO SDK does, part by part, and keeps what it got."""

    def __init__(self, part_size: int = 5 << 20) -> None:
        self.part_size = part_size
        self.objects: dict[str, bytes] = {}
        self.reads: list[int] = []

    def __call__(self, uri: str, reader: s3.Readable, size: int, credentials: s3.Credentials) -> None:
        received = b""
        while len(received) < size:
            part = b""
            while len(part) < min(self.part_size, size - len(received)):
                data = reader.read(min(self.part_size, size - len(received)) - len(part))
                if not data:
                    raise OSError("stream having not enough data")
                self.reads.append(len(data))
                part += data
            received += part
        self.objects[uri] = received


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    found = Store()
    monkeypatch.setattr(s3, "put_object", found)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return found


def checkpoint(tmp_path: pathlib.Path, size: int = (12 << 20) + 7) -> pathlib.Path:
    path = tmp_path / "shapes-v3.pt"
    path.write_bytes(os.urandom(size))
    return path


def test_the_printed_source_has_the_sha256_of_what_the_store_received(
    tmp_path: pathlib.Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkpoint(tmp_path)
    assert cli.main(["upload", str(path), "s3://models/shapes/v3.pt"]) == 0
    sent = store.objects["s3://models/shapes/v3.pt"]
    assert sent == path.read_bytes()
    assert max(store.reads) <= upload.BLOCK  # blocks, so the progress line moves while a part fills
    captured = capsys.readouterr()
    printed = yaml.safe_load(captured.out)
    assert printed == {
        "spec": {"model": {"source": {"uri": "s3://models/shapes/v3.pt", "sha256": hashlib.sha256(sent).hexdigest()}}}
    }
    spec.SourceSpec.model_validate(printed["spec"]["model"]["source"])  # pastes into a spec as it is
    assert "credentialsSecret" in captured.err
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in captured.out + captured.err


def test_a_file_that_changes_while_it_is_sent_gets_the_hash_of_the_bytes_sent(tmp_path: pathlib.Path) -> None:
    path = checkpoint(tmp_path, 3 << 20)
    original = path.read_bytes()
    got: dict[str, bytes] = {}

    def put(uri: str, reader: s3.Readable, size: int, credentials: s3.Credentials) -> None:
        first = reader.read(1 << 20)
        with path.open("r+b") as writer:  # someone rewrites the rest of the file mid-upload
            writer.seek(2 << 20)
            writer.write(b"\0" * (1 << 20))
        got[uri] = first + reader.read(1 << 20) + reader.read(1 << 20)

    credentials = s3.Credentials.load(None, CREDENTIALS)
    digest = upload.upload(path, "s3://models/v3.pt", credentials, io.StringIO(), put)
    assert got["s3://models/v3.pt"] != original
    assert digest == hashlib.sha256(got["s3://models/v3.pt"]).hexdigest()


def test_json_output_is_the_same_stanza(
    tmp_path: pathlib.Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkpoint(tmp_path, 1000)
    assert cli.main(["upload", str(path), "s3://models/a%20b.pt", "-o", "json"]) == 0
    source = json.loads(capsys.readouterr().out)["spec"]["model"]["source"]
    assert source == {"uri": "s3://models/a%20b.pt", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("https://models.example/v3.pt", "is not s3://BUCKET/KEY"),
        ("s3://models", "is not s3://BUCKET/KEY"),
        ("s3://models/v3.pt?versionId=2", "is not s3://BUCKET/KEY"),
        ("models/v3.pt", "cannot be a spec.model.source.uri"),
    ],
)
def test_a_uri_that_cannot_be_a_source_is_refused_before_anything_is_sent(
    tmp_path: pathlib.Path, store: Store, capsys: pytest.CaptureFixture[str], uri: str, said: str
) -> None:
    assert cli.main(["upload", str(checkpoint(tmp_path, 10)), uri]) == upload.EXIT_BAD_INPUT
    assert said in capsys.readouterr().err
    assert store.objects == {}


def test_a_missing_file_or_missing_credentials_are_bad_input(
    tmp_path: pathlib.Path, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["upload", str(tmp_path / "absent.pt"), "s3://models/v3.pt"]) == upload.EXIT_BAD_INPUT
    assert "absent.pt is not a file" in capsys.readouterr().err
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert cli.main(["upload", str(checkpoint(tmp_path, 10)), "s3://models/v3.pt"]) == upload.EXIT_BAD_INPUT
    assert "No S3 credentials" in capsys.readouterr().err
    assert store.objects == {}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_at_most_once_a_second_and_the_total_at_the_end() -> None:
    clock, screen = Clock(), Terminal()
    shown = transfer_progress.Progress("Uploading v3.pt", 70 << 20, screen, clock=clock)
    for second in range(1, 5):
        for _ in range(4):  # four blocks a second: one line
            clock.now += 0.25
            shown.advance(4 << 20)
        assert screen.getvalue().count("\r") == second
    clock.now += 0.5
    shown.advance(6 << 20)
    shown.finish()
    assert screen.getvalue().split("\r")[1:] == [
        "Uploading v3.pt 16.0 MiB/70.0 MiB (22%)",
        "Uploading v3.pt 32.0 MiB/70.0 MiB (45%)",
        "Uploading v3.pt 48.0 MiB/70.0 MiB (68%)",
        "Uploading v3.pt 64.0 MiB/70.0 MiB (91%)",
        "Uploading v3.pt 70.0 MiB/70.0 MiB (100%)\n",
    ]


def test_a_total_already_on_screen_is_not_drawn_twice() -> None:
    clock, screen = Clock(), Terminal()
    shown = transfer_progress.Progress("Uploading v3.pt", 10, screen, clock=clock)
    clock.now = 1.0
    shown.advance(10)
    shown.finish()
    assert screen.getvalue() == "\rUploading v3.pt 0.0 MiB/0.0 MiB (100%)\n"


def test_no_progress_when_stderr_is_not_a_terminal_or_the_transfer_is_quick() -> None:
    clock, log = Clock(), io.StringIO()
    shown = transfer_progress.Progress("Uploading v3.pt", 100, log, clock=clock)
    for _ in range(10):
        clock.now += 1
        shown.advance(10)
    shown.finish()
    assert log.getvalue() == ""

    quick, screen = Clock(), Terminal()
    shown = transfer_progress.Progress("Uploading v3.pt", 100, screen, clock=quick)
    quick.now = 0.4
    shown.advance(100)
    shown.finish()
    assert screen.getvalue() == ""


def test_the_upload_command_draws_progress_on_a_terminal_only(
    tmp_path: pathlib.Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = checkpoint(tmp_path, 3 << 20)
    ticks = iter(range(1000))
    slow = functools.partial(transfer_progress.Progress, clock=lambda: float(next(ticks)))  # a second per block
    monkeypatch.setattr(transfer_progress, "Progress", slow)
    screen: Any = Terminal()
    upload.upload(path, "s3://models/v3.pt", s3.Credentials.load(None, CREDENTIALS), screen, store)
    assert "Uploading shapes-v3.pt 3.0 MiB/3.0 MiB (100%)\n" in screen.getvalue()
    log = io.StringIO()
    upload.upload(path, "s3://models/v3.pt", s3.Credentials.load(None, CREDENTIALS), log, store)
    assert log.getvalue() == ""
