"""Triton Python-backend model: the whole served pipeline (letterbox, engine, NMS) as one model, for the Python runtime.

With native backends the engine is its own model and an ensemble chains it between the Python pre- and
postprocessing. When the engine itself runs in the Python backend that ensemble costs three stub round trips per
request, and each Python model sees its requests one by one; here one `execute` letterboxes every image of a
dynamic batch, runs the engine once on all of them, and splits the boxes back per request.

The steps are this package's own modules, not copies of their code: the repository holds `preprocess.py`,
`runtime.py` and `postprocess.py` beside this file (written as `model.py`). Triton's Python backend imports a model
as the module `<version>.model` with the model's folder on `sys.path`, so the relative import below finds those
sibling files there, and the package's originals here.

Parameters (strings, as in config.pbtxt): `preprocessing` and `postprocessing` (JSON, as in the two modules),
`engine_file` (beside this file), `inference_precision`, and `threads` (the engine's; "0" or absent: its default).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import drift, postprocess, preprocess, runtime

INPUT, OUTPUT = "IMAGE", "DETECTIONS"


def detect(
    requests: Sequence[Sequence[preprocess.Image]],
    run: runtime.Run,
    pre: preprocess.Preprocessing,
    post: postprocess.Postprocessing,
    observe: Callable[[list[postprocess.Array]], None] | None = None,
    *,
    sample: Callable[[list[preprocess.Image], list[postprocess.Array]], None] | None = None,
) -> list[postprocess.Array]:
    """Each request's images -> that request's DETECTIONS (images x rows x 6, padded), one engine run for all;
    `observe` sees every image's boxes, unpadded, and `sample` every image with its boxes."""
    flat = [image for images in requests for image in images]
    if not flat:
        return [postprocess.padded([]) for _ in requests]
    tensor, transforms = preprocess.batch(flat, pre)
    boxes = [postprocess.detections(r, t, post) for r, t in zip(run(tensor), transforms, strict=True)]
    if observe is not None:
        observe(boxes)
    if sample is not None:
        sample(flat, boxes)
    answers, start = [], 0
    for images in requests:
        answers.append(postprocess.padded(boxes[start : start + len(images)]))
        start += len(images)
    return answers


def problem(batch: preprocess.Image) -> str | None:
    """Why a request's IMAGE cannot be preprocessed; checked first, so one bad request fails alone, not its batch."""
    if batch.ndim != 4 or batch.shape[-1] != 3 or 0 in batch.shape[1:3]:
        return f"{INPUT} must hold non-empty HxWx3 images, got a batch of shape {list(batch.shape)}"
    return None


class TritonPythonModel:
    """IMAGE (uint8 HxWx3, batched) -> DETECTIONS (float32 n x 6), the ensemble's tensors in one model."""

    def initialize(self, args: dict[str, Any]) -> None:
        # Exists only inside Triton's Python backend; imported by name so this module loads anywhere.
        self._pb: Any = importlib.import_module("triton_python_backend_utils")
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self._pre = preprocess.Preprocessing.from_json(params["preprocessing"])
        self._post = postprocess.Postprocessing.from_json(params["postprocessing"])
        engine_file = Path(args["model_repository"]) / args["model_version"] / params["engine_file"]
        # Not caught: an engine that cannot load must fail the model's load, so that its rollout fails and rolls back.
        precision, threads = params.get("inference_precision", "fp32"), int(params.get("threads", "0"))
        self._run = runtime.load(str(engine_file), precision, threads, self._pre.imgsz)
        self._monitor = drift.from_triton(self._pb, args, config, args["model_name"])
        # Sampling of live requests (spec.monitoring.sampling): off unless the Deployment sets its rate. Imported only
        # then: it needs `cryptography`, which a Triton image serving without sampling need not have.
        self._sampler: Any = None
        self._sampled: Any = None
        if os.environ.get("KESTREL_SAMPLES_RATE", "0") not in ("", "0"):
            from . import sampling  # noqa: PLC0415

            self._sampler = sampling.from_environ(args["model_name"], skip=drift.warmup_executions(config))
            self._sampled = sampling.Metrics(self._pb, args["model_name"]) if self._sampler else None

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self._pb
        batches = [pb.get_input_tensor_by_name(request, INPUT).as_numpy() for request in requests]
        problems = [problem(batch) for batch in batches]
        valid = [list(batch) for batch, found in zip(batches, problems, strict=True) if found is None]
        # An engine failure propagates: Triton then fails every request of the batch (they shared one engine run)
        # and counts them in nv_inference_request_failure{reason="BACKEND"}, which the canary analysis and the alerts
        # read. A response carrying an error, as below, Triton counts as a success: right for a request whose own
        # input is unusable (a client error, like the shapes Triton itself refuses), wrong for the server's failures.
        observe = self._monitor.observe if self._monitor else None
        sample = self._sampler.offer if self._sampler else None
        answers = iter(detect(valid, self._run, self._pre, self._post, observe, sample=sample))
        if self._sampler is not None and self._sampled is not None:
            self._sampled.update(self._sampler.taken())
        return [
            pb.InferenceResponse(error=pb.TritonError(found))
            if found
            else pb.InferenceResponse(output_tensors=[pb.Tensor(OUTPUT, next(answers))])
            for found in problems
        ]

    def finalize(self) -> None:
        # Samples already chosen are sealed and sent before the model goes (bounded: the queue is short).
        if self._sampler is not None:
            self._sampler.drain(timeout=10.0)
