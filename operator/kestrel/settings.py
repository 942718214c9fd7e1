"""The operator's configuration, read once from its environment at start-up (the Helm chart sets it) and passed down:
`Settings`, the same for every ModelDeployment, to the reconcilers and manifest builders; the rest of
`Configuration` to the process's own machinery (Kopf's settings, the pools, the drift check, the election, the logs).

A low layer: nothing of Kubernetes or Kopf is imported here.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Literal

import kestrel
from kestrel import logs
from kestrel.api import spec
from kestrel.storage import layout

_VERSION = kestrel.__version__
_REGISTRY = "ghcr.io/kestrel-dev"
_TRITON_RELEASE = "nvcr.io/nvidia/tritonserver:24.10"

StoreScheme = Literal["s3", "pvc"]


@dataclasses.dataclass(frozen=True)
class Store:
    """The operator-wide engine store, parsed: `s3://bucket/prefix` or `pvc://claim/prefix`."""

    scheme: StoreScheme
    root: str  # the bucket or the claim
    prefix: str  # without leading or trailing slash; may be empty

    @classmethod
    def parse(cls, uri: str) -> Store:
        """The store's one parser (`storage.layout.parse_store_uri`): a bad URI raises its StoreConfigError, a
        ValueError, naming what is wrong."""
        location = layout.parse_store_uri(uri)
        return cls(scheme=location.scheme, root=location.container, prefix=location.prefix)

    def uri(self, *parts: str) -> str:
        # No trailing slash: the form `kestrel.storage.layout` writes, so URIs compare equal across modules.
        path = "/".join(p for p in (self.prefix, *parts) if p)
        return f"{self.scheme}://{self.root}/{path}" if path else f"{self.scheme}://{self.root}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Operator-wide configuration (the chart's values), the same for every ModelDeployment."""

    engine_store: str
    # A Secret in the operator's namespace with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally
    # AWS_ENDPOINT_URL, AWS_REGION); only the operator reads it: pods get store grants (`reconcilers.engine.grants`).
    store_credentials_secret: str | None = None
    operator_namespace: str = "kestrel-system"
    # The Helm release the operator was installed as: its pods carry it as `app.kubernetes.io/instance`
    # (labels.operator_selector), which is how a model's NetworkPolicy admits the operator and no other pod there.
    operator_instance: str = "kestrel"
    builder_image: str = f"{_REGISTRY}/kestrel-builder:{_VERSION}"
    # TensorRT engines are built (and profiled) on the GPU they serve on, which needs CUDA in the image. Jetsons
    # build with `builder_image` (published for arm64 too): no Jetson TensorRT builder exists yet.
    builder_gpu_image: str = f"{_REGISTRY}/kestrel-builder:{_VERSION}-gpu"
    # The loader image also runs the Triton pods' TLS proxy (`kestrel tls-proxy`).
    loader_image: str = f"{_REGISTRY}/kestrel-loader:{_VERSION}"
    triton_image: str = f"{_TRITON_RELEASE}-py3"
    # CPU targets served by the Python runtime: Kestrel's own Triton (docker/triton-cpu.Dockerfile), the CPU build
    # of the same server with only the Python backend and what Kestrel's Python models use (ONNX Runtime,
    # OpenVINO), several GB smaller than NVIDIA's image.
    triton_cpu_image: str = f"{_REGISTRY}/kestrel-triton-cpu:{_VERSION}"
    triton_igpu_image: str = f"{_TRITON_RELEASE}-py3-igpu"
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    # Namespaces whose pods may scrape Triton's metrics port through each model's NetworkPolicy
    # (KESTREL_SCRAPER_NAMESPACES, the chart's modelMetrics.scrapeNamespaces); empty: none, only the operator's pods.
    scraper_namespaces: tuple[str, ...] = ("monitoring",)
    # A Prometheus Operator PodMonitor per model where its CRD is installed (KESTREL_POD_MONITOR), scraping every
    # `pod_monitor_interval`, with these labels for a Prometheus that selects PodMonitors by label
    # (KESTREL_POD_MONITOR_LABELS, e.g. release=prometheus).
    pod_monitor: bool = True
    pod_monitor_interval: str = "30s"
    pod_monitor_labels: tuple[tuple[str, str], ...] = ()
    # Long enough for an operator that was down to still read the result from the pod; the result is also
    # stored beside the engine, so a Job collected earlier costs a cache lookup, not a rebuild.
    build_ttl_seconds: int = 86400
    # Where the operator's own pod mounts claims (KESTREL_PVC_ROOT), for the engine cache and garbage collection
    # of a pvc:// store; None: the operator cannot see the claim and leaves the store to the pods.
    pvc_root: pathlib.Path | None = None
    # The operator as a client of each served model (reconcilers/serving/checks.py): after a rollout one inference
    # through the Service gates Available, and every pass reads Triton's metrics into status. Off
    # (KESTREL_SERVING_CHECKS=false) only where no real Triton answers, e.g. kwok-simulated nodes; status then says
    # they were not run.
    serving_checks: bool = True
    # KESTREL_ADDRESS_MAP: a JSON file mapping in-cluster "host:port" to where this operator reaches them, for an
    # operator outside the pod network (serving/addresses.py); None: dial cluster addresses directly.
    address_map: pathlib.Path | None = None
    # Secrets every pod Kestrel creates pulls its images with (KESTREL_IMAGE_PULL_SECRETS, the chart's
    # imagePullSecrets): a private registry or mirror. The kubelet reads them in the pod's own namespace, so each
    # model namespace needs its copy; the operator neither reads nor copies them.
    image_pull_secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        Store.parse(self.engine_store)  # fail at start-up, not at the first build

    @property
    def store(self) -> Store:
        return Store.parse(self.engine_store)


PREFIX = "KESTREL_"
# A Secret's name is a DNS subdomain (RFC 1123): what the API server would refuse in a pod's imagePullSecrets.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_SUBDOMAIN_MAX = 253
# A namespace's name is a DNS label (RFC 1123), the pattern the API checks names with.
_DNS_LABEL = re.compile(spec.NAME_PATTERN)
_DNS_LABEL_MAX = 63
# A label's name (after an optional DNS-subdomain prefix and "/") and its value, as the API server checks them.
_LABEL_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_PART_MAX = 63
# Kestrel's own labels on every object it makes: a selector or a `kubectl get -l` relies on them.
_OWN_LABEL_PREFIXES = ("app.kubernetes.io/", "kestrel.dev/")
# A scrape interval the PodMonitor CRD accepts (hours, minutes, seconds, milliseconds, in that order).
_INTERVAL = re.compile(r"(?=[0-9])([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?")

# Seconds between drift checks of each ModelDeployment (KESTREL_RESYNC_SECONDS).
DEFAULT_RESYNC_SECONDS = 30.0
# Threads that run reconcile passes at once (KESTREL_WORKERS): they block on API calls.
DEFAULT_WORKERS = 16


@dataclasses.dataclass(frozen=True)
class Configuration:
    """Everything the operator reads from its environment: `kestrel run` reads it once and hands it to Kopf's
    start-up handler (handlers/lifecycle.py), which passes it on."""

    settings: Settings
    # Namespaces to watch (KESTREL_WATCH_NAMESPACES); empty: the whole cluster.
    watch_namespaces: tuple[str, ...] = ()
    resync_interval: float = DEFAULT_RESYNC_SECONDS
    # Seconds a pass not caused by a spec change trusts what an earlier pass confirmed (KESTREL_TRUST_SECONDS).
    trust: float = 3 * DEFAULT_RESYNC_SECONDS
    workers: int = DEFAULT_WORKERS
    leader_lease: str | None = None
    log_format: logs.Format = "text"

    @property
    def side_threads(self) -> int:
        """Threads of each of the operator's own small pools beside Kopf's (the drift check, owned objects' passes)."""
        return min(4, self.workers)


def from_environment(environ: dict[str, str] | None = None) -> Configuration:
    """Build the configuration; a missing or malformed variable names itself in the error."""
    env = dict(os.environ if environ is None else environ)
    store = env.get(f"{PREFIX}ENGINE_STORE")
    if not store:
        raise ValueError(f"{PREFIX}ENGINE_STORE is required: s3://bucket/prefix or pvc://claim/prefix")
    overrides = {
        field.name: env[f"{PREFIX}{field.name.upper()}"]
        for field in dataclasses.fields(Settings)
        if field.name != "engine_store"
        and f"{PREFIX}{field.name.upper()}" in env
        and field.type in ("str", "str | None")
    }
    pvc_root = env.get(f"{PREFIX}PVC_ROOT")
    address_map = env.get(f"{PREFIX}ADDRESS_MAP")
    _check_interval(env, f"{PREFIX}POD_MONITOR_INTERVAL")
    settings = Settings(
        engine_store=store,
        pvc_root=pathlib.Path(pvc_root) if pvc_root else None,
        serving_checks=_flag(env, f"{PREFIX}SERVING_CHECKS", default=True),
        pod_monitor=_flag(env, f"{PREFIX}POD_MONITOR", default=True),
        pod_monitor_labels=_labels(env, f"{PREFIX}POD_MONITOR_LABELS"),
        address_map=pathlib.Path(address_map) if address_map else None,
        image_pull_secrets=_secret_names(env, f"{PREFIX}IMAGE_PULL_SECRETS"),
        scraper_namespaces=_namespaces(env, f"{PREFIX}SCRAPER_NAMESPACES", default=Settings.scraper_namespaces),
        **overrides,  # type: ignore[arg-type]
    )
    namespaces = tuple(n for n in env.get(f"{PREFIX}WATCH_NAMESPACES", "").split(",") if n)
    resync_interval = _resync_interval(env)
    return Configuration(
        settings=settings,
        watch_namespaces=namespaces,
        resync_interval=resync_interval,
        trust=_trust(env, resync_interval),
        workers=_workers(env),
        leader_lease=_leader_lease(env),
        log_format=_log_format(env),
    )


def _flag(env: dict[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise ValueError(f"{name}={env[name]!r}: expected true or false")
    return value == "true"


def _is_dns_subdomain(text: str) -> bool:
    return len(text) <= _DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(text) is not None


def _is_dns_label(text: str) -> bool:
    return len(text) <= _DNS_LABEL_MAX and _DNS_LABEL.fullmatch(text) is not None


def _listed(text: str) -> list[str]:
    """The non-empty, stripped parts of a comma-separated value."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _secret_names(env: dict[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated Secret names, each checked at start-up: a bad one would fail every pod Kestrel creates."""
    names = _listed(env.get(name, ""))
    for found in names:
        if not _is_dns_subdomain(found):
            raise ValueError(
                f"{name}={env[name]!r}: {found!r} is not a Secret name (a lowercase DNS subdomain: a-z, 0-9, '-' "
                f"and '.', at most {_DNS_SUBDOMAIN_MAX} characters); expected names separated by commas, "
                "e.g. regcred,mirror"
            )
    return tuple(dict.fromkeys(names))


def _namespaces(env: dict[str, str], name: str, *, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated namespace names: `default` while the variable is unset, none when it is set but empty."""
    if name not in env:
        return default
    found = _listed(env[name])
    for namespace in found:
        if not _is_dns_label(namespace):
            raise ValueError(
                f"{name}={env[name]!r}: {namespace!r} is not a namespace name (a lowercase DNS label: a-z, 0-9 and "
                f"'-', at most {_DNS_LABEL_MAX} characters); expected names separated by commas, e.g. "
                "monitoring,observability, or an empty value for no namespace"
            )
    return tuple(dict.fromkeys(found))


def _label_key(key: str) -> bool:
    prefix, _, part = key.rpartition("/")
    if prefix and not _is_dns_subdomain(prefix):
        return False
    return len(part) <= _LABEL_PART_MAX and _LABEL_PART.fullmatch(part) is not None


def _labels(env: dict[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """Comma-separated `key=value` labels, each checked as the API server would, none of Kestrel's own."""
    text = env.get(name, "")
    found: dict[str, str] = {}
    for pair in _listed(text):
        key, equals, value = (side.strip() for side in pair.partition("="))
        valid_value = not value or (len(value) <= _LABEL_PART_MAX and _LABEL_PART.fullmatch(value) is not None)
        if not equals or not _label_key(key) or not valid_value:
            raise ValueError(
                f"{name}={text!r}: {pair!r} is not a label key=value (a key of a-z, A-Z, 0-9, '-', '_' and '.', "
                "optionally after a DNS prefix and '/'; a value of the same characters, at most 63); expected "
                "pairs separated by commas, e.g. release=prometheus"
            )
        if key in found:
            raise ValueError(f"{name}={text!r}: {key!r} is given twice")
        if key.startswith(_OWN_LABEL_PREFIXES):
            raise ValueError(
                f"{name}={text!r}: {key!r}: Kestrel sets its app.kubernetes.io/ and kestrel.dev/ labels itself; "
                "choose another key"
            )
        found[key] = value
    return tuple(found.items())


def _check_interval(env: dict[str, str], name: str) -> None:
    text = env.get(name)
    if text is not None and not _INTERVAL.fullmatch(text):
        raise ValueError(f"{name}={text!r}: expected a duration such as 30s, 1m or 1m30s (h, m, s, ms in that order)")


def _resync_interval(env: dict[str, str]) -> float:
    """Seconds between drift checks of each ModelDeployment."""
    return float(env.get(f"{PREFIX}RESYNC_SECONDS", str(DEFAULT_RESYNC_SECONDS)))


def _trust(env: dict[str, str], resync_interval: float) -> float:
    """Seconds a pass not caused by a spec change trusts what an earlier pass applied or read unchanged.

    Children are re-applied (drift undone) at least this often; Deployments at once, since they are watched.
    Default: three resync intervals, so a hand-deleted NetworkPolicy or Role is back within 90 s at the default
    resync. 0 trusts nothing: every pass asks the API server again.
    """
    name = f"{PREFIX}TRUST_SECONDS"
    text = env.get(name)
    if not text:
        return 3 * resync_interval
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a number of seconds, e.g. 300") from None
    if value < 0:
        raise ValueError(f"{name}={text!r}: must be >= 0 (0 trusts nothing)")
    return value


def _workers(env: dict[str, str]) -> int:
    """Threads that run reconcile passes at once (they block on API calls); `KESTREL_WORKERS`, default 16."""
    name = f"{PREFIX}WORKERS"
    text = env.get(name, str(DEFAULT_WORKERS))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r}: expected a whole number >= 1, e.g. 16")
    return int(text)


def _leader_lease(env: dict[str, str]) -> str | None:
    """`KESTREL_LEADER_LEASE`: the Lease in the operator's namespace that replicas elect a leader with; unset or
    empty: no election (one replica only)."""
    name = f"{PREFIX}LEADER_LEASE"
    text = env.get(name, "").strip()
    if text and not _is_dns_subdomain(text):
        raise ValueError(f"{name}={text!r}: expected a Lease name (a lowercase DNS subdomain), e.g. kestrel-operator")
    return text or None


def _log_format(env: dict[str, str]) -> logs.Format:
    """`KESTREL_LOG_FORMAT`: text (Kopf's lines, the default) or json (one object per line)."""
    name = f"{PREFIX}LOG_FORMAT"
    text = env.get(name, "").strip().lower() or "text"
    for known in logs.FORMATS:
        if text == known:
            return known
    raise ValueError(f"{name}={env[name]!r}: expected one of {', '.join(logs.FORMATS)}")
