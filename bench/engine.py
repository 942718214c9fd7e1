"""CPU engine benchmark on the committed shapes detector: latency, throughput and mAP of each runtime.

PyTorch FP32 (eager) vs ONNX Runtime FP32 vs ONNX INT8 (ORT static, QOperator, Conv-only) vs OpenVINO FP32 vs
OpenVINO INT8 (NNCF), at imgsz 320 and 640, batch 1 and 8; medians after warm-up, every runtime on the same number
of threads; mAP through the serving pre/postprocessing on the fixture's validation split. The last line is the
summary the issue asks for:

    nice -n 10 .venv/bin/python bench/engine.py --threads 2 [--json bench/engine-results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.fixtures

from kestrel.engine import accuracy, datasets, export, offline, profile, runners
from kestrel.serving.backends import preprocess
from tests.fixtures import detector

VARIANTS = (
    ("PyTorch FP32", None),
    ("ONNX Runtime FP32", export.Candidate("onnx", "fp32")),
    ("ONNX INT8 (ORT static)", export.Candidate("onnx", "int8")),
    ("OpenVINO FP32", export.Candidate("openvino", "fp32")),
    ("OpenVINO INT8", export.Candidate("openvino", "int8")),
)


@dataclasses.dataclass
class Row:
    variant: str
    imgsz: int
    p50_b1: float
    p50_b8: float
    ips_b8: float
    map50: float
    map50_95: float
    speedup_b1: float = 1.0


def run(work: Path, threads: int, sizes: list[int], iterations: int) -> list[Row]:
    shapes = detector.shapes_detector(work / "data")
    dataset = datasets.load(shapes.data_yaml)
    calibration = export.Calibration(shapes.data_yaml, samples=64)
    rows: list[Row] = []
    for imgsz in sizes:
        p = preprocess.Preprocessing(imgsz=imgsz)
        settings = export.ExportSettings(imgsz=imgsz, batch=8, dynamic=True, calibration=calibration)
        for name, candidate in VARIANTS:
            if candidate is None:
                runner = runners.torch_source(shapes.checkpoint, threads, 8)
            else:
                built = export.export(shapes.checkpoint, candidate, settings, work / str(imgsz), gpu=False)
                runner = runners.for_engine(candidate.format, built.path, threads, 8, candidate.precision)
            batch1 = profile.measure(runner, imgsz, 1, warmup=5, iterations=iterations)
            batch8 = profile.measure(runner, imgsz, 8, warmup=2, iterations=max(5, iterations // 4))
            scored = accuracy.measure(runner, dataset, p)
            row = Row(name, imgsz, batch1.p50_ms, batch8.p50_ms, batch8.throughput_ips, scored.map50, scored.map50_95)
            rows.append(row)
            print(json.dumps(dataclasses.asdict(row)), flush=True)
    for row in rows:
        torch_row = next(r for r in rows if r.imgsz == row.imgsz and r.variant == "PyTorch FP32")
        row.speedup_b1 = round(torch_row.p50_b1 / row.p50_b1, 2)
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| variant | imgsz | p50 b1 (ms) | p50 b8 (ms) | img/s b8 | speedup b1 vs PyTorch | mAP50 | mAP50-95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.variant} | {r.imgsz} | {r.p50_b1:.1f} | {r.p50_b8:.1f} | {r.ips_b8:.1f} | {r.speedup_b1:.2f}x | "
        f"{r.map50:.4f} | {r.map50_95:.4f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    offline.configure()
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-") as tmp:
        rows = run(Path(tmp), args.threads, args.sizes, args.iterations)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "threads": args.threads, "rows": [dataclasses.asdict(r) for r in rows]},
                                        indent=2) + "\n")  # fmt: skip
    # The goal: the best CPU variant at 640, batch 1, against PyTorch FP32, and what it costs in mAP50-95.
    size = 640 if 640 in args.sizes else max(args.sizes)
    at_size = [r for r in rows if r.imgsz == size]
    source = next(r for r in at_size if r.variant == "PyTorch FP32")
    best = max((r for r in at_size if r.variant != "PyTorch FP32"), key=lambda r: r.speedup_b1)
    print(f"best_variant={best.variant!r} imgsz={size}")
    print(f"best_cpu_speedup={best.speedup_b1:.2f} map_drop={source.map50_95 - best.map50_95:.4f}")


if __name__ == "__main__":
    main()
