"""Fine-tune a pruned checkpoint on a training split, so that the channels pruning removed cost less accuracy.

Ultralytics' trainer rebuilds its model from the checkpoint's YAML, which would bring every pruned channel back (and
C2f's chunked form with them); `_trainer` hands it the pruned module itself instead, and what is saved is that
module's trained weights in the pruned shape. The fine-tune runs at the size the source was trained at (its
`train_args`), never larger: training at the serving size could raise mAP there for reasons that have nothing to do
with the engine, and the gate's "drop against the source" would stop meaning what it says. Offline, on the CPU,
deterministic (fixed seed, no loader workers, deterministic kernels), so a rebuild of one spec trains the same model
on the same machine.

Distillation (engine/distill.py) trains the same way with a `Teacher`: Ultralytics' DistillationModel wraps the
trained module, adds its feature distillation loss to the detection loss, and is unwrapped again before saving.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from kestrel.api import errors as api_errors
from kestrel.engine import accuracy, datasets, errors, export, offline

FIELD = "spec.engine.prune.dataset"
# Ultralytics' defaults, but for the warm-up: its first iterations start the bias learning rate at 0.1, which
# scrambles a trained head in a run this short. AdamW at the rate Ultralytics' "auto" picks for a short run.
_TRAIN_ARGS: dict[str, Any] = {
    "optimizer": "AdamW",
    "lr0": 0.001,
    "warmup_epochs": 0,
    "amp": False,
    "plots": False,
    "val": False,
    "cache": False,
    "workers": 0,
    "deterministic": True,
    "patience": 0,
    "verbose": False,
    "exist_ok": True,
}

# What defines the task the source learnt (augmentation, loss weights) comes from its own train_args, so that the
# fine-tune continues that training instead of teaching the model something else.
_FROM_SOURCE = (
    "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr", "bgr",
    "mosaic", "mixup", "cutmix", "copy_paste", "box", "cls", "dfl",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Recipe:
    epochs: int
    # Half Ultralytics' default: the same compute per epoch makes twice the updates, which a short run needs (pruned
    # fixture, 640: mAP50-95 0.31 after 4 epochs at batch 8, 0.24 at 16).
    batch: int = 8
    seed: int = 0
    threads: int = 1
    close_mosaic: int | None = None  # last epochs without mosaic; None: every epoch (a short run ends on real images)


@dataclasses.dataclass(frozen=True)
class Teacher:
    """The model the trained one also learns from: its features at the detect head's inputs, weighted by its scores."""

    checkpoint: Path
    weight: float  # Ultralytics' `dis`: the distillation loss against the detection loss


@dataclasses.dataclass(frozen=True)
class FineTuneEffect:
    epochs: int
    imgsz: int
    imgsz_from: str  # where imgsz came from: the checkpoint's train_args, or the served size when it has none
    train_images: int
    batch: int
    seed: int
    seconds: float
    params: int
    # mAP of the pruned model before and after the fine-tune, scored as the gate scores (None: no scoring data).
    map50_95_before: float | None
    map50_95_after: float | None
    map50_before: float | None
    map50_after: float | None


Score = Callable[[Path], accuracy.Accuracy]


def training_imgsz(train_args: dict[str, Any], served: int) -> tuple[int, str]:
    """The size the checkpoint was trained at (`train_args.imgsz`), or the served size when it does not say."""
    imgsz = train_args.get("imgsz")
    if isinstance(imgsz, (list, tuple)):
        imgsz = max(imgsz)
    if isinstance(imgsz, int) and imgsz > 0:
        return imgsz, "train_args"
    return served, "spec.model.imgsz"


def check_dataset(data_yaml: Path, classes: int, field: str = FIELD) -> int:
    """Refuse, before any training, a data.yaml the training cannot use; return the number of training images."""
    try:
        dataset = datasets.load(data_yaml)
        raw: dict[str, Any] = yaml.safe_load(data_yaml.read_text())
    except (errors.FetchError, yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise api_errors.SpecError(field, f"{data_yaml} is not a readable YOLO data.yaml: {error}") from error
    if not raw.get("train") or not raw.get("val"):
        raise api_errors.SpecError(field, f"{data_yaml} needs both a `train` and a `val` split to train on")
    if len(dataset.names) != classes:
        raise api_errors.SpecError(
            field, f"{data_yaml} has {len(dataset.names)} classes, the model {classes}: point it at the model's data"
        )
    try:
        return len(dataset.images("train"))
    except errors.FetchError as error:
        raise api_errors.SpecError(field, str(error)) from error


def fine_tune(
    pruned: Path,
    target: Path,
    data_yaml: Path,
    recipe: Recipe,
    *,
    served_imgsz: int,
    workdir: Path,
    score: Score | None = None,
    teacher: Teacher | None = None,
    field: str = FIELD,
) -> FineTuneEffect:
    """Train the pruned checkpoint for `recipe.epochs` on data.yaml's train split (against `teacher` when given);
    save it to `target`. `field` is the spec's dataset field, which errors name."""
    offline.configure()
    tasks: Any = importlib.import_module("ultralytics.nn.tasks")
    torch_utils: Any = importlib.import_module("ultralytics.utils.torch_utils")
    model, ckpt = tasks.load_checkpoint(str(pruned), device="cpu", fuse=False)
    train_images = check_dataset(data_yaml, int(model.nc), field)
    source_args: dict[str, Any] = (ckpt or {}).get("train_args") or {}
    imgsz, imgsz_from = training_imgsz(source_args, served_imgsz)
    before = score(pruned) if score else None
    workdir.mkdir(parents=True, exist_ok=True)
    arguments = {
        **{key: source_args[key] for key in _FROM_SOURCE if key in source_args},
        **_TRAIN_ARGS,
        "model": str(pruned),
        "data": str(export.absolute_data_yaml(data_yaml, workdir, "fine-tune-data.yaml")),
        "imgsz": imgsz,
        "epochs": recipe.epochs,
        "batch": recipe.batch,
        "seed": recipe.seed,
        "close_mosaic": recipe.epochs if recipe.close_mosaic is None else recipe.close_mosaic,
        "device": "cpu",
        "project": str(workdir),
        "name": "fine-tune",
        **({"distill_model": str(teacher.checkpoint), "dis": teacher.weight} if teacher else {}),
    }
    # Ultralytics trains on cpu_count - 1 threads (one on two cores) unless told otherwise.
    torch_utils.NUM_THREADS = recipe.threads
    started = time.monotonic()
    trainer = _trainer(model.float(), arguments)
    try:
        trainer.train()
    except Exception as error:  # Ultralytics raises bare Exceptions with useful text
        section = field.rsplit(".", 1)[0]
        raise errors.FineTuneError(f"{section}: the training failed: {error}") from error
    finally:
        # Ultralytics switches on deterministic kernels for the whole process; the export and the runners after
        # it do not need them.
        torch.use_deterministic_algorithms(False)
    seconds = round(time.monotonic() - started, 1)
    trained: nn.Module = trainer.ema.ema if trainer.ema is not None else trainer.model
    trained = getattr(trained, "student_model", trained)  # distillation wraps the trained model
    trained = trained.float().eval()
    for parameter in trained.parameters():
        parameter.requires_grad_(False)
    if hasattr(trained, "criterion"):
        del trained.criterion  # training-only state; Ultralytics makes a new one when it needs one
    saved = {
        "model": trained.half(),
        "train_args": source_args,
        "kestrel_prune": (ckpt or {}).get("kestrel_prune"),
        "kestrel_fine_tune": {
            "epochs": recipe.epochs,
            "imgsz": imgsz,
            "seed": recipe.seed,
            **({"distill_weight": teacher.weight} if teacher else {}),
        },
    }
    torch.save(saved, target)
    after = score(target) if score else None
    return FineTuneEffect(
        epochs=recipe.epochs,
        imgsz=imgsz,
        imgsz_from=imgsz_from,
        train_images=train_images,
        batch=recipe.batch,
        seed=recipe.seed,
        seconds=seconds,
        params=sum(p.numel() for p in trained.parameters()),
        map50_95_before=before.map50_95 if before else None,
        map50_95_after=after.map50_95 if after else None,
        map50_before=before.map50 if before else None,
        map50_after=after.map50 if after else None,
    )


def _trainer(model: nn.Module, arguments: dict[str, Any]) -> Any:
    """A DetectionTrainer that trains `model` itself instead of a model rebuilt from its YAML."""
    detect: Any = importlib.import_module("ultralytics.models.yolo.detect")

    class PrunedTrainer(detect.DetectionTrainer):  # type: ignore[misc]
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> nn.Module:
            for parameter in model.parameters():
                parameter.requires_grad_(True)
            return model

    return PrunedTrainer(overrides=arguments)
