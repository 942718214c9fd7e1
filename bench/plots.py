"""Pictures of docs/benchmarks.md, drawn from the numbers its tables hold (which the benchmark runs wrote).

Usage: .venv/bin/python -m bench.plots   (bench/engine.py --write-docs runs it too; `make plots`)

`engine-latency-vs-map.svg`: every engine variant of the "Engine" section at each image size, batch-1 p50 latency
against mAP50-95, so a format's speed and its accuracy are read off one picture. The SVG is deterministic for one
matplotlib release (no date, a fixed id salt, text kept as text), so a test can tell a stale picture from a fresh one.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import re

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
BENCHMARKS = DOCS / "benchmarks.md"
ENGINE_PLOT = DOCS / "img" / "engine-latency-vs-map.svg"


@dataclasses.dataclass(frozen=True)
class EnginePoint:
    variant: str
    imgsz: int
    p50_b1_ms: float
    map50_95: float


def engine_points(markdown: str) -> list[EnginePoint]:
    """The rows of the Engine section's table (the reference rows on one thread left out: not an engine)."""
    section = re.search(r"^## Engine\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    if section is None:
        raise ValueError(f"{BENCHMARKS} has no '## Engine' section")
    lines = [line for line in section.group(1).splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    column = {name: header.index(name) for name in ("variant", "imgsz", "p50 b1 (ms)", "mAP50-95")}
    points = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if "(reference)" in cells[column["variant"]]:
            continue
        points.append(
            EnginePoint(
                variant=cells[column["variant"]],
                imgsz=int(cells[column["imgsz"]]),
                p50_b1_ms=float(cells[column["p50 b1 (ms)"]]),
                map50_95=float(cells[column["mAP50-95"]]),
            )
        )
    if not points:
        raise ValueError("the Engine section's table has no rows")
    return points


def _marker(variant: str) -> str:
    return "o" if "PyTorch" in variant else ("s" if "ONNX" in variant else "^")


def engine_plot(points: list[EnginePoint]) -> str:
    """The SVG text: one panel per image size, one point per variant, each variant one colour and marker in both
    panels (the marker says the runtime) and named once in the legend below."""
    matplotlib.rcParams.update({"svg.hashsalt": "kestrel", "svg.fonttype": "none", "font.size": 8})
    variants = list(dict.fromkeys(p.variant for p in points))
    colours = matplotlib.colormaps["tab10"]
    sizes = sorted({p.imgsz for p in points})
    figure, axes = pyplot.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 5.2), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        for point in (p for p in points if p.imgsz == size):
            index = variants.index(point.variant)
            ax.scatter(
                point.p50_b1_ms,
                point.map50_95,
                marker=_marker(point.variant),
                color=colours(index % 10),
                edgecolors="black" if index >= 10 else "none",
                s=44,
                label=point.variant,
            )
        ax.set_title(f"imgsz {size}, batch 1, 2 threads")
        ax.set_xlabel("p50 latency (ms), lower is better")
        ax.set_ylabel("mAP50-95, higher is better")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    figure.suptitle("Engine variants of docs/benchmarks.md: latency against accuracy")
    figure.tight_layout(rect=(0, 0.08 + 0.025 * ((len(variants) + 1) // 2), 1, 1))
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    pyplot.close(figure)
    return out.getvalue()


def write() -> pathlib.Path:
    ENGINE_PLOT.parent.mkdir(parents=True, exist_ok=True)
    ENGINE_PLOT.write_text(engine_plot(engine_points(BENCHMARKS.read_text())))
    return ENGINE_PLOT


if __name__ == "__main__":
    print(f"wrote {write()}")
