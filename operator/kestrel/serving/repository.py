"""The Triton model repository: which file goes where. `layout` is pure (a plan of relative paths); `write` copies.

Native backends (the engine runs in Triton's own onnxruntime/openvino/tensorrt/pytorch backend):
    <name>/config.pbtxt, <name>/1/                          ensemble: raw image in, boxes out (what clients call)
    <name>-preprocess/config.pbtxt, 1/model.py             Python backend, letterbox + normalize
    <name>-engine/config.pbtxt, 1/model.onnx|.xml+.bin|.pt|.plan   native backend
    <name>-postprocess/config.pbtxt, 1/model.py            Python backend, NMS + scale back
                                     1/drift.py, baseline.json   what model.py imports; the drift baseline, if any
The Python runtime (ONNX Runtime/OpenVINO inside the Python backend): one model, the same tensors as the ensemble
    <name>/config.pbtxt, 1/model.py (backends/fused.py)    letterbox, engine, NMS in one stub, one engine run a batch
                         1/preprocess.py, runtime.py, postprocess.py, sampling.py, drift.py, model.onnx|.xml+.bin
                         what model.py imports; 1/baseline.json, the drift baseline (backends/drift.py), when the
                         build recorded one
A static-batch engine cannot sit behind a batching model, so without a dynamic batch only the engine is written (and
no model of the repository postprocesses, so none exports drift metrics).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from kestrel.serving import config, pbtxt
from kestrel.serving.backends import drift, fused, postprocess, preprocess, runtime, sampling

# Ultralytics prefixes its .engine files with a length-prefixed JSON metadata block that Triton cannot parse.
_TRT_METADATA_LENGTH_BYTES = 4


@dataclasses.dataclass(frozen=True)
class Repository:
    """Relative path -> file content: text to write, or a source Path to copy."""

    files: dict[str, str | Path]

    def paths(self) -> list[str]:
        return sorted(self.files)


def _engine_files(info: config.ModelInfo, artifact: Path) -> dict[str, Path]:
    if info.format == "openvino":
        xml = next(artifact.glob("*.xml"))
        return {"model.xml": xml, "model.bin": xml.with_suffix(".bin")}
    return {config.MODEL_FILE[info.format]: artifact}


def layout(
    info: config.ModelInfo,
    artifact: Path,
    *,
    pre: preprocess.Preprocessing,
    post: postprocess.Postprocessing,
    batching: config.Batching,
    instances: config.Instances,
    dynamic: bool,
    baseline: drift.Tally | None = None,
) -> Repository:
    if not dynamic:
        info = dataclasses.replace(info, static_batch=batching.max_batch)
    elif instances.runtime == "python":
        return _fused(info, artifact, pre=pre, post=post, batching=batching, instances=instances, baseline=baseline)
    files: dict[str, str | Path] = {}
    engine_dir = f"{info.name}-engine"
    files[f"{engine_dir}/config.pbtxt"] = pbtxt.render(config.engine(info, batching, instances))
    for name, source in _engine_files(info, artifact).items():
        files[f"{engine_dir}/1/{name}"] = source
    if instances.runtime == "python":
        files[f"{engine_dir}/1/model.py"] = Path(runtime.__file__)
    if dynamic:
        count = max(1, instances.count)
        pre_cfg = config.preprocess_model(info, pre, batching, count)
        post_cfg = config.postprocess_model(info, post, batching, count)
        files[f"{info.name}-preprocess/config.pbtxt"] = pbtxt.render(pre_cfg)
        files[f"{info.name}-preprocess/1/model.py"] = Path(preprocess.__file__)
        files[f"{info.name}-postprocess/config.pbtxt"] = pbtxt.render(post_cfg)
        files[f"{info.name}-postprocess/1/model.py"] = Path(postprocess.__file__)
        files |= _drift(f"{info.name}-postprocess/1", baseline)
        files[f"{info.name}/config.pbtxt"] = pbtxt.render(config.ensemble(info, batching))
        files[f"{info.name}/1/.keep"] = ""  # an ensemble needs a version directory, even empty
    return Repository(files)


def _fused(
    info: config.ModelInfo,
    artifact: Path,
    *,
    pre: preprocess.Preprocessing,
    post: postprocess.Postprocessing,
    batching: config.Batching,
    instances: config.Instances,
    baseline: drift.Tally | None,
) -> Repository:
    version = f"{info.name}/1"
    files: dict[str, str | Path] = {
        f"{info.name}/config.pbtxt": pbtxt.render(config.fused(info, pre, post, batching, instances))
    }
    files[f"{version}/model.py"] = Path(fused.__file__)
    # The modules fused.py imports, verbatim and under their own names: its relative imports resolve to them.
    for module in (preprocess, runtime, postprocess, sampling):
        source = Path(str(module.__file__))
        files[f"{version}/{source.name}"] = source
    files |= _drift(version, baseline)
    for name, source in _engine_files(info, artifact).items():
        files[f"{version}/{name}"] = source
    return Repository(files)


def _drift(version: str, baseline: drift.Tally | None) -> dict[str, str | Path]:
    """The drift monitor beside the model that postprocesses (postprocess.py imports it), and its baseline."""
    files: dict[str, str | Path] = {f"{version}/drift.py": Path(drift.__file__)}
    if baseline is not None:
        files[f"{version}/{drift.BASELINE_FILE}"] = baseline.to_json() + "\n"
    return files


def write(repository: Repository, root: Path) -> list[Path]:
    written = []
    for relative, content in sorted(repository.files.items()):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content)
        elif relative.endswith(".plan"):
            _write_plan(content, target)
        else:
            shutil.copyfile(content, target)
        written.append(target)
    return written


def _write_plan(engine: Path, target: Path) -> None:
    data = engine.read_bytes()
    length = int.from_bytes(data[:_TRT_METADATA_LENGTH_BYTES], "little")
    start = _TRT_METADATA_LENGTH_BYTES + length
    # A plain plan (no Ultralytics header) starts with a non-JSON byte; keep it whole.
    if len(data) > start and data[_TRT_METADATA_LENGTH_BYTES : _TRT_METADATA_LENGTH_BYTES + 1] == b"{":
        data = data[start:]
    target.write_bytes(data)
