"""The process kubelet on the test bed: node `local-0` running its pods as local processes.

Import the fixtures into a test module (`from tests.cluster.kubelet_fixtures import process_kubelet`) until
they move into conftest.py. The kubelet maps `python` images to this interpreter (a test-only mapping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from testbed.kubelet import ProcessKubelet
from testbed.kubelet_api import Api

NODE = "local-0"
PYTHON_IMAGE = "docker.io/library/python:3.11-slim"
T = TypeVar("T")


@pytest.fixture(scope="session")
def process_kubelet(kube: Any) -> Iterator[ProcessKubelet]:
    """A kubelet for node `local-0`, registered for the session and deregistered afterwards."""
    kubelet = ProcessKubelet(Api(kube.api), node=NODE, allow_python=True, renew_seconds=2.0).start()
    try:
        yield kubelet
    finally:
        kubelet.stop(deregister=True)


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def local_pod(
    name: str,
    containers: list[dict[str, Any]],
    *,
    restart_policy: str = "Never",
    volumes: list[dict[str, Any]] | None = None,
    grace: int = 5,
) -> dict[str, Any]:
    """A pod pinned to `local-0` with no service-account token."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": NODE},
            "restartPolicy": restart_policy,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": grace,
            "containers": containers,
            "volumes": volumes or [],
        },
    }


def python(name: str, code: str, **extra: Any) -> dict[str, Any]:
    """A container running `python -c code` through the test-only python image mapping."""
    return {"name": name, "image": PYTHON_IMAGE, "command": ["python", "-c", code], **extra}
