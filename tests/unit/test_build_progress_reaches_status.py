"""A build says where it is in its log (`kestrel-progress` lines), and the operator mirrors the newest believable
line into status.build and the Built condition while the build runs; nothing else of the log is believed."""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

import pytest

from kestrel.api import conditions
from kestrel.engine import progress
from kestrel.manifests import build_job
from kestrel.reconcilers.engine import engine, storage
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stage_is_said_at_its_start_and_end_and_at_most_once_a_second_between() -> None:
    out, clock = io.StringIO(), Clock()
    report = progress.Reporter(out, clock, interval=1.0)
    report("validate", 0, 80)
    for done in range(8, 80, 8):
        clock.now += 0.3
        report("validate", done, 80)
    report("validate", 80, 80)
    lines = [json.loads(line.removeprefix(progress.PREFIX)) for line in out.getvalue().splitlines()]
    assert lines[0] == {"stage": "validate", "done": 0, "total": 80} and lines[-1]["done"] == 80
    assert 3 <= len(lines) <= 6  # 2.7 s of updates every 0.3 s: one line a second, plus both edges


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('kestrel-progress {"stage":"validate","done":40,"total":80}', progress.Progress("validate", 40, 80)),
        ('kestrel-progress {"stage":"export"}', progress.Progress("export")),
        ('kestrel-progress {"stage":"fetch","done":1048576}', progress.Progress("fetch", 1048576)),
    ],
)
def test_a_well_formed_line_is_believed(line: str, expected: progress.Progress) -> None:
    assert progress.parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        'kestrel-progress {"stage":"pwned: see http://x"}',
        'kestrel-progress {"stage":"validate","done":-1,"total":80}',
        'kestrel-progress {"stage":"validate","done":true}',
        'kestrel-progress {"stage":"validate","done":81,"total":80}',
        'kestrel-progress {"stage":"validate","done":1,"total":80,"message":"hello"}',
        'kestrel-progress {"stage":"validate","done":1e30}',
        "kestrel-progress not json",
        'kestrel-progress {"stage":"validate","done":1,"total":' + "9" * 300 + "}",
        'progress {"stage":"validate"}',
    ],
)
def test_anything_else_is_not(line: str) -> None:
    assert progress.parse(line) is None


def test_the_newest_believable_line_wins_over_noise_after_it() -> None:
    text = "\n".join(
        [
            'kestrel-progress {"stage":"baseline","done":80,"total":80}',
            'kestrel-progress {"stage":"validate","done":40,"total":80}',
            "Ultralytics 8.4 ... some export chatter",
            'kestrel-progress {"stage":"made-up"}',
        ]
    )
    assert progress.newest(text) == progress.Progress("validate", 40, 80)


def _pass(kube: FakeKube, obj: dict[str, Any], mount: pathlib.Path) -> Any:
    ctx = support.ctx_of(kube, obj)
    if ctx.condition(conditions.BUILT) is None:
        ctx.set(conditions.BUILT, "False", "Building", "started")
    engine.reconcile(ctx, support.settings(mount), storage.Access())
    obj["status"] = ctx.status.to_wire()
    return ctx


RUNNING = {"phase": "Running", "containerStatuses": [{"name": "build", "state": {"running": {}}}]}


def test_a_running_builds_stage_is_in_status_and_the_built_message(tmp_path: pathlib.Path) -> None:
    (tmp_path / "engines").mkdir()
    kube, obj = FakeKube(), support.body()
    job_name = support.running_build(kube, obj, RUNNING)
    log = 'kestrel-progress {"stage":"validate","done":40,"total":80}\nsome chatter with a token=abc\n'
    kube.logs[("vision", f"{job_name}-x1", build_job.CONTAINER)] = log
    ctx = _pass(kube, obj, tmp_path)
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.reason == "Building"
    assert built.message == f"Build Job {job_name} is running: validate 40/80 images"
    assert ctx.status.to_wire()["build"] == {
        "job": job_name,
        "stage": "validate",
        "done": 40,
        "total": 80,
        "unit": "images",
    }
    assert "token" not in json.dumps(ctx.status.to_wire())


def test_a_log_that_cannot_be_read_leaves_the_stage_unknown(tmp_path: pathlib.Path) -> None:
    (tmp_path / "engines").mkdir()
    kube, obj = FakeKube(), support.body()
    job_name = support.running_build(kube, obj, RUNNING)
    ctx = _pass(kube, obj, tmp_path)  # no log at all: the fake answers 404, as for a container not started
    built = ctx.condition(conditions.BUILT)
    assert built is not None and built.message == f"Build Job {job_name} is running"
    assert "build" not in ctx.status.to_wire()
