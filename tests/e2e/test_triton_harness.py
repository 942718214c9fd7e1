"""The Triton harness: the wheel's `tritonserver` on loopback serves a Python-backend model, and fails clearly."""

from __future__ import annotations

import pathlib
import textwrap
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from testbed import triton

pytestmark = pytest.mark.skipif(not triton.available(), reason="nvidia-pytriton (tritonserver) is not installed")

ADD_MODEL = """
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                a = pb_utils.get_input_tensor_by_name(request, "A").as_numpy()
                b = pb_utils.get_input_tensor_by_name(request, "B").as_numpy()
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SUM", (a + b).astype(np.float32))]))
            return responses
"""


def _config(name: str, parameters: str = "") -> str:
    return textwrap.dedent(f"""
        name: "{name}"
        backend: "python"
        max_batch_size: 0
        input [ {{ name: "A" data_type: TYPE_FP32 dims: [ -1 ] }}, {{ name: "B" data_type: TYPE_FP32 dims: [ -1 ] }} ]
        output [ {{ name: "SUM" data_type: TYPE_FP32 dims: [ -1 ] }} ]
        instance_group [ {{ kind: KIND_CPU count: 1 }} ]
        {parameters}
    """)


def _model(repository: pathlib.Path, name: str, code: str = ADD_MODEL, parameters: str = "") -> pathlib.Path:
    version = repository / name / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(code))
    (repository / name / "config.pbtxt").write_text(_config(name, parameters))
    return repository


def _regions() -> set[pathlib.Path]:
    return set(pathlib.Path("/dev/shm").glob("triton_python_backend_shm_region_*"))


def test_serves_a_python_model_over_http_and_grpc_with_health_and_metrics(tmp_path: pathlib.Path) -> None:
    repository = _model(tmp_path / "repo", "add")
    a = np.arange(4, dtype=np.float32)
    b = np.full(4, 10, dtype=np.float32)
    with triton.TritonServer(repository, models=["add"]) as server:
        assert server.started_seconds is not None and server.started_seconds < 60
        server.wait_ready("add", timeout=10)
        assert triton.http_status(f"{server.urls['http']}/v2/health/live") == 200
        assert triton.http_status(f"{server.urls['http']}/v2/models/missing/ready") != 200

        http = httpclient.InferenceServerClient(server.urls["http_host"])
        inputs = [httpclient.InferInput("A", [4], "FP32"), httpclient.InferInput("B", [4], "FP32")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        np.testing.assert_array_equal(http.infer("add", inputs).as_numpy("SUM"), a + b)
        http.close()  # an open keep-alive connection holds Triton's shutdown until SIGKILL

        grpc = grpcclient.InferenceServerClient(server.urls["grpc"])
        assert grpc.is_model_ready("add")
        inputs_grpc = [grpcclient.InferInput("A", [4], "FP32"), grpcclient.InferInput("B", [4], "FP32")]
        inputs_grpc[0].set_data_from_numpy(a)
        inputs_grpc[1].set_data_from_numpy(a)
        np.testing.assert_array_equal(grpc.infer("add", inputs_grpc).as_numpy("SUM"), a + a)
        grpc.close()

        with urllib.request.urlopen(server.urls["metrics"], timeout=5) as response:
            metrics = response.read().decode()
        assert 'nv_inference_request_success{model="add",version="1"} 2' in metrics
        pid = server.pid
        regions = triton.shm_regions(pid or 0)
        assert regions, "the Python backend maps a shared-memory region per instance"
    assert server.pid is None
    assert not any(r.exists() for r in regions)


def test_a_stub_that_cannot_start_fails_within_the_timeout_and_leaves_no_shm(tmp_path: pathlib.Path) -> None:
    # The stub runs `source <env>/bin/activate` first; an activate that exits means no stub ever connects,
    # and Triton itself waits for it indefinitely.
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "activate").write_text('echo "activate refused" >&2\nexit 3\n')
    parameters = f'parameters: {{ key: "EXECUTION_ENV_PATH", value: {{ string_value: "{env}" }} }}'
    repository = _model(tmp_path / "repo", "stuck", parameters=parameters)
    before = _regions()
    server = triton.TritonServer(repository, models=["stuck"])
    began = time.monotonic()
    with pytest.raises(triton.TritonError, match=r"not ready .* within 8s") as failure:
        server.start(timeout=8)
    assert time.monotonic() - began < 8 + 15
    assert "activate refused" in str(failure.value)
    assert _regions() - before == set()
    assert server.pid is None


def test_a_model_that_fails_to_import_stops_the_server_with_its_error(tmp_path: pathlib.Path) -> None:
    repository = _model(tmp_path / "repo", "broken", code='raise RuntimeError("boom at import")\n')
    with pytest.raises(triton.TritonError, match="exited with code 1") as failure:
        triton.TritonServer(repository, models=["broken"]).start(timeout=30)
    assert "boom at import" in str(failure.value)


def test_a_container_command_line_is_made_local() -> None:
    args = [
        "--model-repository=/pods/x/models",
        "--http-address=0.0.0.0",
        "--http-port=8000",
        "--grpc-port",
        "8001",
        "--allow-gpu-metrics=true",
        "--exit-timeout-secs=30",
    ]
    assert triton.listen_ports(args) == {"http": 8000, "grpc": 8001, "metrics": 8002}
    local = triton.translate(args, ports=triton.Ports(1, 2, 3), backend_dir=pathlib.Path("/b"))
    assert local[0] == str(triton.BINARY)
    assert local[1:3] == ["--model-repository=/pods/x/models", "--exit-timeout-secs=30"]
    assert "8001" not in local and "--allow-gpu-metrics=true" not in local
    for flag in ("--http-address=127.0.0.1", "--grpc-port=2", "--metrics-port=3", "--backend-directory=/b"):
        assert flag in local


# ADD_MODEL, but an `A` above 100 fails its engine (execute raises) and one below 0 is unusable input (answered with
# an error response).
FAILING_MODEL = ADD_MODEL.replace(
    """                responses.append(pb_utils.InferenceResponse([""",
    """                if a[0] > 100:
                    raise RuntimeError("engine failed")
                if a[0] < 0:
                    responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("unusable input")))
                    continue
                responses.append(pb_utils.InferenceResponse([""",
)
assert FAILING_MODEL != ADD_MODEL


def _counters(metrics_url: str, model: str) -> dict[str, float]:
    """Triton's request counters of `model`: success, and failure summed over its reasons."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    found = {"success": 0.0, "failure": 0.0}
    for line in text.splitlines():
        for kind in found:
            if line.startswith(f"nv_inference_request_{kind}{{") and f'model="{model}"' in line:
                found[kind] += float(line.rsplit(" ", 1)[1])
    return found


def test_triton_counts_a_raised_execute_as_failed_and_an_error_response_as_answered(tmp_path: pathlib.Path) -> None:
    """What the served model's error handling rests on (serving/backends/fused.py): a Python model whose `execute`
    raises has its requests counted in nv_inference_request_failure, which the canary analysis reads; a response
    that carries an error is counted in nv_inference_request_success, like any answer."""
    repository = _model(tmp_path / "repo", "add", FAILING_MODEL)
    with triton.TritonServer(repository, models=["add"]) as server:
        server.wait_ready("add", timeout=30)
        client = grpcclient.InferenceServerClient(server.urls["grpc"])
        outcomes = []
        for value in (1.0, 1.0, 1.0, -1.0, -1.0, 500.0, 500.0, 500.0, 500.0):
            inputs = [grpcclient.InferInput("A", [2], "FP32"), grpcclient.InferInput("B", [2], "FP32")]
            inputs[0].set_data_from_numpy(np.full(2, value, dtype=np.float32))
            inputs[1].set_data_from_numpy(np.ones(2, dtype=np.float32))
            try:
                client.infer("add", inputs)
                outcomes.append("answered")
            except Exception as error:  # tritonclient's InferenceServerException
                outcomes.append("engine failed" if "engine failed" in str(error) else "unusable input")
        client.close()
        assert outcomes == ["answered"] * 3 + ["unusable input"] * 2 + ["engine failed"] * 4
        assert _counters(server.urls["metrics"], "add") == {"success": 5.0, "failure": 4.0}
