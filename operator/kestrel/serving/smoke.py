"""The live check of a served revision: the server is live, the model ready, requests answered as the build answered.

One gRPC client, the way any client of the model connects: TLS against the model's CA (with a client certificate
under mutual TLS) and the API key header. One small synthetic image goes through the served ensemble (`IMAGE`
uint8 HxWx3 in, `DETECTIONS` n x 6 float out; serving/config.py) and its answer must have that shape and hold only
finite numbers. Then, where the build recorded probes (serving/probes.py), each probe image goes through the same
way and its detections must match the ones the build's own run of the served pipeline gave (`probes.compare`):
parity through the real server. Without probes only the grey image is sent, and the outcome says that parity was
not checked. One deadline bounds the whole check.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from kestrel.serving import probes as probe_images

INPUT, OUTPUT = "IMAGE", "DETECTIONS"
# Triton reads restricted-protocol headers on gRPC with this prefix (transport.API_KEY_HEADER follows it).
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
IMAGE_SIDE = 64
# The server is tenant code. An answer to one small image is a few KiB (tritonclient's own default is 2 GiB: an
# operator-sized OOM); a failure's text goes into status and Events, so only its start is kept.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_ERROR_CHARS = 500


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how to send the smoke request. PEM material as bytes: nothing touches the disk."""

    address: str  # host:port dialled
    model: str
    server_name: str | None = None  # the name the server's certificate carries, when `address` is not it
    ca_pem: bytes | None = None  # None: plaintext gRPC (tls.mode disabled)
    client_cert_pem: bytes | None = None  # mutual TLS
    client_key_pem: bytes | None = dataclasses.field(default=None, repr=False)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True)
class Outcome:
    passed: bool | None  # None: not run, and the message says why
    message: str
    latency_ms: float | None = None  # the grey image's round trip, when one was answered
    parity: bool | None = None  # None: no probe was compared (none given, or an earlier step failed)
    probes: int = 0  # probe images answered as recorded


def image() -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A mid-grey square: valid input for any detector, and the same bytes every time."""
    return np.full((IMAGE_SIDE, IMAGE_SIDE, 3), 114, dtype=np.uint8)


def _redact(text: str, target: Target) -> str:
    for secret in target.headers.values():
        if secret:
            text = text.replace(secret, "<redacted>")
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]}... ({len(text)} characters, cut)"
    return text


def well_formed(output: np.ndarray[Any, Any] | None) -> str | None:
    """Why a DETECTIONS answer to one image is malformed, or None when it is well formed."""
    if output is None:
        return f"the response has no {OUTPUT} output"
    if output.dtype != np.float32:
        return f"{OUTPUT} is {output.dtype}, expected float32"
    if output.ndim != 3 or output.shape[0] != 1 or output.shape[2] != 6:
        return f"{OUTPUT} has shape {list(output.shape)}, expected [1, n, 6]"
    if not np.all(np.isfinite(output)):
        return f"{OUTPUT} holds non-finite numbers"
    return None


def _client(target: Target) -> Any:
    import grpc  # type: ignore[import-untyped]  # noqa: PLC0415 - loads only when a check runs
    import tritonclient.grpc as grpcclient  # noqa: PLC0415

    channel: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
    if target.server_name:
        channel.append(("grpc.ssl_target_name_override", target.server_name))
    options: dict[str, Any] = {"channel_args": channel}
    if target.ca_pem is not None:
        options["creds"] = grpc.ssl_channel_credentials(
            root_certificates=target.ca_pem,
            private_key=target.client_key_pem,
            certificate_chain=target.client_cert_pem,
        )
    return grpcclient.InferenceServerClient(target.address, **options)


def check(target: Target, timeout: float = 10.0, recorded: probe_images.Probes | None = None) -> Outcome:
    """Health, readiness, one request, then each probe of `recorded`; a failure is an Outcome that says which step
    (or which image) failed and why."""
    import tritonclient.grpc as grpcclient  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    headers = dict(target.headers)

    def left() -> float:
        return max(0.001, deadline - time.monotonic())

    where = f"{target.model} at {target.address}"
    client = _client(target)
    step = "server liveness"
    try:
        if not client.is_server_live(headers=headers, client_timeout=left()):
            return Outcome(False, f"{where}: the server is not live")
        step = "model readiness"
        if not client.is_model_ready(target.model, headers=headers, client_timeout=left()):
            return Outcome(False, f"{where}: model {target.model} is not ready")
        step = "inference"

        def infer(pixels: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any] | None:
            batch = pixels[np.newaxis]
            request = grpcclient.InferInput(INPUT, list(batch.shape), "UINT8")
            request.set_data_from_numpy(batch)
            response = client.infer(
                target.model,
                [request],
                outputs=[grpcclient.InferRequestedOutput(OUTPUT)],
                headers=headers,
                client_timeout=left(),
            )
            answer: np.ndarray[Any, Any] | None = response.as_numpy(OUTPUT)
            return answer

        started = time.perf_counter()
        output = infer(image())
        latency = (time.perf_counter() - started) * 1000
        problem = well_formed(output)
        if problem:
            return Outcome(False, f"{where}: {problem}", latency)
        answered = f"one {IMAGE_SIDE}x{IMAGE_SIDE} image answered in {latency:.1f} ms"
        images, conf = (recorded.images, recorded.conf) if recorded is not None else ((), 0.0)
        for matched, probe in enumerate(images):
            step = f"inference of probe image {probe.name!r}"
            output = infer(probe.image)
            problem = well_formed(output)
            if problem is None and output is not None:
                problem = probe_images.compare(probe.detections, output[0], conf)
            if problem:
                text = _redact(f"{where}: probe image {probe.name!r}: {problem}", target)
                return Outcome(False, text, latency, parity=False, probes=matched)
        if images:
            boxes = sum(len(p.detections) for p in images)
            answered += f"; {len(images)} probe images ({boxes} detections) answered as the build recorded"
        took = (time.monotonic() - deadline + timeout) * 1000
        message = f"{where}: {answered} (the whole check {took:.1f} ms)"
        return Outcome(True, message, latency, parity=True if images else None, probes=len(images))
    except Exception as error:  # tritonclient raises InferenceServerException for every failure, gRPC its own
        return Outcome(False, _redact(f"{where}: {step} failed: {error}", target))
    finally:
        client.close()
