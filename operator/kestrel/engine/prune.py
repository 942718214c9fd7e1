"""Structured pruning: remove whole channels (torch-pruning follows YOLO's dependency graph), then save a checkpoint.

Zeroing weights (torch.nn.utils.prune) makes neither a smaller nor a faster engine; only removing channels does. The
C2f block splits one convolution's output in two with `chunk`, which torch-pruning cannot track; each C2f is first
rewritten as the equivalent two-convolution form (same weights, same outputs), then pruned. The detect head keeps
its channels, so the output layout (4 + nc, anchors) and everything downstream stay the same.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kestrel.engine import offline


class C2fTwoConv(nn.Module):
    """C2f with its first convolution split into two (cv0, cv1) instead of one conv whose output is chunked."""

    def __init__(self, c2f: Any) -> None:
        super().__init__()
        hidden = c2f.c
        self.cv0, self.cv1 = copy.deepcopy(c2f.cv1), copy.deepcopy(c2f.cv1)
        for conv, part in ((self.cv0, slice(0, hidden)), (self.cv1, slice(hidden, 2 * hidden))):
            conv.conv.weight = nn.Parameter(c2f.cv1.conv.weight.data[part].clone())
            conv.conv.out_channels = hidden
            if conv.conv.bias is not None:
                conv.conv.bias = nn.Parameter(c2f.cv1.conv.bias.data[part].clone())
            bn = conv.bn
            bn.num_features = hidden
            bn.weight = nn.Parameter(c2f.cv1.bn.weight.data[part].clone())
            bn.bias = nn.Parameter(c2f.cv1.bn.bias.data[part].clone())
            bn.running_mean = c2f.cv1.bn.running_mean[part].clone()
            bn.running_var = c2f.cv1.bn.running_var[part].clone()
        self.cv2, self.m, self.c = c2f.cv2, c2f.m, hidden
        # Ultralytics' BaseModel.forward routes tensors by these attributes.
        for attribute in ("f", "i", "type", "np"):
            setattr(self, attribute, getattr(c2f, attribute))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        y.extend(block(y[-1]) for block in self.m)
        result: torch.Tensor = self.cv2(torch.cat(y, 1))
        return result


@dataclasses.dataclass(frozen=True)
class PruneEffect:
    amount: float
    params_before: int
    params_after: int
    size_before: int
    size_after: int
    seconds: float


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prune(checkpoint: Path, target: Path, amount: float, imgsz: int) -> PruneEffect:
    """Remove `amount` of the prunable channels (L2 magnitude, group-wise) and save an Ultralytics checkpoint."""
    offline.configure()
    tp: Any = importlib.import_module("torch_pruning")
    modules: Any = importlib.import_module("ultralytics.nn.modules")
    tasks: Any = importlib.import_module("ultralytics.nn.tasks")
    started = time.monotonic()
    model, ckpt = tasks.load_checkpoint(str(checkpoint), device="cpu", fuse=False)
    model = model.float().eval()
    for index, layer in enumerate(model.model):
        if isinstance(layer, modules.C2f):
            model.model[index] = C2fTwoConv(layer)
    before = _params(model)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    pruner = tp.pruner.BasePruner(
        model,
        torch.zeros(1, 3, imgsz, imgsz),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=amount,
        ignored_layers=[model.model[-1]],
        round_to=8,  # channel counts that vector units like
    )
    pruner.step()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    saved = {
        "model": model.half(),
        "train_args": (ckpt or {}).get("train_args", {}),
        "kestrel_prune": {"amount": amount, "params_before": before},
    }
    torch.save(saved, target)
    return PruneEffect(
        amount=amount,
        params_before=before,
        params_after=_params(model),
        size_before=checkpoint.stat().st_size,
        size_after=target.stat().st_size,
        seconds=round(time.monotonic() - started, 1),
    )
