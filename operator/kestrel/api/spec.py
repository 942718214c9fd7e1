"""The desired state of a ModelDeployment: what to build, how to check it, where and how to serve it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic

from kestrel.api import base, errors
from kestrel.api.base import ApiModel, Rule, section

URI_PATTERN = r"^(s3|https|pvc|file)://\S+$"
# A dataset is a data.yaml on a mounted claim (or a file of the build's image), or an archive holding one at its root
# on s3:// or https://, which the build fetches and verifies by its sha256 (engine/datasets_remote.py).
DATASET_URI_PATTERN = r"^(pvc|file|s3|https)://\S+$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"
REMOTE_SCHEMES = ("s3://", "https://")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SERVICE_ACCOUNT_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
Quantity = int | str
# Bounded strings and lists keep the API server's CEL cost estimate finite.
ShortString = Annotated[str, pydantic.StringConstraints(max_length=253)]
NameList = Annotated[list[ShortString], pydantic.Field(max_length=64)]

EngineFormat = Literal["auto", "onnx", "openvino", "torchscript", "tensorrt"]
Precision = Literal["auto", "fp32", "fp16", "int8"]
Environment = Literal["cloud", "onprem", "edge", "cpu"]
Protocol = Literal["grpc", "http"]
PROTOCOLS: tuple[Protocol, ...] = ("grpc", "http")


class SourceSpec(ApiModel):
    """Where the source checkpoint (an Ultralytics .pt file) comes from."""

    uri: str = pydantic.Field(
        pattern=URI_PATTERN, max_length=2048, description="s3://bucket/key, https://…, pvc://claim/path or file://path."
    )
    sha256: str | None = pydantic.Field(
        default=None, pattern=r"^[a-f0-9]{64}$", description="Hex SHA-256 of the checkpoint; required for remote URIs."
    )
    credentials_secret: str | None = pydantic.Field(
        default=None, pattern=NAME_PATTERN, max_length=253, description="Secret in this namespace with access keys."
    )

    cel_rules = (
        Rule(
            cel="!(self.uri.startsWith('s3://') || self.uri.startsWith('https://')) || has(self.sha256)",
            message="spec.model.source.sha256 is required for s3:// and https:// sources: "
            "set it to the checkpoint's hex SHA-256 (sha256sum model.pt)",
            check=lambda s: not s.uri.startswith(("s3://", "https://")) or s.sha256 is not None,
            field_path=".sha256",
            reason="FieldValueRequired",
        ),
    )


class ModelSpec(ApiModel):
    """The model to serve."""

    source: SourceSpec = pydantic.Field(description="The checkpoint to build from.")
    task: Literal["detect"] = pydantic.Field(
        default="detect",
        description="The Ultralytics task of the checkpoint. Only detect is served; segment, pose, obb and "
        "classify are refused until the serving pipeline has their post-processing.",
    )
    imgsz: int = pydantic.Field(
        default=640, ge=32, le=4096, description="Square input size in pixels, a multiple of 32."
    )

    cel_rules = (
        Rule(
            cel="self.imgsz % 32 == 0",
            message="spec.model.imgsz must be a multiple of 32 (the model's largest stride): use e.g. 320, 640 or 1280",
            check=lambda s: s.imgsz % 32 == 0,
            field_path=".imgsz",
        ),
    )


def _remote_dataset_rules(field: str, *, optional: bool) -> tuple[Rule, Rule]:
    """The rules of a dataset field `field` (its full path) and its `datasetSha256` sibling."""
    guard = "!has(self.dataset) || " if optional else ""
    remote = "(self.dataset.startsWith('s3://') || self.dataset.startsWith('https://'))"

    def verified(s: Any) -> bool:
        return (
            s.dataset is None
            or not s.dataset.startswith(REMOTE_SCHEMES)
            or (s.dataset_sha256 is not None and s.dataset.endswith(ARCHIVE_SUFFIXES))
        )

    def local_without_digest(s: Any) -> bool:
        return s.dataset_sha256 is None or (s.dataset is not None and s.dataset.startswith(REMOTE_SCHEMES))

    return (
        Rule(
            cel=f"{guard}!{remote} || (has(self.datasetSha256) && self.dataset.matches('[.](tar|tar[.]gz|tgz)$'))",
            message=f"{field}: an s3:// or https:// dataset is a .tar, .tar.gz or .tgz archive with its data.yaml at "
            f"the root, verified by {field}Sha256 (the archive's hex SHA-256, sha256sum data.tar.gz): set both",
            check=verified,
            field_path=".datasetSha256",
            reason="FieldValueRequired",
        ),
        Rule(
            cel=f"!has(self.datasetSha256) || (has(self.dataset) && {remote})",
            message=f"{field}Sha256 verifies a downloaded archive: a pvc:// or file:// dataset is read in place, "
            "so leave it out",
            check=local_without_digest,
            field_path=".datasetSha256",
        ),
    )


class CalibrationSpec(ApiModel):
    """Representative images for INT8 calibration."""

    dataset: str = pydantic.Field(
        pattern=DATASET_URI_PATTERN,
        max_length=2048,
        description="A YOLO data.yaml as a pvc:// or file:// URI, or an s3:// or https:// .tar/.tar.gz/.tgz archive "
        "with the data.yaml at its root (then datasetSha256 is required).",
    )
    dataset_sha256: str | None = pydantic.Field(
        default=None, pattern=SHA256_PATTERN, description="Hex SHA-256 of an s3:// or https:// dataset archive."
    )
    samples: int = pydantic.Field(default=256, ge=8, le=10000, description="How many images to calibrate with.")
    split: str = pydantic.Field(
        default="train",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$",
        description="The split of `dataset` to calibrate on. The build refuses to score the engine on an image it "
        "was calibrated on (the validation dataset's val split is compared file by file).",
    )

    cel_rules = _remote_dataset_rules("spec.engine.calibration.dataset", optional=False)


class PruneSpec(ApiModel):
    """Structured pruning applied before export (channels are removed, not zeroed)."""

    amount: float = pydantic.Field(gt=0, le=0.9, description="Fraction of channels to remove, in (0, 0.9].")
    fine_tune_epochs: int = pydantic.Field(
        default=0, ge=0, le=1000, description="Epochs of fine-tuning on `dataset` to recover accuracy."
    )
    dataset: str | None = pydantic.Field(
        default=None,
        pattern=DATASET_URI_PATTERN,
        max_length=2048,
        description="Training data.yaml for the fine-tune, as a pvc:// or file:// URI, or an s3:// or https:// "
        "archive holding it (then datasetSha256 is required).",
    )
    dataset_sha256: str | None = pydantic.Field(
        default=None, pattern=SHA256_PATTERN, description="Hex SHA-256 of an s3:// or https:// dataset archive."
    )

    cel_rules = (
        *_remote_dataset_rules("spec.engine.prune.dataset", optional=True),
        Rule(
            cel="self.fineTuneEpochs == 0 || has(self.dataset)",
            message="spec.engine.prune.dataset is required when spec.engine.prune.fineTuneEpochs > 0: "
            "point it at a YOLO data.yaml, or set fineTuneEpochs to 0",
            check=lambda s: s.fine_tune_epochs == 0 or s.dataset is not None,
            field_path=".dataset",
            reason="FieldValueRequired",
        ),
    )


class DistillStudentSpec(ApiModel):
    """The student: the source's architecture, narrower, starting from the source's own weights."""

    width: float = pydantic.Field(
        ge=0.1,
        lt=1,
        description="Fraction of the source's channels the student keeps in every layer past the stem (the stem and "
        "the detect head's output convolutions keep all theirs), in [0.1, 1). The channels kept are those structured "
        "pruning keeps; then the student trains against the source.",
    )


class DistillSpec(ApiModel):
    """Knowledge distillation: a smaller student trained against the source model as its teacher, then exported and
    judged by the gate against the source like any engine."""

    student: DistillStudentSpec = pydantic.Field(description="The student's size.")
    epochs: int = pydantic.Field(ge=1, le=1000, description="Epochs of training on the train split of `dataset`.")
    dataset: str = pydantic.Field(
        pattern=DATASET_URI_PATTERN,
        max_length=2048,
        description="Training data.yaml (its train split is trained on; the source's classes), as a pvc:// or "
        "file:// URI, or an s3:// or https:// archive holding it (then datasetSha256 is required). The build refuses "
        "one whose training images are validation images too.",
    )
    dataset_sha256: str | None = pydantic.Field(
        default=None, pattern=SHA256_PATTERN, description="Hex SHA-256 of an s3:// or https:// dataset archive."
    )
    weight: float = pydantic.Field(
        default=6.0,
        gt=0,
        le=100,
        description="Weight of the distillation loss (the student's features against the teacher's at the detect "
        "head's inputs, weighted by the teacher's scores) beside the detection loss on the labels.",
    )

    cel_rules = _remote_dataset_rules("spec.engine.distill.dataset", optional=False)


class BatchSpec(ApiModel):
    """Batch dimension of the engine."""

    max: int = pydantic.Field(default=8, ge=1, le=256, description="Largest batch the engine accepts.")
    dynamic: bool = pydantic.Field(default=True, description="Accept any batch size up to max.")


class ResourcesSpec(ApiModel):
    """Compute resources, as in a container's `resources`."""

    requests: dict[str, Quantity] | None = pydantic.Field(default=None, description="Resource requests.")
    limits: dict[str, Quantity] | None = pydantic.Field(default=None, description="Resource limits.")


class BuildSpec(ApiModel):
    """How the build Job runs."""

    backoff_limit: int = pydantic.Field(default=1, ge=0, le=10, description="Retries of a failed build pod.")
    active_deadline_seconds: int = pydantic.Field(
        default=3600, ge=60, le=86400, description="Hard time limit of one build."
    )
    resources: ResourcesSpec = section(ResourcesSpec, "Resources of the build container.")


class EngineSpec(ApiModel):
    """How to turn the checkpoint into an optimized engine."""

    format: EngineFormat = pydantic.Field(
        default="onnx",
        description="Engine format; `auto` builds every candidate that fits the target and keeps the "
        "fastest that passes validation.",
    )
    precision: Precision = pydantic.Field(default="fp32", description="Numeric precision; int8 needs calibration.")
    calibration: CalibrationSpec | None = pydantic.Field(default=None, description="INT8 calibration data.")
    prune: PruneSpec | None = pydantic.Field(default=None, description="Optional structured pruning.")
    distill: DistillSpec | None = pydantic.Field(
        default=None, description="Optional knowledge distillation into a narrower student."
    )
    batch: BatchSpec = section(BatchSpec, "Batch dimension.")
    opset: int | None = pydantic.Field(default=None, ge=7, le=23, description="ONNX opset; default: the exporter's.")
    workspace_gib: int = pydantic.Field(
        default=4, ge=1, le=256, alias="workspaceGiB", description="TensorRT builder workspace in GiB."
    )
    build: BuildSpec = section(BuildSpec, "The build Job.")

    cel_rules = (
        Rule(
            cel="self.precision != 'int8' || has(self.calibration)",
            message="spec.engine.calibration is required when spec.engine.precision is int8: "
            "set engine.calibration.dataset to representative images, or use fp16/fp32",
            check=lambda s: s.precision != "int8" or s.calibration is not None,
            field_path=".calibration",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!(has(self.prune) && has(self.distill))",
            message="spec.engine.prune and spec.engine.distill both make the model narrower: use one. distill's "
            "student is the pruned source trained against the source (student.width 0.7 keeps what prune.amount 0.3 "
            "keeps); prune alone fine-tunes without a teacher",
            check=lambda s: s.prune is None or s.distill is None,
            field_path=".distill",
            reason="FieldValueForbidden",
        ),
        Rule(
            cel="!(self.format == 'torchscript' && self.precision == 'int8')",
            message="spec.engine.precision int8 is not available for spec.engine.format torchscript: "
            "use onnx, openvino or tensorrt for int8",
            check=lambda s: not (s.format == "torchscript" and s.precision == "int8"),
            field_path=".precision",
        ),
    )


class ValidationSkip(ApiModel):
    """Roll out without measuring accuracy: said on purpose, with a reason that status and the audit log keep."""

    reason: str = pydantic.Field(
        min_length=8,
        max_length=256,
        pattern=r"^[^\n\r]+$",
        description="Why accuracy is not measured before rollout (one line); shown in the Validated condition, "
        "which then has reason NotMeasured, and in the audit log.",
    )


class ValidationSpec(ApiModel):
    """The gate an engine must pass before it is rolled out."""

    dataset: str | None = pydantic.Field(
        default=None,
        pattern=DATASET_URI_PATTERN,
        max_length=2048,
        description="YOLO data.yaml to measure mAP on, as a pvc:// or file:// URI, or an s3:// or https:// "
        ".tar/.tar.gz/.tgz archive with the data.yaml at its root (then datasetSha256 is required).",
    )
    dataset_sha256: str | None = pydantic.Field(
        default=None, pattern=SHA256_PATTERN, description="Hex SHA-256 of an s3:// or https:// dataset archive."
    )
    max_map_drop: float = pydantic.Field(
        default=0.02, ge=0, le=1, description="Largest allowed drop of mAP50-95 against the source model, in [0, 1]."
    )
    max_output_delta: float | None = pydantic.Field(
        default=None, ge=0, description="Largest allowed absolute difference of raw outputs against the source."
    )
    latency_budget_ms: float | None = pydantic.Field(
        default=None, gt=0, description="Largest allowed p95 latency at batch 1, in milliseconds."
    )
    skip: ValidationSkip | None = pydantic.Field(
        default=None,
        description="Roll out without an accuracy measurement (no dataset). Parity against the source on a probe "
        "image, preprocessing and latency are still checked.",
    )

    cel_rules = (
        *_remote_dataset_rules("spec.validation.dataset", optional=True),
        Rule(
            cel="!(has(self.dataset) && has(self.skip))",
            message="spec.validation.skip and spec.validation.dataset contradict each other: remove skip to measure "
            "accuracy on the dataset, or remove dataset to roll out unmeasured",
            check=lambda s: s.dataset is None or s.skip is None,
            field_path=".skip",
        ),
    )


class GpuSpec(ApiModel):
    """The GPUs each serving replica (and the build) needs."""

    count: int = pydantic.Field(default=1, ge=1, le=16, description="GPUs per replica.")
    product: str | None = pydantic.Field(
        default=None,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="Value of the node label nvidia.com/gpu.product, e.g. NVIDIA-A10G.",
    )
    mig: str | None = pydantic.Field(
        default=None, pattern=r"^[0-9]+g\.[0-9]+gb$", description="MIG profile, e.g. 1g.10gb."
    )


class Toleration(ApiModel):
    """A toleration, as in a pod spec."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    # What the API server checks of a pod's tolerations (validateTolerations), so that a toleration the Triton
    # Deployment would be refused for is refused here, naming the field, instead of stalling every pass.
    cel_rules = (
        Rule(
            cel="(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            message="spec.target.tolerations[].key is required unless operator is Exists (a toleration without a key "
            "matches every taint): set key, or operator: Exists",
            check=lambda t: bool(t.key) or t.operator == "Exists",
            field_path=".key",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            message="spec.target.tolerations[].value must be empty when operator is Exists: remove value, or use "
            "operator: Equal",
            check=lambda t: t.operator != "Exists" or not t.value,
            field_path=".value",
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="spec.target.tolerations[].tolerationSeconds applies to effect NoExecute only: set effect: "
            "NoExecute, or remove tolerationSeconds",
            check=lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            field_path=".effect",
        ),
    )


class TargetSpec(ApiModel):
    """Where the engine is served."""

    environment: Environment = pydantic.Field(default="cpu", description="cloud, onprem, edge or cpu.")
    gpu: GpuSpec | None = pydantic.Field(default=None, description="GPUs; not allowed with environment cpu.")
    architecture: Literal["amd64", "arm64"] | None = pydantic.Field(
        default=None, description="Node CPU architecture; default arm64 for edge, amd64 otherwise."
    )
    node_selector: dict[str, str] | None = pydantic.Field(default=None, description="Extra node labels to match.")
    tolerations: Annotated[list[Toleration], pydantic.Field(max_length=32)] | None = pydantic.Field(
        default=None, description="Tolerations for GPU/edge taints."
    )
    runtime_class_name: str | None = pydantic.Field(
        default=None, pattern=NAME_PATTERN, description="RuntimeClass, e.g. nvidia or a confidential-computing runtime."
    )

    cel_rules = (
        Rule(
            cel="self.environment != 'cpu' || !has(self.gpu)",
            message="spec.target.gpu is not allowed with spec.target.environment cpu: "
            "remove target.gpu, or choose cloud, onprem or edge",
            check=lambda s: s.environment != "cpu" or s.gpu is None,
            field_path=".gpu",
            reason="FieldValueForbidden",
        ),
    )


class AutoscalingSpec(ApiModel):
    """Horizontal autoscaling of the Triton replicas."""

    min: int = pydantic.Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max: int = pydantic.Field(default=3, ge=1, le=1000, description="Most replicas.")
    metric: Literal["cpu", "queueTime", "inferenceRate"] = pydantic.Field(
        default="cpu", description="cpu (HPA) or a Triton metric (KEDA ScaledObject where KEDA is installed)."
    )
    target: int = pydantic.Field(
        default=70, ge=1, description="Target value: CPU percent, queue time in microseconds, or inferences/s."
    )

    cel_rules = (
        Rule(
            cel="self.min <= self.max",
            message="spec.serving.autoscaling.min must not exceed spec.serving.autoscaling.max",
            check=lambda s: s.min <= s.max,
            field_path=".min",
        ),
    )


class DynamicBatchingSpec(ApiModel):
    """Triton's dynamic batcher."""

    enabled: bool = pydantic.Field(default=True, description="Batch concurrent requests together.")
    max_queue_delay_microseconds: int | None = pydantic.Field(
        default=None, ge=0, le=10_000_000, description="Longest wait to form a batch; default: from the profile."
    )
    preferred_batch_sizes: list[Annotated[int, pydantic.Field(ge=1, le=256)]] | None = pydantic.Field(
        default=None, max_length=16, description="Preferred batch sizes; default: from the profile."
    )


class TritonSpec(ApiModel):
    """The Triton server."""

    image: str | None = pydantic.Field(
        default=None, max_length=512, description="Triton image; default: the release for the target (iGPU on edge)."
    )
    instances: int = pydantic.Field(default=1, ge=1, le=32, description="Model instances per replica.")
    dynamic_batching: DynamicBatchingSpec = section(DynamicBatchingSpec, "Dynamic batching.")
    warmup: bool = pydantic.Field(default=True, description="Run warm-up requests before reporting ready.")
    runtime: Literal["native", "python"] = pydantic.Field(
        default="native",
        description="native: the format's own Triton backend; python: ONNX Runtime/OpenVINO inside Triton's Python "
        "backend, for servers without the native backend.",
    )
    resources: ResourcesSpec = section(ResourcesSpec, "Resources of the Triton container.")


class ServingSpec(ApiModel):
    """How many Triton replicas serve, and how."""

    replicas: int | None = pydantic.Field(
        default=None, ge=0, le=1000, description="Fixed replica count (default 1); not with autoscaling."
    )
    autoscaling: AutoscalingSpec | None = pydantic.Field(default=None, description="Autoscaling; not with replicas.")
    triton: TritonSpec = section(TritonSpec, "The Triton server.")
    protocols: list[Protocol] = pydantic.Field(
        default_factory=lambda: list(PROTOCOLS),
        min_length=1,
        max_length=2,
        description="Protocols exposed by the Service.",
        json_schema_extra={"default": ["grpc", "http"], "x-kubernetes-list-type": "set"},
    )

    cel_rules = (
        Rule(
            cel="!(has(self.replicas) && has(self.autoscaling))",
            message="spec.serving.replicas and spec.serving.autoscaling are mutually exclusive: "
            "keep autoscaling (min/max) or a fixed replicas count, not both",
            check=lambda s: s.replicas is None or s.autoscaling is None,
            field_path=".replicas",
            reason="FieldValueForbidden",
        ),
    )


class CanaryAnalysisSpec(ApiModel):
    """What a canary step must show on Triton's metrics to be promoted."""

    max_error_rate: float = pydantic.Field(default=0.01, ge=0, le=1, description="Largest failed-request fraction.")
    max_p95_latency_ms: float | None = pydantic.Field(default=None, gt=0, description="Largest p95 latency in ms.")


class CanarySpec(ApiModel):
    """Progressive rollout in steps of traffic (replica) percentages."""

    steps: list[int] = pydantic.Field(
        min_length=1, max_length=20, description="Percentages, strictly increasing, ending at 100, e.g. [10, 50, 100]."
    )
    interval: str = pydantic.Field(
        default="2m", pattern=base.DURATION_PATTERN, description="Analysis window of each step, e.g. 2m."
    )
    analysis: CanaryAnalysisSpec = section(CanaryAnalysisSpec, "Promotion criteria.")

    cel_rules = (
        Rule(
            cel="self.steps.all(s, s >= 1 && s <= 100)",
            message="spec.rollout.canary.steps must be percentages between 1 and 100",
            check=lambda s: all(1 <= step <= 100 for step in s.steps),
            field_path=".steps",
        ),
        Rule(
            cel="self.steps.isSorted() && self.steps.all(s, self.steps.indexOf(s) == self.steps.lastIndexOf(s))",
            message="spec.rollout.canary.steps must be strictly increasing, e.g. [10, 50, 100]",
            check=lambda s: all(a < b for a, b in zip(s.steps, s.steps[1:], strict=False)),
            field_path=".steps",
        ),
        Rule(
            cel="self.steps[size(self.steps) - 1] == 100",
            message="spec.rollout.canary.steps must end at 100 so the rollout completes: append 100",
            check=lambda s: s.steps[-1] == 100,
            field_path=".steps",
        ),
    )


class RolloutSpec(ApiModel):
    """How a new engine revision replaces the serving one."""

    strategy: Literal["rolling", "canary"] = pydantic.Field(default="rolling", description="rolling or canary.")
    canary: CanarySpec | None = pydantic.Field(default=None, description="Canary steps; required for canary.")
    auto_rollback: bool = pydantic.Field(default=True, description="Return to the previous revision on failure.")
    progress_deadline_seconds: int = pydantic.Field(
        default=600, ge=30, le=86400, description="How long a revision may take to become available."
    )

    cel_rules = (
        Rule(
            cel="self.strategy != 'canary' || has(self.canary)",
            message="spec.rollout.canary is required when spec.rollout.strategy is canary: "
            "add canary.steps, e.g. [10, 50, 100]",
            check=lambda s: s.strategy != "canary" or s.canary is not None,
            field_path=".canary",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="self.strategy == 'canary' || !has(self.canary)",
            message="spec.rollout.canary is only used with spec.rollout.strategy canary: "
            "set strategy: canary, or remove canary",
            check=lambda s: s.strategy == "canary" or s.canary is None,
            field_path=".canary",
            reason="FieldValueForbidden",
        ),
    )


class IssuerRef(ApiModel):
    """A cert-manager issuer."""

    name: str = pydantic.Field(pattern=NAME_PATTERN, max_length=253, description="Issuer name.")
    kind: Literal["Issuer", "ClusterIssuer"] = pydantic.Field(default="Issuer", description="Issuer or ClusterIssuer.")
    group: str = pydantic.Field(default="cert-manager.io", description="API group of the issuer.")


class TlsSpec(ApiModel):
    """TLS for the inference endpoints."""

    mode: Literal["operator", "cert-manager", "disabled"] = pydantic.Field(
        default="operator", description="Who issues certificates: the operator's CA, cert-manager, or nobody."
    )
    mutual: bool = pydantic.Field(default=False, description="Require client certificates.")
    duration: str = pydantic.Field(default="2160h", pattern=base.DURATION_PATTERN, description="Certificate lifetime.")
    rotate_before: str | None = pydantic.Field(
        default=None,
        pattern=base.DURATION_PATTERN,
        description="Renew this long before expiry; default: at two thirds of the lifetime.",
    )
    issuer_ref: IssuerRef | None = pydantic.Field(default=None, description="cert-manager issuer.")

    cel_rules = (
        Rule(
            cel="self.mode != 'cert-manager' || has(self.issuerRef)",
            message="spec.security.tls.issuerRef is required when spec.security.tls.mode is cert-manager: "
            "name the Issuer or ClusterIssuer",
            check=lambda s: s.mode != "cert-manager" or s.issuer_ref is not None,
            field_path=".issuerRef",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!(self.mode == 'disabled' && self.mutual)",
            message="spec.security.tls.mutual needs TLS: set tls.mode to operator or cert-manager, or mutual to false",
            check=lambda s: not (s.mode == "disabled" and s.mutual),
            field_path=".mutual",
        ),
        Rule(
            cel="!has(self.rotateBefore) || duration(self.rotateBefore) < duration(self.duration)",
            message="spec.security.tls.rotateBefore must be shorter than spec.security.tls.duration",
            check=lambda s: (
                s.rotate_before is None or base.parse_duration(s.rotate_before) < base.parse_duration(s.duration)
            ),
            field_path=".rotateBefore",
        ),
    )


KMS_NOT_SUPPORTED = (
    "spec.security.encryption.kms is not supported yet: Kestrel has no KMS client, so nothing could decrypt an "
    "engine wrapped by one. Use spec.security.encryption.keySecret (a Secret holding a 32-byte key under 'kek')"
)


class EncryptionSpec(ApiModel):
    """Encryption of the engine at rest (AES-256-GCM envelope encryption)."""

    enabled: bool = pydantic.Field(default=False, description="Encrypt the stored engine.")
    key_secret: str | None = pydantic.Field(
        default=None, pattern=NAME_PATTERN, max_length=253, description="Secret holding the key-encryption key."
    )
    # Reserved, not a feature: a field the schema did not declare would be pruned in silence under the API server's
    # default field validation (Warn), and a manifest asking for a KMS would be stored as if it had not. Declared,
    # its presence is refused by the rule below whatever the client's field validation.
    kms: dict[str, Any] | None = pydantic.Field(
        default=None, description="Not supported yet: refused when set. Use keySecret."
    )

    cel_rules = (
        Rule(
            cel="!has(self.kms)",
            message=KMS_NOT_SUPPORTED,
            check=lambda s: s.kms is None,
            field_path=".kms",
            reason="FieldValueForbidden",
        ),
        Rule(
            cel="!self.enabled || has(self.keySecret)",
            message="spec.security.encryption.keySecret is required when encryption is enabled: name a Secret in "
            "this namespace holding a 32-byte key-encryption key under 'kek'",
            check=lambda s: not s.enabled or s.key_secret is not None,
            field_path=".keySecret",
            reason="FieldValueRequired",
        ),
    )


class AccessSpec(ApiModel):
    """Who may call the inference endpoints."""

    allowed_groups: NameList | None = pydantic.Field(default=None, description="Groups that may read the API key.")
    allowed_service_accounts: NameList | None = pydantic.Field(
        default=None, description="ServiceAccounts (namespace/name) that may read the API key."
    )
    allowed_namespaces: NameList | None = pydantic.Field(
        default=None, description="Namespaces admitted by the NetworkPolicy; default: this namespace only."
    )
    require_api_key: bool = pydantic.Field(default=True, description="Inference requires the API key header.")

    cel_rules = (
        Rule(
            cel="!has(self.allowedServiceAccounts) || self.allowedServiceAccounts.all(a, "
            f"a.matches('{SERVICE_ACCOUNT_PATTERN}'))",
            message="spec.security.access.allowedServiceAccounts entries must be namespace/name, "
            "e.g. vision/camera-app",
            check=lambda s: (
                s.allowed_service_accounts is None
                or all(re.fullmatch(SERVICE_ACCOUNT_PATTERN, a) for a in s.allowed_service_accounts)
            ),
            field_path=".allowedServiceAccounts",
        ),
    )


class SecuritySpec(ApiModel):
    """Transport security, encryption at rest, access control and audit."""

    tls: TlsSpec = section(TlsSpec, "TLS.")
    encryption: EncryptionSpec = section(EncryptionSpec, "Encryption at rest.")
    access: AccessSpec = section(AccessSpec, "Access control.")
    audit: bool = pydantic.Field(default=True, description="Emit audit Events and log lines for every change.")
    obfuscate: bool = pydantic.Field(
        default=False,
        description="Serve an engine stripped of node, tensor and layer names and of metadata (class names, training "
        "arguments): onnx and openvino engines, checked to give the plain engine's outputs exactly. It hides "
        "names, not the architecture or the weights (docs/security.md).",
    )


class DriftSpec(ApiModel):
    """Output drift: what the served model detects against what it detected on the validation images."""

    enabled: bool = pydantic.Field(
        default=True, description="Export the served model's drift metrics and report the Drift condition."
    )
    threshold: float = pydantic.Field(
        default=0.3,
        gt=0,
        le=1,
        description="Drift turns True when a pod's score (0: detects like on the validation images, 1: nothing in "
        "common; docs/monitoring.md) exceeds this.",
    )
    window: int = pydantic.Field(
        default=1000,
        ge=10,
        le=100_000,
        description="How many recent images each Triton pod scores; Drift stays Unknown until a pod's window is full.",
    )


SampleContent = Literal["inputs", "outputs"]
SAMPLE_CONTENTS: tuple[SampleContent, ...] = ("inputs", "outputs")


class SamplingSpec(ApiModel):
    """Live samples: a few of the images the served model answers, and its answers, sealed to the store."""

    enabled: bool = pydantic.Field(
        default=False,
        description="Seal a few live requests (the image and the detections) to the model's key-encryption key and "
        "store them beside the engine that answered them (docs/monitoring.md). Needs encryption and runtime python.",
    )
    rate_per_minute: int = pydantic.Field(
        default=6, ge=1, le=600, description="Images each Triton pod samples a minute at most (bursts of 5)."
    )
    max_bytes_per_day: int = pydantic.Field(
        default=256 << 20,
        ge=1 << 20,
        le=64 << 30,
        description="Sealed bytes each Triton pod stores per UTC day at most; samples past it are dropped and counted.",
    )
    include: Annotated[list[SampleContent], pydantic.Field(min_length=1, max_length=2)] = pydantic.Field(
        default_factory=lambda: list(SAMPLE_CONTENTS),
        description="What a sample holds: inputs (the image as sent), outputs (the detections), or both.",
    )

    cel_rules = (
        Rule(
            cel="size(self.include) == 1 || self.include[0] != self.include[1]",
            message="spec.monitoring.sampling.include names inputs or outputs once each",
            check=lambda s: len(set(s.include)) == len(s.include),
            field_path=".include",
            reason="FieldValueDuplicate",
        ),
    )


class MonitoringSpec(ApiModel):
    """What the operator watches on the served model beyond its health."""

    drift: DriftSpec = section(DriftSpec, "Output drift against the validation baseline.")
    sampling: SamplingSpec = section(SamplingSpec, "Live samples of inputs and outputs, sealed to the store.")


class ModelDeploymentSpec(ApiModel):
    """A YOLO model, how to optimize it, where to serve it and how to protect it."""

    model: ModelSpec = pydantic.Field(description="The model to serve.")
    engine: EngineSpec = section(EngineSpec, "The optimized engine to build.")
    validation: ValidationSpec = section(ValidationSpec, "The gate before rollout.")
    target: TargetSpec = section(TargetSpec, "Where to serve.")
    serving: ServingSpec = section(ServingSpec, "How to serve.")
    rollout: RolloutSpec = section(RolloutSpec, "How revisions roll out.")
    security: SecuritySpec = section(SecuritySpec, "How the model is protected.")
    monitoring: MonitoringSpec = section(MonitoringSpec, "What is watched on the served model.")

    cel_rules = (
        Rule(
            # The section is defaulted (to {} at least), so has(self.validation) holds for any stored object.
            cel="has(self.validation) && (has(self.validation.dataset) || has(self.validation.skip))",
            message="spec.validation.dataset is required: accuracy is measured before any rollout. Point it at a YOLO "
            "data.yaml (pvc:// or file://) whose val split the source and the engine are scored on, or set "
            "spec.validation.skip.reason to roll out without measuring accuracy",
            check=lambda s: s.validation.dataset is not None or s.validation.skip is not None,
            field_path=".validation.dataset",
            reason="FieldValueRequired",
        ),
        Rule(
            cel="!has(self.engine.calibration) || !has(self.validation.dataset) || "
            "self.engine.calibration.dataset != self.validation.dataset || self.engine.calibration.split != 'val'",
            message="spec.engine.calibration.split val of the validation dataset would score the engine on the images "
            "it was calibrated on: calibrate on another split (train, the default) or another dataset",
            check=lambda s: (
                s.engine.calibration is None
                or s.validation.dataset is None
                or s.engine.calibration.dataset != s.validation.dataset
                or s.engine.calibration.split != "val"
            ),
            field_path=".engine.calibration.split",
        ),
        Rule(
            cel="!self.security.obfuscate || self.engine.format in ['onnx', 'openvino']",
            message="spec.security.obfuscate works on onnx and openvino engines only (TensorRT plans and TorchScript "
            "are not rewritten): set spec.engine.format to onnx or openvino, or leave obfuscate off",
            check=lambda s: not s.security.obfuscate or s.engine.format in ("onnx", "openvino"),
            field_path=".security.obfuscate",
        ),
        Rule(
            cel="self.engine.format != 'tensorrt' || (has(self.target.gpu) && has(self.target.gpu.product))",
            message="spec.engine.format tensorrt needs a GPU target: set spec.target.gpu.product to the GPU type it "
            "will serve on (TensorRT engines are GPU-specific), or use onnx/openvino for CPU",
            check=lambda s: s.engine.format != "tensorrt" or (s.target.gpu is not None and s.target.gpu.product),
            field_path=".target.gpu",
            reason="FieldValueRequired",
        ),
        Rule(
            # Jetson: Kestrel has no builder with Jetson's TensorRT (JetPack's Python bindings are for its Python
            # 3.10, Kestrel runs on 3.11), and NVIDIA's Jetson Triton has no OpenVINO backend and no ONNX Runtime
            # inside its Python backend. What is left builds on the arm64 CPU builder and serves natively.
            cel="self.target.environment != 'edge' || (self.engine.format in ['auto', 'onnx', 'torchscript'] && "
            "self.serving.triton.runtime == 'native')",
            message="spec.target.environment edge serves onnx or torchscript engines with runtime native: Kestrel "
            "builds no Jetson TensorRT engines yet and Jetson's Triton has no OpenVINO; set spec.engine.format to "
            "onnx (ONNX Runtime), torchscript or auto, and spec.serving.triton.runtime to native",
            check=lambda s: (
                s.target.environment != "edge"
                or (s.engine.format in ("auto", "onnx", "torchscript") and s.serving.triton.runtime == "native")
            ),
            field_path=".engine.format",
        ),
        Rule(
            cel="!self.monitoring.sampling.enabled || self.security.encryption.enabled",
            message="spec.monitoring.sampling needs spec.security.encryption.enabled: samples are user data and are "
            "stored only sealed to the model's key-encryption key; enable encryption (with keySecret) or leave "
            "sampling off",
            check=lambda s: not s.monitoring.sampling.enabled or s.security.encryption.enabled,
            field_path=".monitoring.sampling.enabled",
        ),
        Rule(
            cel="!self.monitoring.sampling.enabled || (self.serving.triton.runtime == 'python' && "
            "self.engine.batch.dynamic)",
            message="spec.monitoring.sampling works with spec.serving.triton.runtime python and a dynamic batch "
            "(spec.engine.batch.dynamic true): the sampler runs in the Python model that serves the whole pipeline; "
            "set them, or leave sampling off",
            check=lambda s: (
                not s.monitoring.sampling.enabled or (s.serving.triton.runtime == "python" and s.engine.batch.dynamic)
            ),
            field_path=".monitoring.sampling.enabled",
        ),
        Rule(
            cel="self.serving.triton.runtime != 'python' || self.engine.format in ['onnx', 'openvino', 'auto']",
            message="spec.serving.triton.runtime python serves only onnx or openvino engines: "
            "change spec.engine.format, or use runtime native",
            check=lambda s: s.serving.triton.runtime != "python" or s.engine.format in ("onnx", "openvino", "auto"),
            field_path=".serving.triton.runtime",
        ),
        Rule(
            cel="!has(self.serving.triton.dynamicBatching.preferredBatchSizes) || "
            "self.serving.triton.dynamicBatching.preferredBatchSizes.all(b, b >= 1 && b <= self.engine.batch.max)",
            message="spec.serving.triton.dynamicBatching.preferredBatchSizes must lie between 1 and "
            "spec.engine.batch.max",
            check=lambda s: (
                s.serving.triton.dynamic_batching.preferred_batch_sizes is None
                or all(1 <= b <= s.engine.batch.max for b in s.serving.triton.dynamic_batching.preferred_batch_sizes)
            ),
            field_path=".serving.triton.dynamicBatching.preferredBatchSizes",
        ),
    )


def _field_path(location: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse(raw: Mapping[str, Any]) -> ModelDeploymentSpec:
    """Validate a spec as it comes from the API server or a YAML file; name every bad field in the error."""
    try:
        return ModelDeploymentSpec.model_validate(raw)
    except pydantic.ValidationError as error:
        problems = [f"{_field_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors()]
        first = error.errors()[0]
        raise errors.SpecError(_field_path(first["loc"]), "; ".join(problems)) from None
