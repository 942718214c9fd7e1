"""`kestrel infer`: send images to a served ModelDeployment over gRPC (TLS, API key) and get boxes back.

The served model is the ensemble `kestrel build` writes: raw RGB image in (`IMAGE`, uint8 HxWx3), detections out
(`DETECTIONS`, n x [x0, y0, x1, y1, score, class] in the image's pixels). Class names come from the ensemble's
config (`names`). Requests go one image per call; Triton's dynamic batcher, not the client, forms batches, which
is what many independent clients look like to the server. `detect_many` sends them concurrently with the asyncio
client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

API_KEY_HEADER = "triton-grpc-protocol-kestrel-api-key"
INPUT, OUTPUT = "IMAGE", "DETECTIONS"

Image = npt.NDArray[np.uint8]


class InferError(RuntimeError):
    """The server refused or failed a request; the message says which and why, never the API key."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the model is served and how to authenticate: TLS material as files, the API key as a value."""

    address: str  # host:port of Triton's gRPC listener
    model: str
    ca_file: pathlib.Path | None = None  # None: plaintext gRPC (only for `tls.mode: disabled`)
    cert_file: pathlib.Path | None = None  # client certificate, for mutual TLS
    key_file: pathlib.Path | None = None
    server_name: str | None = None  # the name the certificate carries, when `address` is an IP or a tunnel
    api_key: str | None = dataclasses.field(default=None, repr=False)

    def _tls(self) -> dict[str, Any]:
        if self.ca_file is None:
            return {}
        options: dict[str, Any] = {"ssl": True, "root_certificates": str(self.ca_file)}
        if self.cert_file is not None and self.key_file is not None:
            options |= {"private_key": str(self.key_file), "certificate_chain": str(self.cert_file)}
        if self.server_name:
            options["channel_args"] = [("grpc.ssl_target_name_override", self.server_name)]
        return options

    def headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self.api_key} if self.api_key else {}


@dataclasses.dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's pixels
    score: float
    class_id: int
    class_name: str


@dataclasses.dataclass(frozen=True)
class Result:
    image: str
    detections: list[Detection]
    latency_ms: float


def read_image(path: pathlib.Path) -> Image:
    """An image file as the served model takes it: RGB, uint8, height x width x 3."""
    import cv2  # noqa: PLC0415 - OpenCV comes with the engine's dependencies, not every client needs it

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InferError(f"{path}: not an image OpenCV can read")
    return np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.uint8)


def _detections(rows: npt.NDArray[np.float32], names: dict[int, str]) -> list[Detection]:
    found = []
    for row in np.asarray(rows, dtype=np.float32).reshape(-1, 6):
        x0, y0, x1, y1, score, label = (float(v) for v in row)
        if score <= 0:  # padding rows of a batched response
            continue
        class_id = int(label)
        found.append(Detection((x0, y0, x1, y1), score, class_id, names.get(class_id, str(class_id))))
    return found


def _failure(error: Exception, endpoint: Endpoint) -> InferError:
    text = str(error)
    if endpoint.api_key:
        text = text.replace(endpoint.api_key, "<api-key>")
    return InferError(f"{endpoint.model} at {endpoint.address}: {text}")


class Client:
    """A blocking client for one served model."""

    def __init__(self, endpoint: Endpoint, timeout: float = 30.0) -> None:
        import tritonclient.grpc as grpcclient  # noqa: PLC0415 - only the infer command needs gRPC

        self._grpc = grpcclient
        self.endpoint = endpoint
        self.timeout = timeout
        self._client = grpcclient.InferenceServerClient(endpoint.address, **endpoint._tls())
        self.names = self._names()

    def _names(self) -> dict[int, str]:
        try:
            config = self._client.get_model_config(
                self.endpoint.model, headers=self.endpoint.headers(), as_json=True, client_timeout=self.timeout
            )
        except Exception as error:  # tritonclient raises its own InferenceServerException for every failure
            raise _failure(error, self.endpoint) from None
        raw = config.get("config", {}).get("parameters", {}).get("names", {}).get("string_value", "{}")
        return {int(key): str(value) for key, value in json.loads(raw).items()}

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.endpoint.model, headers=self.endpoint.headers()))
        except Exception as error:
            raise _failure(error, self.endpoint) from None

    def detect(self, image: Image, name: str = "image") -> Result:
        batch = np.ascontiguousarray(image[np.newaxis], dtype=np.uint8)
        request = self._grpc.InferInput(INPUT, list(batch.shape), "UINT8")
        request.set_data_from_numpy(batch)
        started = time.perf_counter()
        try:
            response = self._client.infer(
                self.endpoint.model,
                [request],
                outputs=[self._grpc.InferRequestedOutput(OUTPUT)],
                headers=self.endpoint.headers(),
                client_timeout=self.timeout,
            )
        except Exception as error:
            raise _failure(error, self.endpoint) from None
        latency = (time.perf_counter() - started) * 1000
        return Result(name, _detections(response.as_numpy(OUTPUT)[0], self.names), latency)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


async def _detect_many(
    endpoint: Endpoint, images: Sequence[tuple[str, Image]], names: dict[int, str], concurrency: int, timeout: float
) -> list[Result]:
    import tritonclient.grpc as grpcclient  # noqa: PLC0415
    import tritonclient.grpc.aio as aioclient  # noqa: PLC0415

    client = aioclient.InferenceServerClient(endpoint.address, **endpoint._tls())
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str, image: Image) -> Result:
        batch = np.ascontiguousarray(image[np.newaxis], dtype=np.uint8)
        request = grpcclient.InferInput(INPUT, list(batch.shape), "UINT8")
        request.set_data_from_numpy(batch)
        async with gate:
            started = time.perf_counter()
            try:
                response = await client.infer(
                    endpoint.model,
                    [request],
                    outputs=[grpcclient.InferRequestedOutput(OUTPUT)],
                    headers=endpoint.headers(),
                    client_timeout=timeout,
                )
            except Exception as error:
                raise _failure(error, endpoint) from None
            latency = (time.perf_counter() - started) * 1000
        return Result(name, _detections(response.as_numpy(OUTPUT)[0], names), latency)

    try:
        return list(await asyncio.gather(*(one(name, image) for name, image in images)))
    finally:
        await client.close()


def detect_many(client: Client, images: Sequence[tuple[str, Image]], concurrency: int = 8) -> list[Result]:
    """Many images, `concurrency` requests in flight at once, results in the order given."""
    return asyncio.run(_detect_many(client.endpoint, images, client.names, max(1, concurrency), client.timeout))


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def format_result(result: Result) -> list[str]:
    lines = [f"{result.image}: {len(result.detections)} detections in {result.latency_ms:.1f} ms"]
    for found in result.detections:
        x0, y0, x1, y1 = found.box
        lines.append(f"  {found.class_name:<10} {found.score:.2f}  [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
    return lines
