"""`-o/--output`: the same data for people (a table or a snippet) or for programs (JSON, YAML)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Literal

import yaml

Format = Literal["text", "json", "yaml"]
FORMATS: tuple[Format, ...] = ("text", "json", "yaml")


def add_option(parser: argparse.ArgumentParser, *, formats: tuple[Format, ...] = FORMATS) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=formats,
        default=formats[0],
        help=f"{formats[0]} (default) or {', '.join(formats[1:])}",
    )


def dump(data: Any, fmt: Format) -> str:
    """`data` as JSON or YAML text, ending in a newline."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False, width=120, allow_unicode=True))
    raise ValueError(f"{fmt} is not a data format")
