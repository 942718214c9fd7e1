"""Every name Kestrel gives a child object, in one place, each a valid DNS-1035 label of at most 63 characters.

A ModelDeployment's name may be a 253-character DNS subdomain, but Services need DNS-1035 labels and Jobs,
Deployments and label values stop at 63; so a long name keeps its readable start and gains a hash of the
whole, which keeps two long names that share a prefix apart.
"""

from __future__ import annotations

import hashlib
import re

MAX_LENGTH = 63
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-z0-9-]+")


def short_key(engine_key: str) -> str:
    """The first 8 hex digits of an engine key: what names and labels carry (annotations carry all of it)."""
    return engine_key[:8]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def child(name: str, *suffix: str) -> str:
    """`name-suffix…`, shortened to 63 characters with a hash of the full name when it is too long."""
    base = _INVALID.sub("-", name.lower()).strip("-") or "x"
    if not base[0].isalpha():
        base = f"m-{base}"  # a Service name must start with a letter
    tail = "-".join(suffix)
    joined = f"{base}-{tail}" if tail else base
    if len(joined) <= MAX_LENGTH and base == name:
        return joined
    # A rewritten name gets a hash too: "a.b" and "a-b" would otherwise collide.
    room = MAX_LENGTH - len(tail) - _HASH_LENGTH - (2 if tail else 1)
    head = base[:room].rstrip("-")
    return "-".join(p for p in (head, _digest(name), tail) if p)


def label_value(name: str) -> str:
    """A ModelDeployment name as a label value (at most 63 characters)."""
    return name if len(name) <= MAX_LENGTH else child(name)


def build_job(name: str, engine_key: str) -> str:
    return child(name, "build", short_key(engine_key))


def triton(name: str) -> str:
    """The stable Triton Deployment, and the PDB, autoscaler and ServiceAccount that go with it."""
    return child(name, "triton")


def canary(name: str) -> str:
    """The canary Triton Deployment of the operator-stepped canary."""
    return child(name, "triton-canary")


def service(name: str) -> str:
    """The Service clients call: named like the ModelDeployment, `<name>.<namespace>.svc`."""
    return child(name)


def service_account(name: str) -> str:
    return child(name, "triton")


def pod_disruption_budget(name: str) -> str:
    return child(name, "triton")


def autoscaler(name: str) -> str:
    return child(name, "triton")


def upload_grant(name: str, engine_key: str) -> str:
    """The Secret with the store grant the build Job of `engine_key` publishes with (`storage.grants`)."""
    return child(name, "build", short_key(engine_key), "grant")


def download_grant(name: str, engine_key: str) -> str:
    """The Secret with the store grant the loader of `engine_key` fetches with (`storage.grants`)."""
    return child(name, "load", short_key(engine_key), "grant")


def samples_grant(name: str, engine_key: str) -> str:
    """The Secret with the store grant the Triton pods of `engine_key` upload live samples with."""
    return child(name, "samples", short_key(engine_key), "grant")


def store_credentials(name: str) -> str:
    """Where operators before store grants copied the store's credentials; deleted where the model owns it."""
    return child(name, "engine-store")


def tls_secret(name: str) -> str:
    """Server certificate, key and CA (`tls.crt`, `tls.key`, `ca.crt`), written by the TLS reconciler."""
    return child(name, "tls")


def ca_bundle(name: str) -> str:
    """The ConfigMap with the CA certificate that verifies the model's server certificate (public, no key)."""
    return child(name, "ca")


def client_ca_secret(name: str) -> str:
    """The model's own client CA (`tls.crt`, `tls.key`): it alone signs the client certificates Triton accepts."""
    return child(name, "client-ca")


def api_key_secret(name: str) -> str:
    """The inference API key (`api-key`), written by the access reconciler."""
    return child(name, "api-key")


def api_key_reader(name: str) -> str:
    """The Role (and RoleBinding) that lets the allowed subjects read the API key."""
    return child(name, "api-key-reader")


def network_policy(name: str) -> str:
    return child(name, "triton")


def pod_monitor(name: str) -> str:
    """The Prometheus Operator PodMonitor of every Triton pod of the model."""
    return child(name, "triton")


def build_network_policy(name: str) -> str:
    """The NetworkPolicy of every build pod of the model, whatever its engine key."""
    return child(name, "build")


def signing_secret(name: str) -> str:
    """The Ed25519 pair that signs engine manifests: `signing.key` (build only) and `signing.pub` (loader)."""
    return child(name, "signing")


def kek_public_secret(name: str) -> str:
    """The public key of the model's key-encryption key (`kek.pub`), the one key the build Job gets to encrypt with."""
    return child(name, "kek-public")


def triton_model(name: str) -> str:
    """The model's name inside Triton's repository (and in its metrics' `model` label)."""
    return name
