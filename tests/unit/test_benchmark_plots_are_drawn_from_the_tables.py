"""docs/img/engine-latency-vs-map.svg is the picture of docs/benchmarks.md's Engine table as it stands: redrawn from
the table, it is byte for byte the committed file, and it names every variant of the table."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest


def _load_script(path: pathlib.Path) -> ModuleType:
    """A bench/ script as a module, without putting bench/ on sys.path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


plots = _load_script(pathlib.Path(__file__).parents[2] / "bench" / "plots.py")


def test_the_engine_plot_is_the_one_drawn_from_the_table() -> None:
    drawn = plots.engine_plot(plots.engine_points(plots.BENCHMARKS.read_text()))
    assert plots.ENGINE_PLOT.read_text() == drawn, "run: make plots"


def test_the_engine_plot_names_every_variant_and_leaves_out_the_reference_rows() -> None:
    points = plots.engine_points(plots.BENCHMARKS.read_text())
    svg = plots.ENGINE_PLOT.read_text()
    assert {p.imgsz for p in points} == {320, 640}
    for point in points:
        assert point.variant.replace("&", "&amp;") in svg
    assert "(reference)" not in svg


def test_a_missing_engine_section_is_an_error() -> None:
    with pytest.raises(ValueError, match="Engine"):
        plots.engine_points("# Benchmarks\n\n## Crypto\n")
