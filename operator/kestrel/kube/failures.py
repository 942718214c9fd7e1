"""Turn the Kubernetes client's ApiException into Kestrel's error tree, once, at the boundary."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import urllib3
from kubernetes.client import exceptions

from kestrel.api import errors

_TRANSIENT = {429, 500, 502, 503, 504}


def _message(error: exceptions.ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Re-raise API failures of `action` (e.g. "apply Deployment vision/cams") as KestrelError subclasses."""
    try:
        yield
    except exceptions.ApiException as error:
        text = f"Failed to {action}: {_message(error)}"
        if error.status == 404:
            raise errors.NotFoundError(text) from error
        if error.status == 409:
            raise errors.ConflictError(text) from error
        if error.status == 403:
            raise errors.ForbiddenError(text) from error
        if error.status == 422:
            raise errors.InvalidError(text) from error
        if error.status in _TRANSIENT:
            retry_after = (error.headers or {}).get("Retry-After")
            delay = float(retry_after) if retry_after and retry_after.isdigit() else 10.0
            raise errors.TransientError(text, delay=delay) from error
        raise errors.ClusterError(text) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise errors.TransientError(f"Failed to {action}: {error}") from error
