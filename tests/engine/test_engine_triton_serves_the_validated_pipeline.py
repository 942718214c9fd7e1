"""A real Triton (the one nvidia-pytriton ships, Python backend only) loads the built repository, strict config, and
its ensemble returns exactly the boxes the validator scored: raw image in, same preprocessing, same NMS, same boxes."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kestrel.engine import datasets, pipeline, runners
from kestrel.serving.backends import postprocess, preprocess
from tests.engine import builds
from tests.fixtures import detector

pytestmark = pytest.mark.slow

pytriton = pytest.importorskip("pytriton")
TRITON_ROOT = Path(pytriton.__file__).parent / "tritonserver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def triton(repository: Path, backends: Path) -> Iterator[int]:
    # The Python backend needs the stub built for this interpreter beside it, as pytriton arranges it.
    shutil.copytree(TRITON_ROOT / "backends" / "python", backends / "python")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy(TRITON_ROOT / "python_backend_stubs" / version / "triton_python_backend_stub", backends / "python")
    from pytriton.utils.distribution import get_libs_path  # noqa: PLC0415

    http_port = _free_port()
    env = {"LD_LIBRARY_PATH": str(get_libs_path()), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    command = [
        str(TRITON_ROOT / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--http-port={http_port}",
        f"--grpc-port={_free_port()}",
        "--allow-metrics=false",
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
            pytest.fail("Triton did not get the ensemble ready: " + (backends / "triton.log").read_text()[-3000:])
        yield http_port
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def test_ensemble_returns_the_validated_boxes(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data", val=8)
    raw = builds.spec(shapes, {"format": "onnx", "precision": "fp32"}, {"maxMapDrop": 0.01})
    raw["serving"] = {"triton": {"runtime": "python"}}  # this Triton has only the Python backend
    built = pipeline.build(
        builds.parse(raw), tmp_path / "out", pipeline.BuildOptions(model_name="shapes", iterations=3)
    )
    assert built.passed and built.repository is not None
    engine = runners.onnx(built.repository / "shapes-engine" / "1" / "model.onnx", 2, 4)
    p = preprocess.Preprocessing(imgsz=shapes.imgsz)
    import tritonclient.http as http  # noqa: PLC0415

    with triton(built.repository, tmp_path / "backends") as port:
        client = http.InferenceServerClient(f"127.0.0.1:{port}")
        compared = 0
        for path in datasets.load(shapes.data_yaml).images("val"):
            image = datasets.read_rgb(path)
            request = http.InferInput("IMAGE", [1, *image.shape], "UINT8")
            request.set_data_from_numpy(image[None])
            served = client.infer("shapes", [request]).as_numpy("DETECTIONS")[0]
            served = served[served[:, 5] >= 0]  # rows of -1 pad the batch
            tensor, transform = preprocess.batch([image], p)
            expected = postprocess.detections(engine(tensor)[0], transform[0], pipeline.SERVING_POSTPROCESSING)
            assert served.shape == expected.shape
            assert np.allclose(served, expected, atol=1e-3)
            compared += len(expected)
    assert compared > 0, "no boxes at all: the comparison would prove nothing"
