"""A spec change is audited with its field managers given as what they are (names clients choose, not who made
the change), and a manager that looks like a key costs that one name, never the audit line or the Event."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import secrets
from typing import Any

import pytest

from kestrel.reconcilers import audit, context
from kestrel.security import audit as audit_records
from tests.unit.tls_fake_kube import FakeKube, body

NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=datetime.UTC)
KEY = secrets.token_bytes(32)
KEY_LIKE = base64.b64encode(KEY).decode()


def _spec_change(caplog: pytest.LogCaptureFixture, managers: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """One pass over a model whose spec went from generation 1 to 2, written by `managers`."""
    obj = body({})
    obj["metadata"]["generation"] = 2
    obj["metadata"]["managedFields"] = [
        {"manager": name, "operation": "Apply", "fieldsV1": {"f:spec": {}}} for name in managers
    ]
    kube = FakeKube()
    ctx = context.Context.load(kube, obj, NOW)
    with caplog.at_level(logging.INFO, logger="kestrel.audit"):
        audit.reconcile(ctx, {"observedGeneration": 1})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "kestrel.audit" and "{" in r.msg]
    events = [message for _, reason, message in kube.events if reason == "SpecChanged"]
    return lines, events


def test_field_managers_are_not_presented_as_who_changed_the_spec(caplog: pytest.LogCaptureFixture) -> None:
    (line,), (event,) = _spec_change(caplog, ["kubectl"])
    assert line["change"] == "spec"
    assert line["fieldManagers"] == ["kubectl"]
    assert line["identity"].startswith("unverified") and "API server's audit log" in line["identity"]
    assert " by " not in event  # the Event used to read "Spec generation 2 (was 1) by kubectl"
    assert "unverified" in event and "kubectl" in event and "audit log" in event


def test_a_key_like_manager_is_redacted_and_the_line_and_event_remain(caplog: pytest.LogCaptureFixture) -> None:
    (line,), (event,) = _spec_change(caplog, ["argocd-controller", KEY_LIKE])
    assert sorted(line["fieldManagers"]) == sorted(["argocd-controller", audit_records.REDACTED])
    assert line["redacted"] == [f"$.fieldManagers[{line['fieldManagers'].index(audit_records.REDACTED)}]"]
    assert "argocd-controller" in event and audit_records.REDACTED in event
    assert KEY_LIKE not in caplog.text and KEY_LIKE not in event
    assert "Refused an audit line" not in caplog.text
