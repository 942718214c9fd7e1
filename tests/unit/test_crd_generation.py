"""The CRD is generated from the models, structural, and the committed copy matches the generator."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from kestrel.api import crd

ROOT = pathlib.Path(__file__).parents[2]
COMMITTED = ROOT / "crds" / "modeldeployments.kestrel.dev.yaml"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.items():
            found += _walk(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _walk(child, f"{path}[{index}]")
    return found


def test_committed_crd_matches_the_generator() -> None:
    assert COMMITTED.read_text() == crd.render_yaml(), "crds/ is stale: run `make crd` and commit the result"


def test_schema_is_structural() -> None:
    schema = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "title", "$defs"):
            assert forbidden not in node, f"{forbidden} at {path}"
        assert node.get("additionalProperties") is not False, path
        assert node.get("default", ...) is not None, f"null default at {path}"


def test_names_columns_and_status_subresource() -> None:
    rendered = crd.render()
    assert rendered["metadata"]["name"] == "modeldeployments.kestrel.dev"
    assert rendered["spec"]["scope"] == "Namespaced"
    assert rendered["spec"]["names"]["shortNames"] == ["mdep"]
    # Not in `all`: `kubectl delete all --all` must not delete models (and, through their finalizers, engines).
    assert rendered["spec"]["names"]["categories"] == ["kestrel"]
    version = rendered["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
    assert columns == ["Ready", "Format", "Precision", "Replicas", "Endpoint", "Age"]


def test_cel_rules_carry_messages_that_name_fields() -> None:
    schema = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = [rule for _, node in _walk(schema) for rule in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 15
    for rule in rules:
        assert rule["message"].startswith("spec."), json.dumps(rule)


def test_quantities_are_int_or_string() -> None:
    schema = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    requests = schema["properties"]["spec"]["properties"]["engine"]["properties"]["build"]["properties"]["resources"][
        "properties"
    ]["requests"]
    assert requests["additionalProperties"] == {"x-kubernetes-int-or-string": True}


def test_exclusive_bounds_use_openapi_3_0_booleans() -> None:
    validation = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "validation"
    ]
    latency = validation["properties"]["latencyBudgetMs"]
    assert latency["minimum"] == 0
    assert latency["exclusiveMinimum"] is True


def test_chart_carries_the_same_crd() -> None:
    chart_copy = ROOT / "charts" / "kestrel" / "crds" / COMMITTED.name
    assert chart_copy.read_text() == COMMITTED.read_text(), "charts/kestrel/crds is stale: run `make crd`"
