"""Where an engine lives: store URIs, engine references and the object names below them.

One operator-wide store, `s3://bucket/prefix` or `pvc://claim/prefix`; an engine lives at
`<prefix>/<namespace>/<name>/<engine key>/`, holding `manifest.json` and `files/...` (see `security.artifact`).
An engine counts as present only when its manifest is there, so every writer puts the manifest last and every
deleter removes it first.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Literal

from kestrel.storage import errors

MANIFEST_NAME = "manifest.json"
# Live samples of a served engine (`serving.backends.sampling`) sit in the engine's own folder, so that they go
# when the engine goes; no manifest lists them, so no loader is ever granted them.
SAMPLES_DIR = "samples"
MAX_SAMPLE_SIZE = 64 << 20  # one image and its boxes, sealed; what a samples grant admits per object
SCHEMES = ("s3", "pvc")
MAX_PATH_LENGTH = 1024

# Kubernetes names: a namespace is a DNS label, a ModelDeployment name a DNS subdomain.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Engine keys are hex SHA-256s (`api.keys.engine_key`); anything that is one path segment and no dot-name will do.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclasses.dataclass(frozen=True)
class EngineRef:
    """One engine of one ModelDeployment: `<namespace>/<name>/<key>` below the store's prefix."""

    namespace: str
    name: str
    key: str

    def __post_init__(self) -> None:
        owner_path(self.namespace, self.name)
        if not _KEY.fullmatch(self.key):
            raise errors.StoreConfigError(f"engine key {self.key!r} cannot name an engine in the store")

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.name}/{self.key}"

    @property
    def artifact_id(self) -> str:
        """The id the build packs the engine under and `kestrel load` expects: its path, so a validly signed
        engine of another ModelDeployment, or an older one, cannot be substituted for the one asked for."""
        return self.path

    def __str__(self) -> str:
        return self.path


@dataclasses.dataclass(frozen=True)
class StoreLocation:
    """A parsed store URI: `s3://bucket/prefix` or `pvc://claim/prefix` (the prefix may be empty)."""

    scheme: Literal["s3", "pvc"]
    container: str  # the bucket or the claim
    prefix: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.container}" + (f"/{self.prefix}" if self.prefix else "")

    def engine_uri(self, ref: EngineRef) -> str:
        """What `kestrel load --from` takes."""
        return f"{self.uri}/{ref.path}"


def owner_path(namespace: str, name: str) -> str:
    """`<namespace>/<name>`, the folder of one ModelDeployment's engines, once both names are checked."""
    for field, value, pattern in (("namespace", namespace, _NAMESPACE), ("name", name, _NAME)):
        if not pattern.fullmatch(value):
            raise errors.StoreConfigError(f"{field} {value!r} cannot name an engine in the store")
    return f"{namespace}/{name}"


def parse_store_uri(uri: str) -> StoreLocation:
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in SCHEMES or not parsed.netloc or parsed.query or parsed.fragment:
        raise errors.StoreConfigError(f"engine store {uri!r} is not s3://BUCKET[/PREFIX] or pvc://CLAIM[/PREFIX]")
    if parsed.scheme == "s3" and not _BUCKET.fullmatch(parsed.netloc):
        raise errors.StoreConfigError(f"engine store {uri!r}: {parsed.netloc!r} is not a valid bucket name")
    if parsed.scheme == "pvc" and not _NAME.fullmatch(parsed.netloc):
        raise errors.StoreConfigError(f"engine store {uri!r}: {parsed.netloc!r} is not a valid claim name")
    prefix = parsed.path.strip("/")
    if prefix:
        try:
            check_relative(prefix)
        except errors.StoreConfigError as error:
            raise errors.StoreConfigError(f"engine store {uri!r}: {error}") from None
    scheme: Literal["s3", "pvc"] = "s3" if parsed.scheme == "s3" else "pvc"
    return StoreLocation(scheme, parsed.netloc, prefix)


def parse_engine_uri(uri: str) -> tuple[StoreLocation, EngineRef]:
    """Split `s3://bucket/prefix/<namespace>/<name>/<key>` into the store and the engine."""
    head, _, key = uri.rstrip("/").rpartition("/")
    head, _, name = head.rpartition("/")
    head, _, namespace = head.rpartition("/")
    if not head or "://" not in head or head.endswith(":/"):
        raise errors.StoreConfigError(f"engine URI {uri!r} does not end in /<namespace>/<name>/<engine key>")
    return parse_store_uri(head), EngineRef(namespace, name, key)


def check_relative(path: str) -> str:
    """Return `path` if it is a normalised relative POSIX path that stays below its root.

    Object names come from a store others can write to; a name like `../x` must not leave the download target.
    """
    if not path or len(path) > MAX_PATH_LENGTH or "\\" in path or "\x00" in path or path.startswith("/"):
        raise errors.StoreConfigError(f"not a safe relative path: {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise errors.StoreConfigError(f"path has an empty, '.' or '..' component: {path!r}")
    return path
