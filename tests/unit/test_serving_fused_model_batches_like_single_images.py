"""The Python runtime's fused model: one engine run for a whole dynamic batch gives each request exactly the boxes
it gets alone; a malformed request fails alone; an engine that cannot load fails the model's load; and the files
the repository holds import each other the way Triton's Python backend imports a model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from kestrel.engine import pipeline
from kestrel.serving import config, pbtxt, repository
from kestrel.serving.backends import fused, postprocess, preprocess, sampling

PRE = preprocess.Preprocessing(imgsz=64)
POST = pipeline.SERVING_POSTPROCESSING
CLASSES = 3
ANCHORS = 84  # 8² + 4² + 2² cells at imgsz 64


def engine(calls: list[int]) -> Any:
    """An engine whose boxes depend on each image alone: anchor k sits on cell k of a 10x10 grid, scored by the
    letterboxed image's pixel there. Records each call's batch size."""

    def run(batch: preprocess.Tensor) -> postprocess.Array:
        calls.append(len(batch))
        raw = np.zeros((len(batch), 4 + CLASSES, ANCHORS), np.float32)
        for k in range(ANCHORS):
            x, y = 3 + 6 * (k % 10), 3 + 6 * (k // 10 % 10)
            raw[:, :4, k] = [x, y, 5, 5]
            raw[:, 4 + k % CLASSES, k] = batch[:, k % 3, y, x]
        return raw

    return run


def images(seed: int, shapes: list[tuple[int, int]]) -> list[preprocess.Image]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def alone(image: preprocess.Image) -> postprocess.Array:
    tensor, transform = preprocess.batch([image], PRE)
    found = postprocess.detections(engine([])(tensor)[0], transform[0], POST)
    return found


def test_one_engine_run_answers_every_request_as_if_it_were_alone() -> None:
    requests = [images(1, [(48, 64)]), images(2, [(64, 64), (30, 50), (64, 40)]), images(3, [(20, 64)])]
    calls: list[int] = []
    answers = fused.detect(requests, engine(calls), PRE, POST)
    assert calls == [5]
    assert [a.shape[0] for a in answers] == [1, 3, 1]
    compared = 0
    for request, answer in zip(requests, answers, strict=True):
        for image, rows in zip(request, answer, strict=True):
            expected = alone(image)
            assert np.array_equal(rows[: len(expected)], expected)
            assert (rows[len(expected) :] == -1).all()  # the request's padding, nothing from other requests
            compared += len(expected)
    assert compared > 10, "too few boxes for the comparison to mean anything"


class FakeTritonUtils:
    """The part of triton_python_backend_utils the fused model uses."""

    class Tensor:
        def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
            self.name, self.array = name, array

        def as_numpy(self) -> npt.NDArray[Any]:
            return self.array

    class TritonError:
        def __init__(self, message: str) -> None:
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors: list[Any] | None = None, error: Any = None) -> None:
            self.output_tensors, self.error = output_tensors or [], error

    @staticmethod
    def get_input_tensor_by_name(request: Any, name: str) -> Any:
        return request.inputs[name]


def model(run: Any) -> fused.TritonPythonModel:
    served = fused.TritonPythonModel()
    served._pb = FakeTritonUtils
    served._pre, served._post, served._run = PRE, POST, run
    served._monitor = None  # the drift monitor's metrics: tests/unit/test_serving_drift_score.py
    served._sampler = served._sampled = (
        None  # live sampling: tests/unit/test_sampling_seals_chosen_requests_to_the_kek.py
    )
    return served


def request(batch: preprocess.Image) -> Any:
    return SimpleNamespace(inputs={"IMAGE": FakeTritonUtils.Tensor("IMAGE", batch)})


def test_execute_batches_the_good_requests_and_fails_a_malformed_one_alone() -> None:
    good = [np.stack(images(seed, [(40, 64)] * count)) for seed, count in ((4, 1), (5, 2))]
    calls: list[int] = []
    responses = model(engine(calls)).execute(
        [request(good[0]), request(np.zeros((1, 0, 5, 3), np.uint8)), request(good[1])]
    )
    assert calls == [3]
    assert "non-empty HxWx3" in responses[1].error.message and not responses[1].output_tensors
    for batch, response in zip(good, (responses[0], responses[2]), strict=True):
        assert response.error is None
        (tensor,) = response.output_tensors
        assert tensor.name == "DETECTIONS" and tensor.array.dtype == np.float32
        for image, rows in zip(batch, tensor.array, strict=True):
            expected = alone(image)
            assert np.array_equal(rows[: len(expected)], expected)


def test_every_answered_image_is_offered_to_the_sampler_with_its_own_boxes() -> None:
    offered: list[tuple[preprocess.Image, postprocess.Array]] = []
    updates: list[sampling.Counts] = []
    served = model(engine([]))
    served._sampler = SimpleNamespace(
        offer=lambda images, boxes: offered.extend(zip(images, boxes, strict=True)),
        taken=lambda: sampling.Counts(sent=1),
    )
    served._sampled = SimpleNamespace(update=updates.append)
    good = [np.stack(images(seed, [(40, 64)] * count)) for seed, count in ((7, 2), (8, 1))]
    served.execute([request(good[0]), request(np.zeros((1, 0, 5, 3), np.uint8)), request(good[1])])
    assert [image.tobytes() for image, _ in offered] == [image.tobytes() for batch in good for image in batch]
    for image, boxes in offered:
        assert np.array_equal(boxes, alone(image))
    assert [u.sent for u in updates] == [1]  # the thread's counts reach Triton's metrics from execute


def test_an_engine_failure_propagates_to_triton_which_fails_and_counts_the_whole_batch() -> None:
    """Raised, not answered: Triton counts error responses as successes (tests/e2e/test_triton_harness.py shows
    both), and the canary's error rate must see an engine that fails."""

    def broken(batch: preprocess.Tensor) -> postprocess.Array:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        model(broken).execute([request(np.stack(images(6, [(64, 64)]))) for _ in range(3)])


def test_an_engine_that_cannot_load_fails_the_model_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    info = config.ModelInfo("shapes", {0: "a", 1: "b", 2: "c"}, 32, 64, "detect", "onnx", "fp32")
    cfg = config.fused(info, PRE, POST, config.Batching(max_batch=4), config.Instances(runtime="python"))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FakeTritonUtils)
    args = {"model_config": json.dumps(_as_json(cfg)), "model_repository": str(tmp_path), "model_version": "1"}
    with pytest.raises(Exception, match=r"(?i)protobuf|onnx|load"):
        fused.TritonPythonModel().initialize(args)


def _as_json(cfg: dict[str, Any]) -> dict[str, Any]:
    """The model config as Triton hands it to initialize(): JSON, parameters as {key: {string_value}}."""
    from google.protobuf import json_format, text_format  # noqa: PLC0415
    from tritonclient.grpc import model_config_pb2  # noqa: PLC0415

    parsed = text_format.Parse(pbtxt.render(cfg), model_config_pb2.ModelConfig())
    found: dict[str, Any] = json_format.MessageToDict(parsed, preserving_proto_field_name=True)
    return found


def test_the_written_model_imports_its_sibling_files_as_tritons_python_backend_does(tmp_path: Path) -> None:
    engine_file = tmp_path / "model.onnx"
    engine_file.write_bytes(b"onnx")
    info = config.ModelInfo("shapes", {0: "a"}, 32, 64, "detect", "onnx", "fp32")
    layout = repository.layout(
        info,
        engine_file,
        pre=PRE,
        post=POST,
        batching=config.Batching(max_batch=4),
        instances=config.Instances(runtime="python"),
        dynamic=True,
    )
    repository.write(layout, tmp_path / "repo")
    model_dir = tmp_path / "repo" / "shapes"
    # The stub appends the version folder and the model folder to sys.path and imports "<version>.model"; a fresh
    # interpreter keeps this process's modules out of it, and -I keeps this checkout off its path.
    probe = (
        "import importlib, sys; sys.path += sys.argv[1:]; model = importlib.import_module('1.model'); "
        "print([model.preprocess.__file__, model.runtime.__file__, model.postprocess.__file__])"
    )
    command = [sys.executable, "-I", "-c", probe, str(model_dir / "1"), str(model_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.replace("'", '"'))
    assert loaded == [str(model_dir / "1" / name) for name in ("preprocess.py", "runtime.py", "postprocess.py")]
