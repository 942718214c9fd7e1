"""Probes, draining and shared memory the way Triton needs them in Kubernetes.

Triton opens its endpoints only after the initial model load, which for a large engine plus warm-up can
take minutes: a plain liveness probe would restart it in a loop. A startup probe sized from the profiled
load time covers that window; then liveness watches the server and readiness the model itself. The probes
reach Triton's HTTP on `port`: Triton's own (`http`) without TLS, the TLS proxy's plain health listener
(8081, manifests.transport) with it.
"""

from __future__ import annotations

import math
from typing import Any

from kestrel.manifests import hardening, names

DEFAULT_LOAD_SECONDS = 60.0
STARTUP_PERIOD_SECONDS = 5
# Slack on top of twice the estimate: image caches, a busy node, a GPU context that is slow to create.
STARTUP_MARGIN_SECONDS = 30
DRAIN_SECONDS = 10  # endpoint removal reaching every kube-proxy and load balancer before Triton stops
EXIT_TIMEOUT_SECONDS = 30  # Triton's own wait for in-flight requests after SIGTERM
# A kept gRPC channel stays on the pod it first reached whatever the Service's endpoints say, and Triton unloads
# its model at SIGTERM, so a client that keeps its channel would be answered "unknown model" until the server
# closes. Triton ends every gRPC connection (a GOAWAY, in-flight calls finish) once it is this old, well inside
# the preStop drain: by SIGTERM every kept channel has reconnected through the Service to a pod that serves.
GRPC_CONNECTION_AGE_SECONDS = DRAIN_SECONDS // 2
SHUTDOWN_SLACK_SECONDS = 5
# Triton's Python backend puts each instance's tensors in /dev/shm (at least 64 MiB each); the container
# runtime's default of 64 MiB in total is not enough for one instance plus the server.
SHM_BASE_MIB = 128
SHM_PER_INSTANCE_MIB = 64


def _http_get(path: str, port: int | str) -> dict[str, Any]:
    return {"path": path, "port": port, "scheme": "HTTP"}


def startup_failure_threshold(load_seconds: float) -> int:
    """Enough periods to cover twice the load estimate plus the margin."""
    window = 2 * max(load_seconds, 0.0) + STARTUP_MARGIN_SECONDS
    return max(1, math.ceil(window / STARTUP_PERIOD_SECONDS))


def startup(load_seconds: float, port: int | str) -> dict[str, Any]:
    return {
        "httpGet": _http_get("/v2/health/live", port),
        "periodSeconds": STARTUP_PERIOD_SECONDS,
        "timeoutSeconds": 3,
        "failureThreshold": startup_failure_threshold(load_seconds),
    }


def liveness(port: int | str) -> dict[str, Any]:
    return {
        "httpGet": _http_get("/v2/health/live", port),
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def readiness(model: str, port: int | str) -> dict[str, Any]:
    # The model's own endpoint, not the server's: a server up with its model unloaded serves nothing.
    return {
        "httpGet": _http_get(f"/v2/models/{names.triton_model(model)}/ready", port),
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def lifecycle() -> dict[str, Any]:
    # The kubelet's own sleep action: no shell or `sleep` binary needed in the image.
    return {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}}


def grpc_connection_args() -> list[str]:
    """`tritonserver` arguments that make gRPC clients move off a draining pod before it stops serving."""
    return [
        f"--grpc-max-connection-age={GRPC_CONNECTION_AGE_SECONDS * 1000}",
        # Calls already running on an aged connection get as long as Triton's own exit timeout.
        f"--grpc-max-connection-age-grace={EXIT_TIMEOUT_SECONDS * 1000}",
    ]


def termination_grace_seconds() -> int:
    return DRAIN_SECONDS + EXIT_TIMEOUT_SECONDS + SHUTDOWN_SLACK_SECONDS


def shm_mib(instances: int) -> int:
    return SHM_BASE_MIB + SHM_PER_INSTANCE_MIB * instances


def shm_volume(instances: int) -> dict[str, Any]:
    return hardening.empty_dir("shm", hardening.mebibytes(shm_mib(instances)), memory=True)
