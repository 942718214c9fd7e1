"""The smoke inference against a server that is tenant code: an answer larger than the cap is a failure, not an
operator-sized allocation (tritonclient alone accepts 2 GiB), and a server's long error text is cut before it
reaches status and Events.

The server is a real gRPC server on loopback speaking Triton's protocol (tritonclient's own service definition).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc  # type: ignore[import-untyped]
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from kestrel.serving import smoke


class Triton(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Live and ready; answers every inference with `rows` zero detections; or fails liveness with `error`."""

    def __init__(self, rows: int, error: str | None = None) -> None:
        self.rows = rows
        self.error = error

    def ServerLive(self, request: Any, context: Any) -> Any:
        if self.error is not None:
            context.abort(grpc.StatusCode.INTERNAL, self.error)
        return service_pb2.ServerLiveResponse(live=True)

    def ModelReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ModelReadyResponse(ready=True)

    def ModelInfer(self, request: Any, context: Any) -> Any:
        detections = np.zeros((1, self.rows, 6), dtype=np.float32)
        output = service_pb2.ModelInferResponse.InferOutputTensor(
            name=smoke.OUTPUT, datatype="FP32", shape=list(detections.shape)
        )
        return service_pb2.ModelInferResponse(
            model_name=request.model_name, outputs=[output], raw_output_contents=[detections.tobytes()]
        )


@pytest.fixture
def serve() -> Iterator[Callable[[Triton], str]]:
    started: list[Any] = []

    def start(triton: Triton) -> str:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(triton, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        started.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in started:
        server.stop(grace=None)


def test_a_small_well_formed_answer_passes(serve: Callable[[Triton], str]) -> None:
    outcome = smoke.check(smoke.Target(address=serve(Triton(rows=3)), model="cams"), timeout=10.0)
    assert outcome.passed is True, outcome.message


@pytest.mark.parametrize("server_name", [None, "cams-triton.vision.svc"])
def test_a_well_formed_answer_larger_than_the_cap_fails(
    serve: Callable[[Triton], str], server_name: str | None
) -> None:
    rows = 8 * 1024 * 1024 // (6 * 4)  # an 8 MiB answer, every row a valid detection
    assert rows * 6 * 4 > smoke.MAX_ANSWER_BYTES
    target = smoke.Target(address=serve(Triton(rows=rows)), model="cams", server_name=server_name)
    outcome = smoke.check(target, timeout=10.0)
    assert outcome.passed is False
    assert "inference failed" in outcome.message and "RESOURCE_EXHAUSTED" in outcome.message


def test_a_long_error_from_the_server_is_cut(serve: Callable[[Triton], str]) -> None:
    text = "start of the error " + "x" * 4000 + " END-OF-A-LONG-ERROR"
    outcome = smoke.check(smoke.Target(address=serve(Triton(rows=3, error=text)), model="cams"), timeout=10.0)
    assert outcome.passed is False and "server liveness failed" in outcome.message
    assert "start of the error" in outcome.message and "END-OF-A-LONG-ERROR" not in outcome.message
    assert len(outcome.message) < smoke.MAX_ERROR_CHARS + 100
