"""Errors raised by `kestrel.storage`; messages name the store and the object, never a credential.

KestrelError
└── EngineError                       (kestrel.api.errors)
    └── StorageError                  the engine store failed
        ├── StoreConfigError          (ValueError) a bad store URI, engine name or path, or no credentials
        ├── EngineNotFoundError       (LookupError) no complete engine (no manifest.json) under that key
        ├── StoreAccessError          the store refused us (denied, no such bucket): permanent until fixed
        └── StoreUnavailableError     network, timeout, 5xx or throttling: worth retrying after `delay`

Under EngineError rather than ClusterError: the store is not the Kubernetes API, and its callers (the build Job,
the loader, the engine reconciler's cache lookup) already handle an engine that cannot be had; the reconciler maps
`StoreUnavailableError` to a retry and the others to a condition, as it does for other engine errors.
"""

from __future__ import annotations

from kestrel.api import errors


class StorageError(errors.EngineError):
    """The engine store failed."""


class StoreConfigError(StorageError, ValueError):
    """The store URI, an engine's name or key, a path, or the credentials are unusable."""


class EngineNotFoundError(StorageError, LookupError):
    """The store holds no complete engine (one with its manifest) under that key."""


class StoreAccessError(StorageError):
    """The store refused the request for a reason that retrying does not fix."""


class StoreUnavailableError(StorageError):
    """The store could not be reached or answered with a transient failure."""

    def __init__(self, message: str, *, delay: float = 10.0) -> None:
        super().__init__(message)
        self.delay = delay
