"""charts/kestrel/README.md is testbed/chart_readme.py's output: every value documented, never edited by hand."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from testbed import chart_readme
from tests.unit.helm_support import CHART

README = CHART / "README.md"


def _paths(values: dict[str, object], prefix: str = "") -> set[str]:
    """Every value's dotted path down to scalars, lists and empty maps."""
    found: set[str] = set()
    for key, value in values.items():
        if isinstance(value, dict) and value:
            found |= _paths(value, f"{prefix}{key}.")
        else:
            found.add(f"{prefix}{key}")
    return found


def test_committed_readme_is_the_generated_one() -> None:
    assert README.read_text() == chart_readme.render(), (
        "charts/kestrel/README.md is stale: run `make chart-readme` and commit the result"
    )


def test_every_value_has_a_row_with_a_description_and_its_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = {row.key: row for row in chart_readme.values()}
    # A value is documented by its own row, or by the row of a map written in one line (resources.requests).
    for path in _paths(values):
        assert [key for key in rows if path == key or path.startswith(f"{key}.")], f"{path} has no row"
    for key, row in rows.items():
        assert row.description.strip(), key
        found: object = values
        for part in key.split("."):
            assert isinstance(found, dict)
            found = found[part]
        assert row.default == found, key


def test_types_come_from_the_schema() -> None:
    rows = {row.key: row for row in chart_readme.values()}
    assert rows["trustSeconds"].type == "integer or null"
    assert rows["imagePullSecrets"].type == "array"
    assert rows["logFormat"].type == "string"


def test_a_value_without_a_comment_is_an_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "values.yaml").write_text("# Documented.\nworkers: 16\n\nverbose: false\n")
    (tmp_path / "values.schema.json").write_text("{}")
    with pytest.raises(ValueError, match="verbose has no comment"):
        chart_readme.values(tmp_path)


def test_the_readme_says_how_to_upgrade_the_crd_and_in_which_order_to_uninstall() -> None:
    text = README.read_text()
    (crd,) = (CHART / "crds").glob("*.yaml")
    assert f"kubectl apply --server-side --force-conflicts -f charts/kestrel/crds/{crd.name}" in text
    assert "`helm upgrade` does not update the CRD" in text
    uninstall = text.split("## Uninstall", 1)[1]
    order = ["kubectl delete modeldeployments.kestrel.dev --all", "helm uninstall", f"kubectl delete crd {crd.stem}"]
    assert [uninstall.index(step) for step in order] == sorted(uninstall.index(step) for step in order)
    assert "kestrel.dev/finalizer" in uninstall
