"""Errors of the engine build, below `kestrel.api.errors`.

EngineError (kestrel.api.errors)
├── FetchError           the source could not be read (missing file, HTTP status, S3 error, bad URI)
├── ExportError          the exporter failed or cannot run here (e.g. TensorRT without a GPU)
├── FineTuneError        training the pruned model failed
└── IntegrityError (kestrel.api.errors)
    └── ChecksumMismatchError   the download is not the checkpoint spec.model.source.sha256 names
"""

from __future__ import annotations

from kestrel.api import errors


class FetchError(errors.EngineError):
    """The source could not be read."""


class ExportError(errors.EngineError):
    """The export could not be done; the message names the spec field to change."""


class FineTuneError(errors.EngineError):
    """Training the pruned model failed; the message says why."""


class ChecksumMismatchError(errors.IntegrityError):
    """The fetched file's SHA-256 differs from the one the spec expects."""

    def __init__(self, field: str, uri: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{field}: the file fetched from {uri} has sha256 {actual}, expected {expected}; "
            "refusing to build from it (fix the source or the expected hash)"
        )
        self.field = field
        self.expected = expected
        self.actual = actual
