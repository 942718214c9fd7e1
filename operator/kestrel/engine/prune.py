"""Structured pruning: remove whole channels (torch-pruning follows YOLO's dependency graph), then save a checkpoint.

Zeroing weights (torch.nn.utils.prune) makes neither a smaller nor a faster engine; only removing channels does. The
C2f block splits one convolution's output in two with `chunk`, which torch-pruning cannot track; each C2f is first
rewritten as the equivalent two-convolution form (same weights, same outputs), pruned, and then merged back into one
convolution whose output is split in two (now unequal) parts: at batch 1 a runtime pays a fixed cost per
convolution, so eight extra small convolutions would give back much of what pruning saved. The detect head's
intermediate convolutions are pruned too (after pruning the rest they are most of the remaining work); its last
convolution of each branch and the DFL keep their channels, so the output layout (4 + nc, anchors) and everything
downstream stay the same.
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

from kestrel.engine import finetune, offline

# Channel counts in multiples of 16: INT8 kernels on x86 (VNNI, AMX) work on 16 output channels at a time.
ROUND_TO = 16
# The stem (YOLOv8's layers before its first stride-8 block: P1, P2 and its C2f, the convolution down to P3) keeps its
# channels: it has few (16 to 64, which rounding to 16 would halve) and runs at high resolution, where its time is
# memory traffic rather than channel count: pruning it too saved no time measurable in bench/engine.py's OpenVINO INT8
# rows, for halving layers that every later one depends on.
STEM_LAYERS = 4


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


class C2fSplit(nn.Module):
    """A pruned C2fTwoConv with cv0 and cv1 merged back into one convolution whose output is split, as C2f does."""

    def __init__(self, two: C2fTwoConv) -> None:
        super().__init__()
        parts = (two.cv0, two.cv1)
        self.sizes = [int(conv.conv.out_channels) for conv in parts]
        self.cv1 = copy.deepcopy(two.cv0)
        conv, bn = self.cv1.conv, self.cv1.bn
        conv.weight = nn.Parameter(torch.cat([part.conv.weight.data for part in parts]))
        conv.out_channels = sum(self.sizes)
        if conv.bias is not None:
            conv.bias = nn.Parameter(torch.cat([part.conv.bias.data for part in parts]))
        bn.num_features = conv.out_channels
        bn.weight = nn.Parameter(torch.cat([part.bn.weight.data for part in parts]))
        bn.bias = nn.Parameter(torch.cat([part.bn.bias.data for part in parts]))
        bn.running_mean = torch.cat([part.bn.running_mean for part in parts])
        bn.running_var = torch.cat([part.bn.running_var for part in parts])
        self.cv2, self.m = two.cv2, two.m
        for attribute in ("f", "i", "type", "np"):
            setattr(self, attribute, getattr(two, attribute))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split(self.sizes, 1))
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
    fine_tune: finetune.FineTuneEffect | None = None  # set by the pipeline when the spec asks for a fine-tune


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
    detect = model.model[-1]
    pruner = tp.pruner.BasePruner(
        model,
        torch.zeros(1, 3, imgsz, imgsz),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=amount,
        # The stem, and the outputs: each head branch's last convolution (box distribution, class scores), the DFL.
        ignored_layers=[
            *model.model[:STEM_LAYERS],
            detect.dfl,
            *(branch[-1] for branch in (*detect.cv2, *detect.cv3)),
        ],
        round_to=ROUND_TO,
    )
    pruner.step()
    for index, layer in enumerate(model.model):
        if isinstance(layer, C2fTwoConv):
            model.model[index] = C2fSplit(layer)
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
