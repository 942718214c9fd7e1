"""The build Job's report to the operator: a small JSON document in the pod's termination message.

The engine writes it, the operator reads it; Kubernetes keeps at most 4 KiB of a termination message, so
anything larger (per-file hashes, every candidate of `auto`) lives in the manifest beside the artifacts.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from kestrel.api import status
from kestrel.api.base import ApiModel

MAX_BYTES = 4096
RESULT_VERSION = 1

GateReason = Literal[
    "Passed", "NotMeasured", "AccuracyDrop", "ParityExceeded", "LatencyBudgetExceeded", "PreprocessingMismatch"
]


class Gate(ApiModel):
    """The verdict of validation; `reason` becomes the Validated condition's reason."""

    passed: bool
    reason: GateReason
    message: str = pydantic.Field(default="", max_length=1024)


class BuildResult(ApiModel):
    """What one build produced and measured."""

    version: int = RESULT_VERSION
    engine_key: str = pydantic.Field(pattern=r"^[a-f0-9]{64}$")
    format: str
    precision: str
    digest: str | None = pydantic.Field(default=None, description="sha256 of the signed artifact manifest.")
    size_bytes: int | None = pydantic.Field(default=None, ge=0)
    gpu_product: str | None = None
    uri: str | None = pydantic.Field(default=None, description="Where the engine was stored.")
    load_seconds: float | None = pydantic.Field(default=None, ge=0, description="Time Triton took to load it.")
    gate: Gate
    validation: status.ValidationStatus = pydantic.Field(default_factory=status.ValidationStatus)

    def to_termination_message(self) -> str:
        """Compact JSON, refused when it would not fit a termination message."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) > MAX_BYTES:
            raise ValueError(f"build result is {len(text.encode())} bytes; a termination message holds {MAX_BYTES}")
        return text


def parse(text: str) -> BuildResult:
    """Read a termination message back; a malformed one raises pydantic.ValidationError."""
    return BuildResult.model_validate_json(text)
