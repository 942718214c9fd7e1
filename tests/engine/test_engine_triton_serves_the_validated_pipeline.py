"""A real Triton (the one nvidia-pytriton ships, Python backend only) loads the built repository, strict config, and
its model returns exactly the boxes the validator scored: raw image in, same preprocessing, same NMS, same boxes;
also when concurrent requests of images of different sizes are answered by one engine run (a dynamic batch)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kestrel.engine import datasets, pipeline, runners
from kestrel.serving.backends import postprocess, preprocess
from synthetic import detector
from testbed.ports import free_port
from tests.engine import builds

pytestmark = pytest.mark.slow

pytriton = pytest.importorskip("pytriton")
TRITON_ROOT = Path(pytriton.__file__).parent / "tritonserver"


@contextlib.contextmanager
def triton(
    repository: Path,
    backends: Path,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[int]:
    # The Python backend needs the stub built for this interpreter beside it, as pytriton arranges it.
    shutil.copytree(TRITON_ROOT / "backends" / "python", backends / "python")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy(TRITON_ROOT / "python_backend_stubs" / version / "triton_python_backend_stub", backends / "python")
    from pytriton.utils.distribution import get_libs_path  # noqa: PLC0415

    http_port = free_port()
    env = {
        "LD_LIBRARY_PATH": str(get_libs_path()),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        **(env or {}),
    }
    command = [
        str(TRITON_ROOT / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port or free_port()}",
        *([f"--metrics-port={metrics_port}"] if metrics_port else ["--allow-metrics=false"]),
        "--strict-model-config=true",
    ]
    log = (backends / "triton.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        import tritonclient.http as http  # noqa: PLC0415

        client = http.InferenceServerClient(f"127.0.0.1:{http_port}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if client.is_model_ready("shapes"):
                    break
            assert server.poll() is None, (backends / "triton.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail("Triton did not get the model ready: " + (backends / "triton.log").read_text()[-3000:])
        yield http_port
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def _settled_statistics(client: Any) -> dict[str, Any]:
    """The model's statistics once no answered request is still uncounted.

    Triton counts a request when it releases it, just after the response has gone out, so a read right after the
    last answer can miss that one: read until two reads a moment apart agree.
    """
    previous = None
    for _ in range(50):
        found: dict[str, Any] = client.get_inference_statistics("shapes")["model_stats"][0]
        if previous is not None and found == previous:
            return found
        previous = found
        time.sleep(0.1)
    pytest.fail(f"Triton's statistics kept changing with no request in flight: {previous}")


def test_the_served_model_returns_the_validated_boxes_alone_and_batched(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data", val=8)
    built = builds.python_runtime_engine(shapes, tmp_path / "out")
    assert built.passed and built.repository is not None
    # The Python runtime serves one fused model: the engine file sits beside its model.py.
    engine = runners.onnx(built.repository / "shapes" / "1" / "model.onnx", 2, 4)
    p = preprocess.Preprocessing(imgsz=shapes.imgsz)
    import tritonclient.http as http  # noqa: PLC0415

    images = [datasets.read_rgb(path) for path in datasets.load(shapes.data_yaml).images("val")]
    assert len({image.shape for image in images}) > 1, "the split should mix image sizes"
    expected = []
    for image in images:
        tensor, transform = preprocess.batch([image], p)
        expected.append(postprocess.detections(engine(tensor)[0], transform[0], pipeline.SERVING_POSTPROCESSING))
    assert sum(len(e) for e in expected) > 0, "no boxes at all: the comparison would prove nothing"

    def request(image: preprocess.Image) -> list[http.InferInput]:
        tensor = http.InferInput("IMAGE", [1, *image.shape], "UINT8")
        tensor.set_data_from_numpy(image[None])
        return [tensor]

    def same(served: postprocess.Array, boxes: postprocess.Array) -> bool:
        served = served[served[:, 5] >= 0]  # rows of -1 pad the batch
        return served.shape == boxes.shape and np.allclose(served, boxes, atol=1e-3)

    with triton(built.repository, tmp_path / "backends") as port:
        client = http.InferenceServerClient(f"127.0.0.1:{port}", concurrency=len(images))
        for image, boxes in zip(images, expected, strict=True):
            assert same(client.infer("shapes", request(image)).as_numpy("DETECTIONS")[0], boxes)
        before = _settled_statistics(client)
        for _ in range(3):  # all at once, so that the dynamic batcher has a queue to batch
            pending = [client.async_infer("shapes", request(image)) for image in images]
            answers = [call.get_result().as_numpy("DETECTIONS")[0] for call in pending]
            assert all(same(a, b) for a, b in zip(answers, expected, strict=True))
        after = _settled_statistics(client)
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 3 * len(images) and executions < inferences, (inferences, executions)
