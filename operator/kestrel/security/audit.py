"""Audit records: one structured JSON line per change, and the guard that keeps key material out of every log.

The guard is a heuristic by necessity, tuned to refuse what keys look like when they leak (PEM blocks, hex runs of
32+ characters, mixed-case base64 runs of 40+, JWTs) while letting through what audit lines legitimately carry:
Kubernetes names (lowercase, digits, dashes), UIDs (dash-separated hex of at most 12), KEK ids (16 hex), paths,
and digests written as `sha256:<64 hex>`. Padded base64 of a 32-byte key is always caught; other random base64
slips through at most about once in 1,000 draws (measured: unpadded 32 bytes 1 in 3,500, 48 bytes 1 in 1,000).
It is the last line of defence, not the first. A value it suspects is replaced by `[redacted]` and its field named
in the record's `redacted` list: the rest of the line is still written, since an audit trail with holes in it is
worth more than none.

"Who" is not something Kestrel can know. The names in `fieldManagers` come from `metadata.managedFields`, which
each client chooses (`kubectl --field-manager=anything`); they hint at the tool, never prove a person. The
API server's own audit log records the authenticated user of every request, and each line says so (`identity`).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kestrel.security import errors

SCHEMA = "kestrel.dev/audit/v1"
SummaryValue = str | int | bool | None
REDACTED = "[redacted]"
IDENTITY = (
    "unverified: fieldManagers are names clients choose, not authenticated users; "
    "the API server's audit log records who sent each request"
)

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*-----")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{32,}")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")
_DIGEST_TAG = re.compile(r"(sha256|sha384|sha512):$")
_DIGEST_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


class Change(enum.StrEnum):
    """What kind of thing changed; one audit line each."""

    SPEC = "spec"
    ENGINE = "engine"
    REVISION = "revision"
    KEY = "key"
    CERTIFICATE = "certificate"
    ACCESS = "access"
    VALIDATION = "validation"  # an engine rolled out with accuracy unmeasured (spec.validation.skip)


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """The Kubernetes object the change belongs to."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None
    generation: int | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {"kind": self.kind, "namespace": self.namespace, "name": self.name}
        extra = {"uid": self.uid, "generation": self.generation}
        return fields | {key: value for key, value in extra.items() if value is not None}


def field_managers(managed_fields: Iterable[Mapping[str, Any]], *, touching: str | None = "spec") -> list[str]:
    """The managers in `metadata.managedFields` that own fields under `touching` (all managers if None).

    Status writes (subresource "status") are left out: they say who reported, not who asked for the change.
    """
    found: set[str] = set()
    for entry in managed_fields:
        manager = entry.get("manager")
        if not isinstance(manager, str) or entry.get("subresource") == "status":
            continue
        owned = entry.get("fieldsV1")
        if touching is None or (isinstance(owned, Mapping) and f"f:{touching}" in owned):
            found.add(manager)
    return sorted(found)


def record(
    obj: ObjectRef,
    change: Change,
    *,
    old: Mapping[str, SummaryValue] | None,
    new: Mapping[str, SummaryValue] | None,
    field_managers: Sequence[str],
    now: datetime.datetime,
) -> dict[str, Any]:
    """Build one audit record; any value (or key) that looks like key material is redacted and its field listed."""
    verb = "Created" if old is None else "Deleted" if new is None else "Changed"
    built = {
        "audit": SCHEMA,
        "time": now.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "message": f"{verb} {change.value} of {obj.kind} {obj.namespace}/{obj.name}",
        "object": obj.to_json(),
        "change": change.value,
        "old": dict(old) if old is not None else None,
        "new": dict(new) if new is not None else None,
        "fieldManagers": list(field_managers),
        "identity": IDENTITY,
    }
    redacted: list[str] = []
    result: dict[str, Any] = _redacted(built, "$", redacted)
    if redacted:
        result["redacted"] = redacted
    check_safe(result)
    return result


def line(
    obj: ObjectRef,
    change: Change,
    *,
    old: Mapping[str, SummaryValue] | None,
    new: Mapping[str, SummaryValue] | None,
    field_managers: Sequence[str],
    now: datetime.datetime,
) -> str:
    """The audit record as one JSON line (keys sorted), checked again as the text that will be emitted."""
    built = record(obj, change, old=old, new=new, field_managers=field_managers, now=now)
    text = json.dumps(built, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    check_safe(text, where="line")
    return text


def redact(text: str) -> str:
    """`text`, or `[redacted]` when it (or its JSON form) looks like key material: for names clients choose."""
    return REDACTED if _suspect(text) else text


def _suspect(text: str) -> bool:
    # The JSON form too: escapes (\n, \u0001) are letters and digits that could join a run the raw text lacks.
    return find_key_material(text) is not None or find_key_material(json.dumps(text, ensure_ascii=False)) is not None


def _redacted(value: Any, where: str, found: list[str]) -> Any:
    """A copy of a JSON-like value with every suspect string replaced, each one's field appended to `found`."""
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            name = str(key)
            if _suspect(name):
                found.append(f"{where} (key {index})")
                name = f"{REDACTED}.{index}"  # distinct, so two redacted keys do not overwrite each other
            copied[name] = _redacted(item, f"{where}.{name}", found)
        return copied
    if isinstance(value, list | tuple):
        return [_redacted(item, f"{where}[{index}]", found) for index, item in enumerate(value)]
    if isinstance(value, str) and _suspect(value):
        found.append(where)
        return REDACTED
    return value


def find_key_material(text: str) -> str | None:
    """Say what kind of key material `text` seems to hold ("PEM block", "hex run", ...), or None."""
    if _PEM.search(text):
        return "PEM block"
    for match in _HEX_RUN.finditer(text):
        tag = _DIGEST_TAG.search(text, 0, match.start())
        if tag is None or tag.end() != match.start() or len(match.group()) != _DIGEST_LENGTH[tag.group(1)]:
            return "hex run"
    for match in _BASE64_RUN.finditer(text):
        if _looks_random(match.group()):
            return "base64 run"
    return None


def _looks_random(run: str) -> bool:
    # Random base64 mixes cases; names, UIDs and lowercase tokens do not. Padding or a '+' is then decisive. Without
    # them, a digit or '_' must appear too (CamelCase words have none), and a run with '/' must not split into
    # path-sized pieces ("Models/YoloV8/Weights" is a path; random base64 has a '/' every 64 characters or so).
    body = run.rstrip("=")
    if not any(c.isupper() for c in body) or not any(c.islower() for c in body):
        return False
    if body != run or "+" in body:
        return True
    if not any(c.isdigit() or c == "_" for c in body):
        return False
    pieces = body.split("/")
    return len(body) / len(pieces) >= 16 or max(map(len, pieces)) >= 20


def check_safe(value: Any, where: str = "$") -> None:
    """Walk a JSON-like value; raise `KeyMaterialError` naming the first field that looks like key material."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_safe(str(key), f"{where} (a key)")
            check_safe(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_safe(item, f"{where}[{index}]")
    elif isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        kind = find_key_material(text)
        if kind is not None:
            raise errors.KeyMaterialError(f"{where} looks like key material ({kind}); refused to log it")


class RedactingFilter(logging.Filter):
    """A logging filter that replaces any record that looks like key material with a notice.

    Installed on the operator's handlers as the last line of defence: it keeps the record (so the event is not
    silently lost) but drops its text and arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        kind = find_key_material(record.getMessage())
        if kind is None and record.exc_info is not None:
            kind = find_key_material(logging.Formatter().formatException(record.exc_info))
        if kind is not None:
            record.msg = f"[redacted: the log record looked like key material ({kind})]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True
