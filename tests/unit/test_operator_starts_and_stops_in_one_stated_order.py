"""The operator has one startup and one cleanup handler (handlers/lifecycle.py), so the order of its start is the
one its code states: the API client and settings before the threads that use them; Kopf runs several handlers of
one activity in an order nothing here would say."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf
import pytest
from kopf._core.intents import causes

from kestrel import handlers
from kestrel import settings as operator_settings
from kestrel.handlers import lifecycle, modeldeployment, owned, state

CONFIGURATION = operator_settings.Configuration(settings=operator_settings.Settings(engine_store="s3://engines"))


def _activity(memo: object) -> dict[str, Any]:
    """What Kopf passes an activity handler."""
    return {
        "retry": 0,
        "started": datetime.datetime.now(datetime.UTC),
        "runtime": datetime.timedelta(0),
        "logger": logging.getLogger("kopf"),
        "memo": memo,
    }


def test_one_startup_and_one_cleanup_handler_are_registered() -> None:
    activities = handlers.registry()._activities.get_all_handlers()
    starts = [h.fn for h in activities if h.activity == causes.Activity.STARTUP]
    stops = [h.fn for h in activities if h.activity == causes.Activity.CLEANUP]
    assert starts == [lifecycle.startup] and stops == [lifecycle.cleanup]


def test_the_start_configures_first_and_the_stop_reverses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def record(name: str) -> Any:
        return lambda *args, **kwargs: calls.append(name)

    monkeypatch.setattr(state, "startup", record("configure"))
    monkeypatch.setattr(owned, "start_owned_passes", record("owned passes"))
    monkeypatch.setattr(modeldeployment, "start_drift_check", record("drift check"))
    monkeypatch.setattr(modeldeployment, "stop_drift_check", record("stop drift check"))
    monkeypatch.setattr(owned, "stop_owned_passes", record("stop owned passes"))
    # What `kestrel run` hands Kopf as its memo: the configuration it read from the environment.
    activity = _activity(CONFIGURATION)
    lifecycle.startup(settings=kopf.OperatorSettings(), **activity)
    lifecycle.cleanup(settings=kopf.OperatorSettings(), **activity)
    assert calls == ["configure", "owned passes", "drift check", "stop drift check", "stop owned passes"]


def test_a_start_without_the_configuration_stops_and_says_how_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "startup", lambda **_: pytest.fail("configured without a configuration"))
    with pytest.raises(kopf.PermanentError, match="start the operator with `kestrel run`"):
        lifecycle.startup(settings=kopf.OperatorSettings(), **_activity(kopf.Memo()))
