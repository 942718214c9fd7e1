"""The operator's configuration, read once from its environment (the Helm chart sets it)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

from kestrel import logs
from kestrel.api import spec
from kestrel.manifests import context

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


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    settings: context.Settings
    watch_namespaces: tuple[str, ...]


def from_environment(environ: dict[str, str] | None = None) -> OperatorConfig:
    """Build the configuration; a missing or malformed variable names itself in the error."""
    env = dict(os.environ if environ is None else environ)
    store = env.get(f"{PREFIX}ENGINE_STORE")
    if not store:
        raise ValueError(f"{PREFIX}ENGINE_STORE is required: s3://bucket/prefix or pvc://claim/prefix")
    overrides = {
        field.name: env[f"{PREFIX}{field.name.upper()}"]
        for field in dataclasses.fields(context.Settings)
        if field.name != "engine_store"
        and f"{PREFIX}{field.name.upper()}" in env
        and field.type in ("str", "str | None")
    }
    pvc_root = env.get(f"{PREFIX}PVC_ROOT")
    address_map = env.get(f"{PREFIX}ADDRESS_MAP")
    _check_interval(env, f"{PREFIX}POD_MONITOR_INTERVAL")
    settings = context.Settings(
        engine_store=store,
        pvc_root=pathlib.Path(pvc_root) if pvc_root else None,
        serving_checks=_flag(env, f"{PREFIX}SERVING_CHECKS", default=True),
        pod_monitor=_flag(env, f"{PREFIX}POD_MONITOR", default=True),
        pod_monitor_labels=_labels(env, f"{PREFIX}POD_MONITOR_LABELS"),
        address_map=pathlib.Path(address_map) if address_map else None,
        image_pull_secrets=_secret_names(env, f"{PREFIX}IMAGE_PULL_SECRETS"),
        scraper_namespaces=_namespaces(env, f"{PREFIX}SCRAPER_NAMESPACES", default=context.Settings.scraper_namespaces),
        **overrides,  # type: ignore[arg-type]
    )
    namespaces = tuple(n for n in env.get(f"{PREFIX}WATCH_NAMESPACES", "").split(",") if n)
    return OperatorConfig(
        settings=settings,
        watch_namespaces=namespaces,
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


def resync_interval() -> float:
    """Seconds between drift checks of each ModelDeployment; read at import, when Kopf registers the timer."""
    return float(os.environ.get(f"{PREFIX}RESYNC_SECONDS", "30"))


def trust_interval() -> float:
    """Seconds a pass not caused by a spec change trusts what an earlier pass applied or read unchanged.

    Children are re-applied (drift undone) at least this often; Deployments at once, since they are watched.
    Default: three resync intervals, so a hand-deleted NetworkPolicy or Role is back within 90 s at the default
    resync. 0 trusts nothing: every pass asks the API server again.
    """
    name = f"{PREFIX}TRUST_SECONDS"
    text = os.environ.get(name)
    if not text:
        return 3 * resync_interval()
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a number of seconds, e.g. 300") from None
    if value < 0:
        raise ValueError(f"{name}={text!r}: must be >= 0 (0 trusts nothing)")
    return value


def side_threads() -> int:
    """Threads of each of the operator's own small pools beside Kopf's (the drift check, owned objects' passes)."""
    return min(4, executor_threads())


def executor_threads() -> int:
    """Threads that run reconcile passes at once (they block on API calls); `KESTREL_WORKERS`, default 16."""
    name = f"{PREFIX}WORKERS"
    text = os.environ.get(name, "16")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r}: expected a whole number >= 1, e.g. 16")
    return int(text)


def leader_lease() -> str | None:
    """`KESTREL_LEADER_LEASE`: the Lease in the operator's namespace that replicas elect a leader with; unset or
    empty: no election (one replica only)."""
    name = f"{PREFIX}LEADER_LEASE"
    text = os.environ.get(name, "").strip()
    if text and not _is_dns_subdomain(text):
        raise ValueError(f"{name}={text!r}: expected a Lease name (a lowercase DNS subdomain), e.g. kestrel-operator")
    return text or None


def log_format() -> logs.Format:
    """`KESTREL_LOG_FORMAT`: text (Kopf's lines, the default) or json (one object per line)."""
    name = f"{PREFIX}LOG_FORMAT"
    text = os.environ.get(name, "").strip().lower() or "text"
    for known in logs.FORMATS:
        if text == known:
            return known
    raise ValueError(f"{name}={os.environ[name]!r}: expected one of {', '.join(logs.FORMATS)}")
