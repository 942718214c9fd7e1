"""KESTREL_LOG_FORMAT=json: one JSON object per line with named fields only, Kopf's object reference included."""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from kestrel import allocator, cli, logs

SECRET = "c2VjcmV0LXRva2VuLXZhbHVlLXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQ="
BODY: kopf.RawBody = {
    "apiVersion": "kestrel.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "cams", "namespace": "vision", "uid": "u-1"},
}


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose one handler writes JSON lines into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("kestrel.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logs.use("json", logger)
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_record_is_one_json_object_with_the_named_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("Created Deployment %s", "vision/cams-triton")
    (line,) = _lines(stream)
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["level"] == "INFO"
    assert line["logger"] == "kestrel.test.logs"
    assert line["message"] == "Created Deployment vision/cams-triton"
    assert line["time"].endswith("Z")
    assert len(line["time"]) == len("2025-01-01T00:00:00.000Z")


def test_kopfs_object_loggers_add_the_object_reference_and_nothing_else() -> None:
    # Kopf's own per-object logger, as handlers receive it: it attaches the object's reference and its settings.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    kopf_logger = logging.getLogger("kopf.objects")
    kopf_logger.addHandler(handler)
    try:
        logger = kopf.ObjectLogger(body=kopf.Body(BODY), settings=kopf.OperatorSettings())
        logger.warning("Build failed", extra={"token": SECRET})
    finally:
        kopf_logger.removeHandler(handler)
    (line,) = _lines(stream)
    assert set(line) == {"time", "level", "logger", "message", "object"}
    assert line["object"] == {
        "apiVersion": "kestrel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "namespace": "vision",
        "name": "cams",
        "uid": "u-1",
    }
    assert line["level"] == "WARNING"
    assert SECRET not in stream.getvalue()
    assert "settings" not in stream.getvalue()


def test_extra_fields_are_not_written(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("Rotated the API key", extra={"token": SECRET, "password": SECRET, "Authorization": SECRET})
    (line,) = _lines(stream)
    assert set(line) == {"time", "level", "logger", "message"}
    assert SECRET not in stream.getvalue()


def test_a_traceback_stays_on_the_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise RuntimeError("the store answered 503\nretrying")
    except RuntimeError:
        logger.exception("Failed to list engines")
    (line,) = _lines(stream)
    assert line["message"] == "Failed to list engines"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: the store answered 503\nretrying" in line["exception"]


def test_text_leaves_the_formatter_alone() -> None:
    logger = logging.getLogger("kestrel.test.logs.text")
    handler = logging.StreamHandler(io.StringIO())
    formatter = logging.Formatter("%(message)s")
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    try:
        logs.use("text", logger)
        assert handler.formatter is formatter
    finally:
        logger.removeHandler(handler)


def test_kestrel_run_writes_json_lines_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    asyncio_logger = logging.getLogger("asyncio")
    saved_asyncio = (asyncio_logger.handlers[:], asyncio_logger.propagate)
    monkeypatch.setenv("KESTREL_ENGINE_STORE", "s3://engines")
    monkeypatch.setenv("KESTREL_LOG_FORMAT", "json")
    monkeypatch.setenv("POD_ID", "kestrel-operator-test")
    monkeypatch.setattr(allocator, "limit_arenas", lambda: "Kept the C library's default malloc arenas: test")
    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: ran.append(kwargs))
    try:
        cli._run(argparse.Namespace(verbose=False, metrics_port=0, health_port=0))
        logging.getLogger("kestrel.handlers").warning("loaded %s", "-----BEGIN PRIVATE KEY-----\nMIIE...")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        asyncio_logger.handlers[:], asyncio_logger.propagate = saved_asyncio
    assert ran
    # The start-up line `kestrel run` logs once Kopf's handler is in place, read back as Kopf writes it (stderr).
    *_, started, leaked = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (started["logger"], started["message"]) == ("kestrel", "Kept the C library's default malloc arenas: test")
    # The redacting filter sits on the same handlers: a line that carries key material is kept, its text not.
    assert leaked["logger"] == "kestrel.handlers" and "PRIVATE KEY" not in json.dumps(leaked)
    assert leaked["message"].startswith("[redacted: the log record looked like key material (PEM block)]")
