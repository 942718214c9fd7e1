"""An engine whose accuracy was not measured: rolled out only when the spec skips the measurement on purpose, and
then said in the Validated condition (reason NotMeasured, with the spec's reason), a Warning Event and the audit
log. Without the skip the same engine is Validated=False and nothing serves it.

Engines are published to a pvc:// store as `kestrel build` publishes them, and the operator's engine reconciler
finds them there (the cache path: the same `_record` a finished build Job goes through).
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import pytest

from kestrel.api import conditions, result
from kestrel.reconcilers import audit
from kestrel.reconcilers.engine import engine, storage
from kestrel.reconcilers.serving import serving
from tests.unit import store_support as support
from tests.unit.tls_fake_kube import FakeKube

SKIPPED = result.Gate(
    passed=True,
    reason="NotMeasured",
    message="accuracy not measured (spec.validation.skip: no labelled images of this camera yet); passed the other "
    "checks: max abs output difference 0.0012 on the probe image, p95 8.10 ms at batch 1",
)
REFUSED = result.Gate(
    passed=False,
    reason="NotMeasured",
    message="accuracy was not measured (no validation dataset): set spec.validation.dataset to a YOLO data.yaml, "
    "or spec.validation.skip.reason to roll out without measuring it",
)


@pytest.fixture
def mount(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "mnt" / "engines").mkdir(parents=True)
    return tmp_path / "mnt"


def _pass(kube: FakeKube, obj: dict[str, Any], mount: pathlib.Path) -> Any:
    before = dict(obj.get("status") or {})
    ctx = support.ctx_of(kube, obj)
    engine.reconcile(ctx, support.settings(mount), storage.Access())
    audit.reconcile(ctx, before)
    obj["status"] = ctx.status.to_wire()
    return ctx


def test_a_skipped_measurement_validates_with_reason_not_measured_and_the_specs_reason(
    tmp_path: pathlib.Path, mount: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj), gate=SKIPPED)
    with caplog.at_level(logging.INFO, logger="kestrel.audit"):
        ctx = _pass(kube, obj, mount)
    validated = ctx.condition(conditions.VALIDATED)
    assert validated is not None and (validated.status, validated.reason) == ("True", "NotMeasured")
    assert "no labelled images of this camera yet" in validated.message
    (warning,) = [e for e in kube.events if e[1] == "NotMeasured"]
    assert warning[0] == "Warning" and "no labelled images of this camera yet" in warning[2]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "kestrel.audit"]
    (said,) = [line for line in lines if line["change"] == "validation"]
    assert "no labelled images of this camera yet" in said["new"]["notMeasured"]
    # Serving takes it: the spec asked for this rollout.
    assert serving._desired_key(ctx) == key


def test_an_unmeasured_engine_without_the_skip_is_not_validated_and_nothing_serves_it(
    tmp_path: pathlib.Path, mount: pathlib.Path
) -> None:
    kube, obj = FakeKube(), support.body()
    key = support.key_of(obj)
    support.publish_engine(tmp_path, mount, key, support.signing_secret(kube, obj), gate=REFUSED)
    ctx = _pass(kube, obj, mount)
    validated = ctx.condition(conditions.VALIDATED)
    assert validated is not None and (validated.status, validated.reason) == ("False", "NotMeasured")
    assert "spec.validation.dataset" in validated.message
    assert serving._desired_key(ctx) is None
    assert [e[0] for e in kube.events if e[1] == "NotMeasured"] == ["Warning"]
