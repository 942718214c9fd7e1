"""The chart works inside a parent (umbrella) chart: `global` values are tolerated, other unknown keys refused."""

from __future__ import annotations

import pathlib
import shutil

import yaml

from tests.unit import helm_support
from tests.unit.helm_support import CHART, find, refused, render


def test_global_values_are_tolerated() -> None:
    assert find(render("global.foo=bar", "global.imageRegistry=registry.example.com"), "Deployment")


def test_unknown_top_level_keys_are_still_refused() -> None:
    assert "additional properties 'replica' not allowed" in refused("replica=1")
    assert "additional properties 'replica' not allowed" in refused("global.foo=bar", "replica=1")


def test_a_parent_chart_renders_it_with_its_own_values(tmp_path: pathlib.Path) -> None:
    # Helm gives every subchart the parent's `global` (an empty one when the parent sets none): a schema that
    # refused the key made the chart unusable as a dependency.
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "kestrel")
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "platform", "version": "1.0.0", "type": "application"})
    )
    (parent / "values.yaml").write_text(yaml.safe_dump({"global": {"team": "ml"}, "kestrel": {"workers": 8}}))
    done = helm_support.helm("template", "platform", str(parent), "--namespace=kestrel-system")
    assert done.returncode == 0, done.stderr
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {"name": "KESTREL_WORKERS", "value": "8"} in container["env"]
