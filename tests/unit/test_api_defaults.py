"""Defaults live in the models, and a spec survives YAML -> model -> YAML unchanged."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from kestrel.api import base, spec
from tests.unit.spec_support import UNMEASURED

EXAMPLES = sorted(pathlib.Path(__file__).parents[2].joinpath("examples").glob("*/modeldeployment.yaml"))


def minimal() -> spec.ModelDeploymentSpec:
    return spec.parse({"model": {"source": {"uri": "file:///models/shapes.pt"}}, "validation": UNMEASURED})


def test_minimal_spec_gets_documented_defaults() -> None:
    parsed = minimal()
    assert parsed.model.imgsz == 640
    assert parsed.model.task == "detect"
    assert (parsed.engine.format, parsed.engine.precision) == ("onnx", "fp32")
    assert (parsed.engine.batch.max, parsed.engine.batch.dynamic) == (8, True)
    assert parsed.engine.build.active_deadline_seconds == 3600
    assert parsed.validation.max_map_drop == 0.02
    assert parsed.target.environment == "cpu"
    assert parsed.target.gpu is None
    assert parsed.serving.replicas is None
    assert parsed.serving.protocols == ["grpc", "http"]
    assert parsed.serving.triton.dynamic_batching.enabled is True
    assert parsed.rollout.strategy == "rolling"
    assert parsed.rollout.auto_rollback is True
    assert parsed.security.tls.mode == "operator"
    assert parsed.security.encryption.enabled is False
    assert parsed.security.access.require_api_key is True


def test_wire_form_uses_camel_case_and_leaves_out_unset_optionals() -> None:
    wire = minimal().to_wire()
    assert wire["validation"] == {"maxMapDrop": 0.02, **UNMEASURED}
    assert wire["engine"]["workspaceGiB"] == 4
    assert "calibration" not in wire["engine"]
    assert wire["serving"]["triton"]["dynamicBatching"] == {"enabled": True}


def test_snake_case_names_are_accepted_in_python() -> None:
    parsed = spec.ModelDeploymentSpec(
        model=spec.ModelSpec(source=spec.SourceSpec(uri="file:///m.pt")),
        validation=spec.ValidationSpec(dataset="file:///data/data.yaml"),
    )
    assert parsed.validation.max_map_drop == 0.02


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_round_trips_through_the_model(path: pathlib.Path) -> None:
    document = yaml.safe_load(path.read_text())
    first = spec.parse(document["spec"])
    dumped = yaml.safe_dump(first.to_wire())
    second = spec.parse(yaml.safe_load(dumped))
    assert second == first
    assert second.to_wire() == first.to_wire()
    # Everything the example sets is kept verbatim.
    assert _is_subset(document["spec"], first.to_wire())


def _is_subset(part: object, whole: object) -> bool:
    if isinstance(part, dict) and isinstance(whole, dict):
        return all(key in whole and _is_subset(value, whole[key]) for key, value in part.items())
    return part == whole


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("15m", 900.0), ("2160h", 7_776_000.0), ("1h30m", 5400.0), ("250ms", 0.25)]
)
def test_durations_parse_like_go(text: str, seconds: float) -> None:
    assert base.parse_duration(text) == seconds


def test_malformed_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        base.parse_duration("2 minutes")
