"""CPU engine benchmark on the committed shapes detector: latency, throughput and mAP of each runtime.

PyTorch FP32 (eager, fused, inference mode) vs ONNX Runtime FP32 vs ONNX Runtime INT8 (static QDQ, per-channel, the
detect head's decode kept float) vs OpenVINO FP32 vs OpenVINO INT8 (NNCF), at imgsz 320 and 640, batch 1 and 8; and
the two INT8 engines again built from a pruned and fine-tuned checkpoint, made by the builder's own code
(kestrel.engine.prune, kestrel.engine.finetune) on the fixture's own training recipe (shapes seed 7, 500 training
images, at the size the detector was trained at). That checkpoint is deterministic and cached under
~/.cache/kestrel/bench-engine/ by everything it depends on; `--prepare-only` makes it (minutes of training) without
timing anything, so the timed run, which holds the shared benchmark lock, does not train.
Every runtime runs on the same number of threads and the same input tensor; the runners of one image size are timed
side by side (interleaved rounds, see kestrel.engine.profile.side_by_side), so a shared machine's changing load hits
them all alike, and the ratios come from one run. Medians after warm-up. mAP through the serving
pre/postprocessing on the fixture's validation split.

Each interleaved round records how much CPU other processes took meanwhile; the medians are over the quiet rounds
(others below a quarter of the machine) when there are at least three, over all rounds otherwise (and the output says
so): PyTorch's OpenMP threads wait for each other after every layer, so on an oversubscribed machine PyTorch at 2
threads slows down several times more than the runtimes do, and the speedups would measure the neighbours.

A reference row, PyTorch FP32 on one thread, shows what a baseline measured right after `import ultralytics` gets
(it sets OMP_NUM_THREADS=1); it is not the baseline of the speedups. The last line is the summary the issue asks for:

    nice -n 10 .venv/bin/python -m bench.engine --prepare-only
    uptime; flock /tmp/kestrel-bench.lock .venv/bin/python -m bench.engine --threads 2 --rounds 24 \
        [--json FILE] [--write-docs]; uptime

(the timed run not under `nice`: a lower priority hands the cores to the neighbours and leaves fewer quiet rounds).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import engine_docs, plots
from kestrel.engine import (
    accuracy,
    datasets,
    distill,
    export,
    finetune,
    held_out,
    obfuscate,
    offline,
    profile,
    prune,
    runners,
)
from kestrel.serving.backends import preprocess
from synthetic import detector, shapes

BASELINE = "PyTorch FP32"
REFERENCE = "PyTorch FP32, 1 thread (reference)"
VARIANTS = (
    ("ONNX Runtime FP32", export.Candidate("onnx", "fp32")),
    ("ONNX Runtime INT8 (static QDQ)", export.Candidate("onnx", "int8")),
    ("OpenVINO FP32", export.Candidate("openvino", "fp32")),
    ("OpenVINO INT8 (NNCF)", export.Candidate("openvino", "int8")),
)
# Timed again as spec.security.obfuscate serves them (names and metadata stripped, engine/obfuscate.py).
OBFUSCATED = ("ONNX Runtime FP32", "OpenVINO INT8 (NNCF)")
STUDENT_VARIANTS = (  # each smaller checkpoint (pruned, distilled) is timed in these
    ("ONNX Runtime INT8 (static QDQ)", export.Candidate("onnx", "int8")),
    ("OpenVINO INT8 (NNCF)", export.Candidate("openvino", "int8")),
)
PRUNE_AMOUNT = 0.3
FINE_TUNE_EPOCHS = 12
# The student keeps the channels pruning keeps, and trains as long: its rows differ from the pruned ones by the teacher.
DISTILL_WIDTH = round(1 - PRUNE_AMOUNT, 6)
CACHE = Path.home() / ".cache" / "kestrel" / "bench-engine"
MAX_BATCH = 8
MAX_MAP_DROP = 0.02  # the goal's accuracy bound (mAP50-95, against PyTorch FP32)
QUIET = 0.25  # a round is quiet when other processes used at most this share of all CPUs
MIN_QUIET = {1: 3, MAX_BATCH: 2}  # quiet rounds needed to leave the busy ones out, per batch size


@dataclasses.dataclass
class Row:
    variant: str
    imgsz: int
    threads: int
    p50_b1: float
    p95_b1: float
    p50_b8: float
    ips_b8: float
    map50: float
    map50_95: float
    speedup_b1: float = 1.0


@dataclasses.dataclass
class Load:
    imgsz: int
    before: tuple[float, float, float]  # load averages
    after: tuple[float, float, float]
    others_b1: list[float | None]  # per round: share of all CPUs that other processes used
    others_b8: list[float | None]
    quiet_only_b1: bool  # whether the batch-1 medians come from the quiet rounds only
    quiet_only_b8: bool


def medians(measured: profile.SideBySide) -> tuple[dict[str, profile.Latency], bool]:
    """Latency over the quiet rounds when there are enough of them, over all rounds otherwise."""
    quiet = measured.quiet(QUIET)
    if len(quiet) >= MIN_QUIET[measured.batch]:
        return measured.latency(quiet), True
    return measured.latency(), False


@dataclasses.dataclass(frozen=True)
class Student:
    """A smaller checkpoint the student variants are exported from (pruned and fine-tuned, or distilled), made by
    the builder's own code, and what making it took (PruneEffect or DistillEffect, as a dict)."""

    checkpoint: Path
    effect: dict[str, Any]
    suffix: str
    cached: bool


def _cache_key(parts: dict[str, object], code: tuple[str, ...], record: dict[str, object]) -> str:
    """Everything a checkpoint depends on: source, recipe, training data, the code that makes it, and versions."""
    engine = Path(prune.__file__).parent
    parts = {
        "source": detector.RECORD.read_text(),
        **parts,
        "dataset": record["dataset"],
        "code": [hashlib.sha256((engine / f).read_bytes()).hexdigest() for f in code],
        "versions": [importlib.metadata.version(n) for n in ("torch", "ultralytics", "torch-pruning")],
        "machine": platform.machine(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


Make = Callable[[Path, Path, finetune.Score], dict[str, Any]]  # (staging, training data.yaml, score) -> effect


def _student(
    work: Path, fixture: detector.ShapesDetector, key: str, name: str, threads: int, make: Make
) -> tuple[Path, dict[str, Any], bool]:
    """The checkpoint `make` writes to staging/NAME.pt, from the cache under `key` or made now and cached.

    The training data is the fixture's own recipe (synthetic/models/shapes-yolov8n.json): the same generator,
    seed and training split the detector was trained on, at the size it was trained at.
    """
    folder = CACHE / key
    checkpoint, effect_file = folder / f"{name}.pt", folder / "effect.json"
    if checkpoint.is_file() and effect_file.is_file():
        return checkpoint, json.loads(effect_file.read_text()), True
    print(f"making {name} (minutes of training; cached afterwards in {folder}) ...", flush=True)
    recipe_of = fixture.record["dataset"]
    data_yaml = shapes.generate(work / "train-data", recipe_of["seed"], train=recipe_of["train"], val=recipe_of["val"])
    dataset = datasets.load(fixture.data_yaml)
    served = preprocess.Preprocessing(imgsz=640)

    def score(path: Path) -> accuracy.Accuracy:
        return accuracy.measure(runners.torch_source(path, threads, MAX_BATCH), dataset, served)

    staging = work / name
    staging.mkdir(parents=True, exist_ok=True)
    effect = make(staging, data_yaml, score)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(staging / f"{name}.pt", checkpoint)
    effect_file.write_text(json.dumps(effect, indent=2) + "\n")
    return checkpoint, effect, False


def pruned_checkpoint(
    work: Path, fixture: detector.ShapesDetector, amount: float, epochs: int, threads: int
) -> Student:
    """Prune and fine-tune the fixture detector as `kestrel build` does, or take the cached result of doing so."""
    recipe = finetune.Recipe(epochs=epochs, threads=threads)
    key = _cache_key({"amount": amount, "recipe": dataclasses.asdict(recipe)}, ("prune.py", "finetune.py"),
                     fixture.record)  # fmt: skip

    def make(staging: Path, data_yaml: Path, score: finetune.Score) -> dict[str, Any]:
        effect = prune.prune(fixture.checkpoint, staging / "pruned.pt", amount, 640)
        tuned = finetune.fine_tune(
            staging / "pruned.pt", staging / "fine-tuned.pt", data_yaml, recipe,
            served_imgsz=640, workdir=staging / "fine-tune", score=score,
        )  # fmt: skip
        return dataclasses.asdict(dataclasses.replace(effect, fine_tune=tuned))

    checkpoint, effect, cached = _student(work, fixture, key, "fine-tuned", threads, make)
    suffix = f", pruned {effect['amount']:g} + fine-tuned {(effect['fine_tune'] or {}).get('epochs', 0)} ep"
    return Student(checkpoint, effect, suffix, cached)


def distilled_checkpoint(
    work: Path, fixture: detector.ShapesDetector, width: float, weight: float, epochs: int, threads: int
) -> Student:
    """Distil the fixture detector into a student of `width` as `kestrel build` does, or take the cached result."""
    recipe = finetune.Recipe(epochs=epochs, threads=threads)
    parts = {"width": width, "weight": weight, "recipe": dataclasses.asdict(recipe)}
    key = _cache_key(parts, ("prune.py", "finetune.py", "distill.py"), fixture.record)

    def make(staging: Path, data_yaml: Path, score: finetune.Score) -> dict[str, Any]:
        effect = distill.distill(
            fixture.checkpoint, staging / "distilled.pt", data_yaml, width=width, weight=weight,
            recipe=recipe, imgsz=640, workdir=staging / "distill", score=score,
        )  # fmt: skip
        return dataclasses.asdict(effect)

    checkpoint, effect, cached = _student(work, fixture, key, "distilled", threads, make)
    suffix = f", distilled width {effect['width']:g} weight {effect['weight']:g}, {effect['training']['epochs']} ep"
    return Student(checkpoint, effect, suffix, cached)


@dataclasses.dataclass
class Layers:
    """Where an OpenVINO engine's time goes at batch 1 (its own per-layer counters, PERF_COUNT)."""

    variant: str
    imgsz: int
    total_ms: float
    convolutions: int
    convolution_ms: float
    median_convolution_ms: float


def layer_profile(variant: str, model_dir: Path, imgsz: int, threads: int, calls: int = 20) -> Layers:
    import openvino as ov  # noqa: PLC0415 - only this measurement needs the raw API

    core = ov.Core()
    model = core.read_model(str(next(model_dir.glob("*.xml"))))
    model.reshape({model.inputs[0]: ov.PartialShape([1, 3, imgsz, imgsz])})
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    request = core.compile_model(model, "CPU", {**config, "PERF_COUNT": True}).create_infer_request()
    tensor = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    for _ in range(3):
        request.infer({0: tensor})
    per_node: dict[tuple[str, str], float] = {}
    for _ in range(calls):
        request.infer({0: tensor})
        for info in request.profiling_info:
            key = (info.node_type, info.node_name)
            per_node[key] = per_node.get(key, 0.0) + info.real_time.total_seconds() * 1000 / calls
    convolutions = [ms for (kind, _), ms in per_node.items() if kind == "Convolution"]
    return Layers(
        variant, imgsz, round(sum(per_node.values()), 2), len(convolutions), round(sum(convolutions), 2),
        round(float(np.median(convolutions)), 3),
    )  # fmt: skip


def runners_for(
    work: Path, fixture: detector.ShapesDetector, imgsz: int, threads: int, students: list[Student]
) -> tuple[dict[str, runners.Runner], dict[str, Path]]:
    """The runners side by side, and the OpenVINO INT8 model folders (for `layer_profile`)."""
    openvino_int8: dict[str, Path] = {}
    # Held out, as `kestrel build` calibrates: the first 64 images of the training split, none of them scored.
    calibration = export.Calibration(fixture.data_yaml, samples=detector.CALIBRATION_IMAGES, split="train")
    held_out.calibration(calibration, datasets.load(fixture.data_yaml))
    settings = export.ExportSettings(imgsz=imgsz, batch=MAX_BATCH, dynamic=True, calibration=calibration)
    named = {BASELINE: runners.torch_source(fixture.checkpoint, threads, MAX_BATCH)}
    for name, candidate in VARIANTS:
        built = export.export(fixture.checkpoint, candidate, settings, work / str(imgsz), gpu=False)
        named[name] = runners.for_engine(candidate.format, built.path, threads, MAX_BATCH, candidate.precision)
        if candidate == export.Candidate("openvino", "int8"):
            openvino_int8[name] = built.path
        if name in OBFUSCATED:
            folder = work / str(imgsz) / "obfuscated" / candidate.name
            hidden = obfuscate.obfuscate(candidate.format, built.path, folder)
            engine = runners.for_engine(candidate.format, hidden, threads, MAX_BATCH, candidate.precision)
            named[f"{name}, obfuscated"] = engine
    for student in students:
        for name, candidate in STUDENT_VARIANTS:
            folder = work / str(imgsz) / student.checkpoint.parent.name  # the cache key: one per student
            built = export.export(student.checkpoint, candidate, settings, folder, gpu=False)
            engine = runners.for_engine(candidate.format, built.path, threads, MAX_BATCH, candidate.precision)
            named[name + student.suffix] = engine
            if candidate == export.Candidate("openvino", "int8"):
                openvino_int8[name + student.suffix] = built.path
    if threads > 1:
        named[REFERENCE] = runners.torch_source(fixture.checkpoint, 1, MAX_BATCH)
    return named, openvino_int8


def run(
    work: Path, fixture: detector.ShapesDetector, threads: int, sizes: list[int], rounds: int, students: list[Student]
) -> tuple[list[Row], list[Load], list[Layers]]:
    dataset = datasets.load(fixture.data_yaml)
    rows: list[Row] = []
    loads: list[Load] = []
    layers: list[Layers] = []
    for imgsz in sizes:
        named, openvino_int8 = runners_for(work, fixture, imgsz, threads, students)
        before = os.getloadavg()
        measured1 = profile.side_by_side(named, imgsz, 1, rounds=rounds, per_round=5)
        measured8 = profile.side_by_side(named, imgsz, MAX_BATCH, rounds=max(3, rounds // 3), per_round=2, warmup=1)
        (batch1, quiet1), (batch8, quiet8) = medians(measured1), medians(measured8)
        others1, others8 = [r.others for r in measured1.rounds], [r.others for r in measured8.rounds]
        loads.append(Load(imgsz, before, os.getloadavg(), others1, others8, quiet1, quiet8))
        p = preprocess.Preprocessing(imgsz=imgsz)
        for name, runner in named.items():
            scored = accuracy.measure(runner, dataset, p)
            b1, b8 = batch1[name], batch8[name]
            used = 1 if name == REFERENCE else threads
            row = Row(
                name, imgsz, used, b1.p50_ms, b1.p95_ms, b8.p50_ms, b8.throughput_ips, scored.map50, scored.map50_95
            )
            rows.append(row)
            print(json.dumps(dataclasses.asdict(row)), flush=True)
        print(json.dumps(dataclasses.asdict(loads[-1])), flush=True)
        layers += [layer_profile(name, folder, imgsz, threads) for name, folder in openvino_int8.items()]
    for row in rows:
        base = next(r for r in rows if r.imgsz == row.imgsz and r.variant == BASELINE)
        row.speedup_b1 = round(base.p50_b1 / row.p50_b1, 2)
    return rows, loads, layers


def table(rows: list[Row]) -> str:
    lines = [
        "| variant | imgsz | threads | p50 b1 (ms) | p95 b1 (ms) | p50 b8 (ms) | img/s b8 | speedup b1 vs PyTorch "
        "| mAP50 | mAP50-95 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.variant} | {r.imgsz} | {r.threads} | {r.p50_b1:.1f} | {r.p95_b1:.1f} | {r.p50_b8:.1f} | {r.ips_b8:.1f} "
        f"| {r.speedup_b1:.2f}x | {r.map50:.4f} | {r.map50_95:.4f} |"
        for r in rows
    ]
    return "\n".join(lines)


def best_at(rows: list[Row], size: int) -> tuple[Row, Row]:
    """The baseline and the fastest engine within the accuracy bound (the fastest of all if none is within it)."""
    at_size = [r for r in rows if r.imgsz == size]
    source = next(r for r in at_size if r.variant == BASELINE)
    engines = [r for r in at_size if r.variant not in (BASELINE, REFERENCE)]
    within = [r for r in engines if source.map50_95 - r.map50_95 <= MAX_MAP_DROP]
    return source, max(within or engines, key=lambda r: r.speedup_b1)


def earlier_run(path: Path, size: int) -> engine_docs.Summary:
    """The summary of an earlier run from its `--json` file: same machine, same command, another process."""
    record = json.loads(path.read_text())
    source, best = best_at([Row(**row) for row in record["rows"]], size)
    date = str(record.get("date") or time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime)))
    return engine_docs.Summary(date, best.variant, best.speedup_b1, round(source.map50_95 - best.map50_95, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds at batch 1 (5 timed calls each)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--prune-amount", type=float, default=PRUNE_AMOUNT)
    parser.add_argument("--fine-tune-epochs", type=int, default=FINE_TUNE_EPOCHS)
    parser.add_argument("--distill-width", type=float, default=DISTILL_WIDTH)
    parser.add_argument("--distill-epochs", type=int, default=FINE_TUNE_EPOCHS)
    parser.add_argument(
        "--distill-weights", type=float, nargs="+", default=[distill.DEFAULT_WEIGHT],
        help="one student per distillation loss weight",
    )  # fmt: skip
    parser.add_argument("--no-pruned", action="store_true", help="leave the pruned variants out")
    parser.add_argument("--no-distilled", action="store_true", help="leave the distilled variants out")
    parser.add_argument(
        "--prepare-only", action="store_true", help="make (or find) the pruned and distilled checkpoints and stop"
    )
    parser.add_argument("--write-docs", action="store_true", help="replace the Engine section of docs/benchmarks.md")
    parser.add_argument(
        "--earlier", type=Path, nargs="*", default=[],
        help="--json files of earlier runs of the same command: the docs list their summaries beside this run's",
    )  # fmt: skip
    args = parser.parse_args()
    offline.configure()
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-") as tmp:
        work = Path(tmp)
        fixture = detector.shapes_detector(work / "data")
        pruned = None
        if not args.no_pruned:
            pruned = pruned_checkpoint(work, fixture, args.prune_amount, args.fine_tune_epochs, args.threads)
        distilled = [
            distilled_checkpoint(work, fixture, args.distill_width, weight, args.distill_epochs, args.threads)
            for weight in ([] if args.no_distilled else args.distill_weights)
        ]
        students = [s for s in (pruned, *distilled) if s is not None]
        for student in students:
            print(json.dumps({"student": str(student.checkpoint), "cached": student.cached, **student.effect}),
                  flush=True)  # fmt: skip
        if args.prepare_only:
            return
        load_before = os.getloadavg()
        rows, loads, layers = run(work, fixture, args.threads, args.sizes, args.rounds, students)
        load_after = os.getloadavg()
    print(table(rows))
    for load in loads:
        print(f"load average at {load.imgsz}: before {load.before}, after {load.after} (cpus={os.cpu_count()})")
        for batch, others, quiet_only in (
            (1, load.others_b1, load.quiet_only_b1),
            (8, load.others_b8, load.quiet_only_b8),
        ):
            used = "quiet rounds only" if quiet_only else "ALL rounds: too few quiet ones, ratios overstate the engines"
            print(f"  batch {batch}: others' CPU share per round {others}; medians over {used}")
    for layer in layers:
        print(json.dumps(dataclasses.asdict(layer)))
    # The goal: the best CPU variant at 640, batch 1, against PyTorch FP32, and what it costs in mAP50-95.
    size = 640 if 640 in args.sizes else max(args.sizes)
    source, best = best_at(rows, size)
    busy = not next(load.quiet_only_b1 for load in loads if load.imgsz == size)
    if busy:
        print(f"WARNING: other processes kept the machine busy at {size}; the speedups below overstate the engines")
    summary = f"best_cpu_speedup={best.speedup_b1:.2f} map_drop={source.map50_95 - best.map50_95:.4f}"
    if args.json:
        record = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "pruned": pruned.effect if pruned else None,
            "distilled": [student.effect for student in distilled],
            "rows": [dataclasses.asdict(r) for r in rows],
            "load": [dataclasses.asdict(x) for x in loads],
            "layers": [dataclasses.asdict(x) for x in layers],
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    if args.write_docs:
        command = " ".join([".venv/bin/python -m bench.engine", *sys.argv[1:]])
        run_ = engine_docs.Run(
            rows=[dataclasses.asdict(r) for r in rows], loads=[dataclasses.asdict(x) for x in loads],
            layers=[dataclasses.asdict(x) for x in layers],
            table=table(rows), summary=summary, best=best.variant, size=size, threads=args.threads,
            rounds=args.rounds, pruned=pruned.effect if pruned else None,
            distilled=[student.effect for student in distilled],
            uptime=(load_before, load_after), busy=busy, command=command,
            earlier=[earlier_run(path, size) for path in args.earlier],
        )  # fmt: skip
        engine_docs.write(run_)
        plots.write()  # the picture of the table just written
    print(f"best_variant={best.variant!r} imgsz={size} threads={args.threads}")
    print(summary)


if __name__ == "__main__":
    main()
