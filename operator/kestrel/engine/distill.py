"""Knowledge distillation: a narrower student, trained against the source model as its teacher.

The student is the source's own architecture with `width` of the channels of every layer past the stem (the stem and
the detect head's output convolutions keep theirs, as in pruning), and it starts from the source's weights: the
channels kept are the ones structured pruning (engine/prune.py) keeps, by magnitude. A student built from the source's
YAML at a smaller width would start from random weights, and on a CPU build that is far too many epochs away from a
useful detector (the fixture detector took 20 epochs, 50 minutes on two cores, from random weights to mAP50-95 0.79),
while the pruned start needs a few. What distillation adds to pruning's fine-tune is the teacher: Ultralytics'
DistillationModel (the trainer's `distill_model`) adds to the detection loss on the labels a score-weighted L2 loss
between the student's features at the detect head's inputs (through a trained 1x1 projector) and the teacher's, the
teacher's class scores weighting where it matters; `weight` is that loss's weight (Ultralytics' `dis`). The training
is the fine-tune's (engine/finetune.py): offline, CPU, deterministic, on the dataset's train split only, at the size
the source was trained at.

Shallower students (fewer blocks per stage) are not offered: the smallest YOLO scales keep one or two blocks per
stage, and a block removed takes its trained weights with it, which puts the student back near a cold start.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kestrel.engine import finetune, prune

FIELD = "spec.engine.distill.dataset"
DEFAULT_WEIGHT = 6.0  # Ultralytics' default `dis`


@dataclasses.dataclass(frozen=True)
class DistillEffect:
    width: float
    weight: float
    params_teacher: int
    params_student: int
    size_teacher: int
    size_student: int
    # The training: epochs, images, seconds, and the student's mAP before (as initialised) and after it.
    training: finetune.FineTuneEffect


def distill(
    teacher: Path,
    target: Path,
    data_yaml: Path,
    *,
    width: float,
    weight: float,
    recipe: finetune.Recipe,
    imgsz: int,
    workdir: Path,
    score: finetune.Score | None = None,
) -> DistillEffect:
    """Make the student of `teacher` at `width`, train it against the teacher on data.yaml's train split, save it."""
    workdir.mkdir(parents=True, exist_ok=True)
    initial = workdir / "student-initial.pt"
    narrowed = prune.prune(teacher, initial, round(1.0 - width, 6), imgsz)
    trained = finetune.fine_tune(
        initial,
        target,
        data_yaml,
        recipe,
        served_imgsz=imgsz,
        workdir=workdir,
        score=score,
        teacher=finetune.Teacher(teacher, weight),
        field=FIELD,
    )
    return DistillEffect(
        width=width,
        weight=weight,
        params_teacher=narrowed.params_before,
        params_student=trained.params,
        size_teacher=narrowed.size_before,
        size_student=target.stat().st_size,
        training=trained,
    )
