"""The operator's log format: Kopf's text lines, or one JSON object per line for pipelines that parse, not grep.

A JSON line carries named fields only: time, level, logger, message, the Kubernetes object the line is about (Kopf's
per-object loggers attach its reference) and the traceback of an exception. No other attribute of a record is copied:
Kopf attaches its whole settings object to every per-object record, and a caller's `extra=` could carry anything, a
token included. Standard library only: Kopf's own JSON mode needs python-json-logger and writes every extra field.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Literal

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")
# Where Kopf's per-object loggers put the object's identity on each record (kopf._core.actions.loggers).
KOPF_REFERENCE = "k8s_ref"
REFERENCE_FIELDS = ("apiVersion", "kind", "namespace", "name", "uid")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or traceback are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        reference = getattr(record, KOPF_REFERENCE, None)
        if isinstance(reference, Mapping):
            line["object"] = {key: str(reference[key]) for key in REFERENCE_FIELDS if reference.get(key) is not None}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line)


def use(log_format: Format, logger: logging.Logger | None = None, filters: Sequence[logging.Filter] = ()) -> None:
    """Put `log_format` and `filters` on every handler of `logger` (default: the root, where `kopf.configure` puts
    its own). A handler's filters see every record that reaches it, whichever logger it was logged on."""
    for handler in (logger or logging.getLogger()).handlers:
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
        for each in filters:
            handler.addFilter(each)
