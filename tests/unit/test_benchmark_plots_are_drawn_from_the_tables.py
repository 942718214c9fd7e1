"""docs/img/engine-latency-vs-map.svg is the picture of docs/benchmarks.md's Engine table as it stands: redrawn from
the table, it is byte for byte the committed file, and it names every variant of the table."""

from __future__ import annotations

import pytest

from bench import plots


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
