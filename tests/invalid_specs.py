"""Invalid ModelDeployment specs, each with the field its error must name.

The same table feeds the unit tests (Kestrel's own parser) and the cluster tests (the API server's
OpenAPI schema and CEL rules), so the two cannot disagree unnoticed.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from tests.unit.spec_support import UNMEASURED

SHA = "0" * 64


def valid_spec() -> dict[str, Any]:
    """A small valid spec that each case breaks in one place."""
    return {"model": {"source": {"uri": "file:///models/shapes.pt"}, "imgsz": 320}, "validation": UNMEASURED}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    field: str
    mutate: Callable[[dict[str, Any]], None]
    # Schema-level errors (types, bounds, unknown fields) come from the API server in its own words;
    # CEL messages are ours. Both must name `field`.

    def spec(self) -> dict[str, Any]:
        spec = copy.deepcopy(valid_spec())
        self.mutate(spec)
        return spec


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        node = spec
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        node = spec
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        del node[leaf]

    return mutate


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(spec)

    return mutate


GPU = {"product": "NVIDIA-A10G"}
KMS = {"provider": "aws-kms", "keyId": "alias/kestrel"}

CASES = [
    # Accuracy is measured before rollout, or skipped on purpose with a reason: never "passed" unmeasured.
    Case("validation-without-dataset-or-skip", "spec.validation.dataset", _drop("validation")),
    Case(
        "validation-dataset-and-skip", "spec.validation.skip", _set("validation.dataset", "pvc://data/shapes/data.yaml")
    ),
    Case("validation-skip-reason-too-short", "spec.validation.skip.reason", _set("validation.skip", {"reason": "x"})),
    Case(
        "validation-skip-reason-two-lines",
        "spec.validation.skip.reason",
        _set("validation.skip", {"reason": "no labels yet\nsecond line"}),
    ),
    Case("task-segment", "spec.model.task", _set("model.task", "segment")),
    # A remote dataset is an archive verified by its digest; a local one is read in place, without one.
    Case(
        "validation-dataset-on-s3-without-digest",
        "spec.validation.datasetSha256",
        _set("validation", {"dataset": "s3://datasets/shapes.tar.gz"}),
    ),
    Case(
        "validation-dataset-over-https-not-an-archive",
        "spec.validation.datasetSha256",
        _set("validation", {"dataset": "https://data.example.com/shapes/data.yaml", "datasetSha256": SHA}),
    ),
    Case(
        "local-dataset-with-a-digest",
        "spec.validation.datasetSha256",
        _set("validation", {"dataset": "pvc://data/shapes/data.yaml", "datasetSha256": SHA}),
    ),
    Case(
        "calibration-dataset-over-https-without-digest",
        "spec.engine.calibration.datasetSha256",
        _all(
            _set("engine.precision", "int8"),
            _set("engine.calibration", {"dataset": "https://data.example.com/d.yaml"}),
        ),
    ),
    Case(
        "prune-dataset-on-s3-without-digest",
        "spec.engine.prune.datasetSha256",
        _set("engine.prune", {"amount": 0.1, "dataset": "s3://datasets/train.yaml"}),
    ),
    Case("int8-without-calibration", "spec.engine.calibration", _set("engine.precision", "int8")),
    Case(
        "obfuscate-a-torchscript-engine",
        "spec.security.obfuscate",
        _all(_set("engine.format", "torchscript"), _set("security.obfuscate", True)),
    ),
    Case(
        "calibration-on-the-validation-split",
        "spec.engine.calibration.split",
        _all(
            _set("engine.precision", "int8"),
            _set("engine.calibration", {"dataset": "pvc://data/shapes/data.yaml", "split": "val"}),
            _set("validation", {"dataset": "pvc://data/shapes/data.yaml"}),
        ),
    ),
    Case("tensorrt-on-cpu", "spec.target.gpu", _set("engine.format", "tensorrt")),
    Case(
        "tensorrt-gpu-without-product",
        "spec.target.gpu",
        _all(_set("engine.format", "tensorrt"), _set("target.environment", "cloud"), _set("target.gpu", {"count": 1})),
    ),
    Case("cpu-with-gpu", "spec.target.gpu", _set("target.gpu", GPU)),
    Case(
        "canary-steps-decreasing",
        "spec.rollout.canary.steps",
        _all(_set("rollout.strategy", "canary"), _set("rollout.canary", {"steps": [50, 10, 100]})),
    ),
    Case(
        "canary-steps-not-ending-at-100",
        "spec.rollout.canary.steps",
        _all(_set("rollout.strategy", "canary"), _set("rollout.canary", {"steps": [10, 50]})),
    ),
    Case(
        "canary-steps-repeated",
        "spec.rollout.canary.steps",
        _all(_set("rollout.strategy", "canary"), _set("rollout.canary", {"steps": [10, 10, 100]})),
    ),
    Case(
        "canary-step-over-100",
        "spec.rollout.canary.steps",
        _all(_set("rollout.strategy", "canary"), _set("rollout.canary", {"steps": [50, 150]})),
    ),
    Case("canary-without-steps", "spec.rollout.canary", _set("rollout.strategy", "canary")),
    Case("canary-block-with-rolling", "spec.rollout.canary", _set("rollout.canary", {"steps": [100]})),
    Case(
        "canary-interval-not-a-duration",
        "spec.rollout.canary.interval",
        _all(_set("rollout.strategy", "canary"), _set("rollout.canary", {"steps": [100], "interval": "2 minutes"})),
    ),
    Case("map-drop-above-1", "spec.validation.maxMapDrop", _set("validation.maxMapDrop", 1.5)),
    Case("map-drop-negative", "spec.validation.maxMapDrop", _set("validation.maxMapDrop", -0.1)),
    Case("latency-budget-zero", "spec.validation.latencyBudgetMs", _set("validation.latencyBudgetMs", 0)),
    Case("s3-without-sha256", "spec.model.source.sha256", _set("model.source", {"uri": "s3://models/shapes.pt"})),
    Case("https-without-sha256", "spec.model.source.sha256", _set("model.source", {"uri": "https://x.test/m.pt"})),
    Case("sha256-not-hex", "spec.model.source.sha256", _set("model.source.sha256", "xyz")),
    Case("uri-unknown-scheme", "spec.model.source.uri", _set("model.source.uri", "ftp://host/m.pt")),
    Case("imgsz-not-multiple-of-32", "spec.model.imgsz", _set("model.imgsz", 500)),
    Case("imgsz-too-small", "spec.model.imgsz", _set("model.imgsz", 16)),
    Case("format-unknown", "spec.engine.format", _set("engine.format", "tflite")),
    Case("unknown-field", "spec.engine.quantise", _set("engine.quantise", "int8")),
    Case(
        "torchscript-int8",
        "spec.engine.precision",
        _all(
            _set("engine.format", "torchscript"),
            _set("engine.precision", "int8"),
            _set("engine.calibration", {"dataset": "file:///data/calib.yaml"}),
        ),
    ),
    Case("prune-too-much", "spec.engine.prune.amount", _set("engine.prune", {"amount": 0.95})),
    Case(
        "prune-fine-tune-without-data",
        "spec.engine.prune.dataset",
        _set("engine.prune", {"amount": 0.2, "fineTuneEpochs": 5}),
    ),
    # Distillation: a student needs training data, a size, and is the only narrowing (not beside prune).
    Case(
        "distill-without-dataset",
        "spec.engine.distill.dataset",
        _set("engine.distill", {"student": {"width": 0.5}, "epochs": 4}),
    ),
    Case(
        "distill-without-student",
        "spec.engine.distill.student",
        _set("engine.distill", {"epochs": 4, "dataset": "pvc://data/shapes/data.yaml"}),
    ),
    Case(
        "distill-student-as-wide-as-the-source",
        "spec.engine.distill.student.width",
        _set("engine.distill", {"student": {"width": 1}, "epochs": 4, "dataset": "pvc://data/shapes/data.yaml"}),
    ),
    Case(
        "distill-zero-epochs",
        "spec.engine.distill.epochs",
        _set("engine.distill", {"student": {"width": 0.5}, "epochs": 0, "dataset": "pvc://data/shapes/data.yaml"}),
    ),
    Case(
        "distill-dataset-over-https-without-digest",
        "spec.engine.distill.datasetSha256",
        _set(
            "engine.distill",
            {"student": {"width": 0.5}, "epochs": 4, "dataset": "https://data.example.com/train.tar.gz"},
        ),
    ),
    Case(
        "distill-and-prune",
        "spec.engine.distill",
        _all(
            _set("engine.prune", {"amount": 0.3}),
            _set("engine.distill", {"student": {"width": 0.7}, "epochs": 4, "dataset": "pvc://data/shapes/data.yaml"}),
        ),
    ),
    Case(
        "replicas-and-autoscaling",
        "spec.serving.replicas",
        _all(_set("serving.replicas", 2), _set("serving.autoscaling", {"min": 1, "max": 3})),
    ),
    Case(
        "autoscaling-min-above-max", "spec.serving.autoscaling.min", _set("serving.autoscaling", {"min": 5, "max": 2})
    ),
    Case("replicas-negative", "spec.serving.replicas", _set("serving.replicas", -1)),
    Case(
        "python-runtime-torchscript",
        "spec.serving.triton.runtime",
        _all(_set("engine.format", "torchscript"), _set("serving.triton", {"runtime": "python"})),
    ),
    Case(
        "tensorrt-on-a-jetson",
        "spec.engine.format",
        _all(
            _set("engine.format", "tensorrt"),
            _set("target.environment", "edge"),
            _set("target.gpu", {"product": "NVIDIA-Jetson-AGX-Orin"}),
        ),
    ),
    Case(
        "openvino-on-a-jetson",
        "spec.engine.format",
        _all(_set("engine.format", "openvino"), _set("target.environment", "edge")),
    ),
    Case(
        "python-runtime-on-a-jetson",
        "spec.engine.format",
        _all(
            _set("engine.format", "onnx"),
            _set("target.environment", "edge"),
            _set("serving.triton", {"runtime": "python"}),
        ),
    ),
    Case(
        "preferred-batch-above-max",
        "spec.serving.triton.dynamicBatching.preferredBatchSizes",
        _all(
            _set("engine.batch", {"max": 4}),
            _set("serving.triton", {"dynamicBatching": {"preferredBatchSizes": [2, 8]}}),
        ),
    ),
    Case("protocol-unknown", "spec.serving.protocols", _set("serving.protocols", ["grpc", "websocket"])),
    Case("cert-manager-without-issuer", "spec.security.tls.issuerRef", _set("security.tls", {"mode": "cert-manager"})),
    Case("mutual-tls-disabled", "spec.security.tls.mutual", _set("security.tls", {"mode": "disabled", "mutual": True})),
    Case(
        "rotate-before-longer-than-duration",
        "spec.security.tls.rotateBefore",
        _set("security.tls", {"duration": "24h", "rotateBefore": "48h"}),
    ),
    Case("encryption-without-key", "spec.security.encryption", _set("security.encryption", {"enabled": True})),
    # No KMS client exists yet: spec.security.encryption.kms is refused in every form, never pruned or ignored.
    Case(
        "kms-beside-a-key-secret",
        "spec.security.encryption.kms",
        _set("security.encryption", {"enabled": True, "keySecret": "kek", "kms": KMS}),
    ),
    Case(
        "kms-instead-of-a-key-secret",
        "spec.security.encryption.kms",
        _set("security.encryption", {"enabled": True, "kms": KMS}),
    ),
    Case(
        "kms-while-encryption-is-off",
        "spec.security.encryption.kms",
        _set("security.encryption", {"enabled": False, "kms": KMS}),
    ),
    Case(
        "service-account-without-namespace",
        "spec.security.access.allowedServiceAccounts",
        _set("security.access", {"allowedServiceAccounts": ["camera-app"]}),
    ),
    Case(
        "mig-profile-malformed",
        "spec.target.gpu.mig",
        _all(_set("target.environment", "cloud"), _set("target.gpu", {"product": "NVIDIA-A100", "mig": "half"})),
    ),
    # What the API server refuses in the Triton pods' tolerations, refused at admission (the schema mutations found
    # each one admitted, then every pass stalled on the Deployment's refusal with no condition saying why).
    Case(
        "toleration-without-key-or-exists",
        "spec.target.tolerations",
        _set("target.tolerations", [{"effect": "NoExecute"}]),
    ),
    Case(
        "toleration-exists-with-a-value",
        "spec.target.tolerations",
        _set("target.tolerations", [{"key": "gpu", "operator": "Exists", "value": "yes"}]),
    ),
    Case(
        "toleration-seconds-without-no-execute",
        "spec.target.tolerations",
        _set("target.tolerations", [{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 60}]),
    ),
]
