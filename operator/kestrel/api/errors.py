"""Kestrel's exception tree.

KestrelError
├── SpecError            the ModelDeployment asks for something invalid (permanent until the spec changes)
├── EngineError          building, validating or loading an engine failed
│   └── IntegrityError   an artifact or a download does not match its hash, signature or key
├── NameConflictError    a child's name is taken by an object its ModelDeployment does not own
└── ClusterError         a Kubernetes API call failed
    ├── NotFoundError
    ├── ConflictError
    ├── ForbiddenError
    ├── InvalidError     the request itself was refused (422), a failed JSON patch test among them
    └── TransientError   worth retrying after a delay (timeouts, 5xx, throttling)
"""

from __future__ import annotations


class KestrelError(Exception):
    """Base of every error Kestrel raises on purpose."""


class SpecError(KestrelError, ValueError):
    """The spec is invalid; the message names the field and the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class EngineError(KestrelError):
    """Building, validating or loading an engine failed."""


class IntegrityError(EngineError):
    """An artifact does not match its expected hash, signature or key."""


class NameConflictError(KestrelError):
    """An object Kestrel would write, or read as a model's own, exists without that model's owner reference.

    Not a ConflictError: callers that take "already exists" for "already made by an earlier pass" must not
    swallow it."""

    def __init__(self, kind: str, namespace: str | None, name: str) -> None:
        where = f"{namespace}/{name}" if namespace else name
        super().__init__(
            f"{kind} {where} already exists and this ModelDeployment does not own it, so nothing was written to it: "
            f"rename the ModelDeployment, or delete or rename that {kind}"
        )
        self.kind = kind
        self.namespace = namespace
        self.name = name


class ClusterError(KestrelError):
    """A Kubernetes API call failed."""


class NotFoundError(ClusterError):
    """The object does not exist."""


class ConflictError(ClusterError):
    """The object was changed by someone else, or already exists."""


class ForbiddenError(ClusterError):
    """The operator's ServiceAccount may not do this."""


class InvalidError(ClusterError):
    """The API server refused the request as invalid (422): a failed JSON patch test, a value out of bounds."""


class TransientError(ClusterError):
    """A failure worth retrying after a delay."""

    def __init__(self, message: str, *, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay
