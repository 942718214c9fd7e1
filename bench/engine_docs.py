"""The Engine section of docs/benchmarks.md, written from one run of bench/engine.py (`--write-docs`).

Every number in it comes from the run; what the run cannot know (why the numbers are what they are) is said in
general terms, with the measurement behind it named.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import doc_sections

GOAL_SPEEDUP = 6.0
GOAL_DROP = 0.02


@dataclasses.dataclass(frozen=True)
class Summary:
    """One run's summary line, for listing repeated runs of the same command side by side."""

    date: str
    best: str
    speedup: float
    drop: float

    def met(self) -> bool:
        return self.speedup >= GOAL_SPEEDUP and self.drop <= GOAL_DROP


@dataclasses.dataclass(frozen=True)
class Run:
    rows: list[dict[str, Any]]  # bench/engine.py's Row, as a dict
    loads: list[dict[str, Any]]  # its Load, as a dict
    layers: list[dict[str, Any]]  # its Layers (OpenVINO INT8 per-layer counters), as dicts
    table: str
    summary: str
    best: str
    size: int
    threads: int
    rounds: int
    pruned: dict[str, Any] | None  # kestrel.engine.prune.PruneEffect (with its fine_tune), as a dict
    distilled: list[dict[str, Any]]  # kestrel.engine.distill.DistillEffect of each student, as dicts
    uptime: tuple[tuple[float, float, float], tuple[float, float, float]]
    busy: bool
    command: str
    earlier: list[Summary] = dataclasses.field(default_factory=list)  # earlier runs of the same command


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> str:
    names = ("torch", "ultralytics", "onnxruntime", "openvino", "nncf", "torch-pruning")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join([f"Python {platform.python_version()}", *found])


def _row(run: Run, variant: str) -> dict[str, Any] | None:
    return next((r for r in run.rows if r["imgsz"] == run.size and r["variant"] == variant), None)


def _quiet(load: dict[str, Any], key: str) -> str:
    others = [share for share in load[key] if share is not None]
    quiet = sum(1 for share in others if share <= 0.25)
    return f"{quiet} of {len(others)}"


def _pruned_paragraph(run: Run) -> list[str]:
    if run.pruned is None:
        return []
    effect, tuned = run.pruned, run.pruned.get("fine_tune") or {}
    share = effect["params_after"] / effect["params_before"]
    lines = [
        "The pruned rows are built from one checkpoint made by the builder's own code path (`prune.prune`, then",
        f"`finetune.fine_tune`, as `kestrel build` does for `spec.engine.prune: {{amount: {effect['amount']:g}, "
        f"fineTuneEpochs: {tuned.get('epochs', 0)}{', dataset: <training data.yaml>' if tuned else ''}}}`):",
        f"{effect['amount']:g} of the channels of every prunable group removed (L2 magnitude, channel counts rounded",
        "to 16, the stem's first layers and the detect head's output convolutions and DFL kept, its intermediate "
        "convolutions pruned too), "
        f"{effect['params_before']:,}",
        f"parameters down to {effect['params_after']:,} ({share:.0%}).",
    ]
    if tuned:
        lines += [
            f"Then {tuned['epochs']} epochs of fine-tuning on the fixture's own training recipe",
            f"({tuned['train_images']} generated images, seed 7) at imgsz {tuned['imgsz']}, the size the detector",
            "was trained at (from its `train_args`; never the larger served size),",
            f"batch {tuned['batch']}, seed {tuned['seed']}, AdamW, CPU, {run.threads} threads:",
            f"{tuned['seconds']:.0f} s of training. mAP50-95 at {run.size} in PyTorch FP32 (the served",
            f"pre/postprocessing): {tuned['map50_95_before']:.4f} right after pruning, {tuned['map50_95_after']:.4f}"
            " after the fine-tune.",
        ]
    return [" ".join(lines), ""]


def _distilled_paragraph(run: Run) -> list[str]:
    if not run.distilled:
        return []
    effect, trained = run.distilled[0], run.distilled[0]["training"]
    share = effect["params_student"] / effect["params_teacher"]
    weights = ", ".join(f"{e['weight']:g}" for e in run.distilled)
    lines = [
        f"The distilled rows are built from {len(run.distilled)} "
        + ("students" if len(run.distilled) > 1 else "student")
        + " made by the builder's own code path "
        f"(`distill.distill`, as `kestrel build` does for `spec.engine.distill: {{student: {{width: "
        f"{effect['width']:g}}}, epochs: {trained['epochs']}, weight: W, dataset: <training data.yaml>}}`, W = "
        f"{weights}; 6 is the default): the source with {effect['width']:g} of its channels kept past the stem (the "
        "channels pruning keeps, so it starts from the source's weights), "
        f"{effect['params_teacher']:,} parameters down to {effect['params_student']:,} ({share:.0%}), then "
        f"{trained['epochs']} epochs against the source as teacher (Ultralytics' DistillationModel: the detection "
        "loss on the labels plus W times a score-weighted L2 loss between the student's and the teacher's features "
        "at the detect head's inputs) with the fine-tune's recipe: the same "
        f"{trained['train_images']} images, imgsz {trained['imgsz']}, batch {trained['batch']}, seed "
        f"{trained['seed']}, CPU, {run.threads} threads.",
    ]
    for student in run.distilled:
        done = student["training"]
        lines.append(
            f"Weight {student['weight']:g}: {done['seconds']:.0f} s of training (wall clock, on the machine shared "
            f"with other work at the time); mAP50-95 at {run.size} in PyTorch FP32 {done['map50_95_before']:.4f} as "
            f"initialised, {done['map50_95_after']:.4f} after the distillation."
        )
    return [" ".join(lines), ""]


def _verdict(run: Run) -> list[str]:
    best = _row(run, run.best)
    source = _row(run, "PyTorch FP32")
    if best is None or source is None:
        return []
    drop = source["map50_95"] - best["map50_95"]
    runs = [*run.earlier, Summary("this run", run.best, best["speedup_b1"], drop)]
    goal = "The goal (>= 6x at 640, batch 1, mAP50-95 drop <= 0.02)"
    met = sum(1 for summary in runs if summary.met())
    if met == len(runs):
        words = f"**{goal} is met**" + (f" in each of the {len(runs)} runs." if len(runs) > 1 else ".")
    elif met:
        words = f"**{goal} is met in {met} of {len(runs)} runs of the same command: not reliably.**"
    else:
        words = f"**{goal} is not met**: {best['speedup_b1']:.2f}x, drop {drop:.4f}."
    lines = [
        f"`{run.summary}`: {run.best} at {run.size}, batch 1, against PyTorch FP32 on the same {run.threads} threads "
        "(the fastest variant whose mAP50-95 is within 0.02 of PyTorch's; the fastest of all if none is). " + words,
        "",
    ]
    if run.earlier:
        lines += [
            "The same command run again in separate processes on the same machine (each its own quiet-round "
            "medians; the spread between runs is larger than within one):",
            "",
            "| run | best variant | speedup | mAP50-95 drop |",
            "|---|---|---:|---:|",
            *(f"| {s.date} | {s.best} | {s.speedup:.2f}x | {s.drop:.4f} |" for s in runs),
            "",
        ]
    return lines


def _load(run: Run) -> list[str]:
    before, after = run.uptime
    parts = [
        f"Load (2 vCPUs shared with other engineers' test beds and benchmarks): 1-minute load average {before[0]:.2f}"
        f" before the timed run and {after[0]:.2f} after it."
    ]
    parts.append("A round is quiet when other processes took at most 25% of the machine during it.")
    for load in run.loads:
        parts.append(
            f"At {load['imgsz']}, {_quiet(load, 'others_b1')} batch-1 rounds were quiet"
            f" and {_quiet(load, 'others_b8')} at batch 8; the medians are over "
            + ("the quiet rounds." if load["quiet_only_b1"] else "ALL rounds (too few quiet ones).")
        )
    if run.busy:
        parts.append(f"**The machine was busy at {run.size}: the speedups overstate the engines.**")
    return [" ".join(parts), ""]


STUDENTS = (", pruned", ", distilled")


def _pick(run: Run, size: int, prefix: str, student: str | None) -> dict[str, Any] | None:
    """The first row of `prefix` at `size` made from the `student` checkpoint (None: from the source)."""
    for row in run.rows:
        made_from = next((kind for kind in STUDENTS if kind in row["variant"]), None)
        if row["imgsz"] == size and row["variant"].startswith(prefix) and made_from == student:
            return row
    return None


def explanation(run: Run) -> list[str]:
    """Why the numbers are what they are, filled in from this run."""
    source = _row(run, "PyTorch FP32")
    ov, ov_pruned = (_pick(run, run.size, "OpenVINO INT8", kind) for kind in (None, STUDENTS[0]))
    ort, ort_pruned = (_pick(run, run.size, "ONNX Runtime INT8", kind) for kind in (None, STUDENTS[0]))
    layers = {layer["variant"]: layer for layer in run.layers if layer["imgsz"] == run.size}
    bullets = []
    if source and ov and ov_pruned and run.pruned:
        share = run.pruned["params_after"] / run.pruned["params_before"]
        plain, cut = layers.get(ov["variant"]), layers.get(ov_pruned["variant"])
        text = (
            f"- **Pruning with the fine-tune made the OpenVINO INT8 engine {ov['p50_b1'] / ov_pruned['p50_b1']:.2f}x "
            f"faster at {run.size}, batch 1 ({ov['p50_b1']:.1f} -> {ov_pruned['p50_b1']:.1f} ms), with "
            f"{share:.0%} of the parameters left and mAP50-95 {ov_pruned['map50_95']:.4f} against the unpruned "
            f"engine's {ov['map50_95']:.4f}.** Less than the parameter count suggests: at batch 1 the engine is a "
            "sequence of small calls, and pruning removes channels, not calls."
        )
        if plain and cut:
            text += (
                f" OpenVINO's own per-layer counters in this run: unpruned, {plain['convolution_ms']:.1f} of "
                f"{plain['total_ms']:.1f} ms in {plain['convolutions']} convolutions (median "
                f"{plain['median_convolution_ms']:.2f} ms each); pruned, {cut['convolution_ms']:.1f} of "
                f"{cut['total_ms']:.1f} ms in {cut['convolutions']} convolutions (median "
                f"{cut['median_convolution_ms']:.2f} ms). Every convolution is still there, and each pays a floor of "
                "kernel setup and thread synchronisation that fewer channels do not lower."
            )
        bullets.append(text)
        needed = source["p50_b1"] / GOAL_SPEEDUP
        if ov_pruned["p50_b1"] > needed:
            bullets.append(
                f"- 6x at {run.size} needs {needed:.1f} ms per image against PyTorch's {source['p50_b1']:.1f} ms; the "
                f"pruned engine takes {ov_pruned['p50_b1']:.1f}."
            )
    if ort and ort_pruned:
        bullets.append(
            f"- ONNX Runtime INT8 gained {ort['p50_b1'] / ort_pruned['p50_b1']:.2f}x from the same pruned checkpoint "
            f"({ort['p50_b1']:.1f} -> {ort_pruned['p50_b1']:.1f} ms)"
            + (
                "; not investigated further, since OpenVINO is the faster INT8 runtime here either way."
                if ov_pruned and ov_pruned["p50_b1"] < ort_pruned["p50_b1"]
                else "."
            )
        )
    if run.pruned and run.pruned.get("fine_tune"):
        tuned = run.pruned["fine_tune"]
        at_training = _pick(run, tuned["imgsz"], "OpenVINO INT8", STUDENTS[0])
        source_there = next(
            (r for r in run.rows if r["imgsz"] == tuned["imgsz"] and r["variant"] == "PyTorch FP32"), None
        )
        text = (
            f"- The fine-tune is {tuned['epochs']} more epochs of the source's own recipe (its augmentation and loss "
            "weights, from its `train_args`) on its own training data, so part of what it wins back is more "
            "training, not the engine."
        )
        if at_training and source_there:
            text += (
                f" At {tuned['imgsz']}, the training size, the pruned INT8 engine scores {at_training['map50_95']:.4f}"
                f" against the source's {source_there['map50_95']:.4f}."
            )
        text += (
            " That is why the builder fine-tunes at the size the source was trained at and never at the larger "
            "served size, and why the gate compares with the unpruned source: the drop in the summary line is "
            f"measured at {run.size}, a size neither was trained at."
        )
        bullets.append(text)
    for student in run.distilled:
        row = next(
            (
                r
                for r in run.rows
                if r["imgsz"] == run.size
                and r["variant"].startswith("OpenVINO INT8")
                and f", distilled width {student['width']:g} weight {student['weight']:g}," in r["variant"]
            ),
            None,
        )
        if source and row:
            bullets.append(_distilled_bullet(run, student, row, source, ov_pruned))
    bullets.append(
        "- The reference row runs PyTorch on one thread, as it runs right after `import ultralytics` (which sets "
        f"`OMP_NUM_THREADS=1`); the speedups are against PyTorch on the same {run.threads} threads as every engine."
    )
    return ["Why, as measured:", "", *bullets, ""]


def _distilled_bullet(
    run: Run, student: dict[str, Any], row: dict[str, Any], source: dict[str, Any], pruned: dict[str, Any] | None
) -> str:
    text = (
        f"- **The distilled student (weight {student['weight']:g}) as an OpenVINO INT8 engine: "
        f"{source['p50_b1'] / row['p50_b1']:.2f}x PyTorch FP32 at {run.size}, batch 1 ({row['p50_b1']:.1f} ms), "
        f"mAP50-95 {row['map50_95']:.4f}, a drop of {source['map50_95'] - row['map50_95']:.4f} against the "
        f"source's {source['map50_95']:.4f}.**"
    )
    if pruned is None or run.pruned is None:
        return text
    text += (
        f" The pruned and fine-tuned engine beside it: {source['p50_b1'] / pruned['p50_b1']:.2f}x, mAP50-95 "
        f"{pruned['map50_95']:.4f}."
    )
    if run.pruned["params_after"] == student["params_student"]:
        epochs = (run.pruned.get("fine_tune") or {}).get("epochs", 0), student["training"]["epochs"]
        text += " Both have the same channels, so their latencies differ by the timing's noise only, and " + (
            "trained as long on the same images: the mAP difference is the teacher's loss's doing."
            if epochs[0] == epochs[1]
            else f"trained on the same images, the student {epochs[1]} epochs against the teacher, the pruned model "
            f"{epochs[0]} on the labels alone: the mAP difference mixes the teacher's loss with the training's length."
        )
    return text


# The picture of the table, drawn by bench/plots.py from the numbers written above.
PLOT_LINE = "![p50 latency against mAP50-95 of every variant above](img/engine-latency-vs-map.svg)"


def write(run: Run, docs: Path = doc_sections.DOCS) -> None:
    lines = [
        "## Engine",
        "",
        "CPU inference of the committed test detector (`synthetic/models/shapes-yolov8n.pt`, YOLOv8n trained "
        "at imgsz 320 on the synthetic shapes set, 4 classes) in each runtime the engine builder produces: PyTorch "
        "FP32 (eager, BN fused, `inference_mode`, the source and the baseline), ONNX Runtime FP32, ONNX Runtime INT8 "
        "(static QDQ, per-channel, every operator but the detect head's decode, calibrated on the first 64 images of "
        "the fixture's training split, none of which is scored), OpenVINO FP32, OpenVINO INT8 (NNCF through "
        "Ultralytics' export, the same 64 images), ONNX Runtime FP32 and OpenVINO INT8 again as "
        "`spec.security.obfuscate` serves them (node, tensor and layer names and metadata stripped), and the two INT8 "
        "engines again from a "
        "pruned and fine-tuned checkpoint"
        + (" and from distilled students" if run.distilled else "")
        + f". Every runtime on {run.threads} threads and the same input tensor; "
        "OpenVINO's `INFERENCE_PRECISION_HINT` pinned to `f32`; engines exported with a dynamic batch (max 8). The "
        f"runners of one image size are timed side by side in {run.rounds} interleaved rounds (order rotated; per "
        "round and runner one untimed call, then 5 timed calls at batch 1, 2 at batch 8), after 3 warm-up calls "
        "each. Each round records the CPU share other processes took meanwhile; the medians are over the quiet "
        "rounds when there are at least 3 (2 at batch 8). mAP through the served pre/postprocessing (letterbox, "
        "NMS at conf 0.001) on the fixture's 80 validation images; the model was trained at 320, so every variant's "
        "absolute mAP at 640 is lower, and the drop against PyTorch FP32 at the same size is what counts.",
        "",
        *_pruned_paragraph(run),
        *_distilled_paragraph(run),
        run.table,
        "",
        PLOT_LINE,
        "",
        *_verdict(run),
        *_load(run),
        *explanation(run),
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} CPUs; {_versions()}. Reproduce with "
        "(the first command trains and caches the pruned and the distilled checkpoints; the second times "
        "everything, waiting for the "
        "shared benchmark lock"
        + ("; each `--earlier` file is the `--json` of an earlier run of the same command" if run.earlier else "")
        + "):",
        "",
        "```",
        f"nice -n 10 {run.command} --prepare-only",
        f"uptime; flock /tmp/kestrel-bench.lock {run.command}; uptime",
        "```",
    ]
    doc_sections.replace("Engine", "\n".join(_wrap(lines)), docs)


def _wrap(lines: list[str], width: int = 118) -> list[str]:
    """Paragraphs (one long line each) wrapped for the Markdown file; tables, code and lists kept as they are."""
    wrapped: list[str] = []
    fenced = False
    for line in lines:
        fenced ^= line.startswith("```")
        if fenced or line.startswith(("|", "```", "#")) or len(line) <= width:
            wrapped.append(line)
            continue
        indent = "  " if line.startswith("- ") else ""
        current = ""
        for word in line.split(" "):
            if current and len(current) + 1 + len(word) > width:
                wrapped.append(current)
                current = indent + word
            else:
                current = f"{current} {word}" if current else word
        wrapped.append(current)
    return wrapped
