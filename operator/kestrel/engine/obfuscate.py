"""Obfuscation of a served graph (`spec.security.obfuscate`): what the file says beyond the computation goes.

ONNX: every node gets a sequential name (`n0`, `n1`, ...), every tensor and initializer other than the graph's inputs
and outputs one too (`t0`, ...), and doc strings, the producer, the domain, the graph's name and all metadata
properties (Ultralytics writes the class names, the training arguments, the author, the date there) are removed.
OpenVINO IR: every operation's friendly name becomes `op0`, `op1`, ..., every tensor name but the inputs' and
outputs' is dropped, and the model's runtime info (where Ultralytics' metadata lands) is cleared. The arithmetic
is untouched: the obfuscated engine must give the plain one's outputs exactly (`check_parity`).

What it protects against, and what not, is in docs/security.md: it removes the names and metadata a file copied off
a node would give away; it does not hide the architecture, the weights, or the outputs from anyone who runs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kestrel.engine import errors

FORMATS = ("onnx", "openvino")


def obfuscate(engine_format: str, plain: Path, target: Path) -> Path:
    """The obfuscated copy of the exported `plain` engine, written under `target` (a folder)."""
    target.mkdir(parents=True, exist_ok=True)
    if engine_format == "onnx":
        return _onnx(plain, target / plain.name)
    if engine_format == "openvino":  # a folder in, a folder out, as export.Exported holds it
        _openvino(next(plain.glob("*.xml")), target)
        return target
    raise errors.ExportError(f"spec.security.obfuscate: {engine_format} engines cannot be obfuscated (onnx, openvino)")


def _onnx(source: Path, target: Path) -> Path:
    import onnx  # noqa: PLC0415 - the builder image only

    model = onnx.load(str(source))
    graph = model.graph
    keep = {value.name for value in graph.input} | {value.name for value in graph.output}
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for initializer in graph.initializer:
        initializer.name = rename(initializer.name)
        initializer.doc_string = ""
    for index, node in enumerate(graph.node):
        if any(
            attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attribute in node.attribute
        ):
            raise errors.ExportError("spec.security.obfuscate: a graph with subgraphs (If, Loop) is not obfuscated")
        node.name = f"n{index}"
        node.doc_string = ""
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    kept_info = [info for info in graph.value_info if info.name in names or info.name in keep]
    for info in kept_info:
        info.name = rename(info.name)
        info.doc_string = ""
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    for value in [*graph.input, *graph.output]:
        value.doc_string = ""
    graph.name, graph.doc_string = "graph", ""
    model.doc_string, model.producer_name, model.producer_version, model.domain = "", "", "", ""
    del model.metadata_props[:]
    onnx.save(model, str(target))
    return target


def _openvino(xml: Path, target: Path) -> Path:
    import openvino as ov  # noqa: PLC0415 - the builder image only

    model = ov.Core().read_model(str(xml))
    keep = {name for port in [*model.inputs, *model.outputs] for name in port.get_names()}
    for index, op in enumerate(model.get_ordered_ops()):
        op.set_friendly_name(f"op{index}")
        for output in op.outputs():
            tensor = output.get_tensor()
            tensor.set_names({name for name in tensor.get_names() if name in keep})
    for key in list(model.get_rt_info().keys()):
        del model.get_rt_info()[key]
    result = target / "model.xml"
    ov.save_model(model, str(result), compress_to_fp16=False)
    shutil.copy(xml.parent / "metadata.yaml", target / "metadata.yaml")  # the runner's imgsz; never served
    return result


def check_parity(plain: Any, obfuscated: Any, batch: npt.NDArray[np.float32]) -> float:
    """The largest absolute difference of the two engines' outputs on `batch`; the obfuscation refused if not 0."""
    expected, found = np.asarray(plain(batch)), np.asarray(obfuscated(batch))
    delta = float(np.max(np.abs(expected - found))) if expected.size else 0.0
    if expected.shape != found.shape or delta != 0.0:
        raise errors.ExportError(
            f"spec.security.obfuscate: the obfuscated engine's outputs differ from the plain one's (max abs "
            f"{delta:.3g}, shapes {expected.shape} vs {found.shape}); it is not served"
        )
    return delta
