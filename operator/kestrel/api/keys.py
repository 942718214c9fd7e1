"""The engine key: what makes two builds interchangeable, and so what the engine cache is keyed on."""

from __future__ import annotations

import hashlib
import json

import kestrel
from kestrel.api import spec as spec_models

# Part of every key: a new builder may produce a different engine from the same inputs.
BUILDER_VERSION = kestrel.__version__


def engine_inputs(spec: spec_models.ModelDeploymentSpec) -> dict[str, object]:
    """Everything that changes the bytes of the built engine, and nothing that does not."""
    engine = spec.engine.to_wire()
    engine.pop("build", None)  # how the Job runs (deadline, resources) does not change what it produces
    gpu = spec.target.gpu
    # The Triton repository (config.pbtxt: instances, batching, warm-up, backend) and the gate's verdict are
    # part of the built artifact; the image and container resources are not.
    triton = spec.serving.triton.to_wire()
    triton.pop("image", None)
    triton.pop("resources", None)
    return {
        # Without a digest (file://, pvc://) the URI stands in: a changed file at the same path needs a new sha256.
        "source": spec.model.source.sha256 or spec.model.source.uri,
        "task": spec.model.task,
        "imgsz": spec.model.imgsz,
        "engine": engine,
        "triton": triton,
        "validation": spec.validation.to_wire(),
        "gpuProduct": gpu.product if gpu else None,
        "mig": gpu.mig if gpu else None,
        "builder": BUILDER_VERSION,
        # Obfuscation rewrites the engine's files (the rest of security does not); named only when on, so that
        # the keys of every other engine stay what they were.
        **({"obfuscate": True} if spec.security.obfuscate else {}),
    }


def engine_key(spec: spec_models.ModelDeploymentSpec) -> str:
    """A hex SHA-256 over the canonical JSON of `engine_inputs`."""
    canonical = json.dumps(engine_inputs(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
