"""docs/benchmarks.md is shared by every benchmark: each one replaces only its own `## Title` section."""

from __future__ import annotations

import pathlib
import re

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace(title: str, section: str, docs: pathlib.Path = DOCS) -> None:
    """Put `section` (which starts with `## {title}`) in place of that section, up to the next second-level heading,
    or append it; the other sections stay as their owners wrote them."""
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    body = section.strip("\n") + "\n\n"
    match = re.search(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    text = text[: match.start()] + body + text[match.end() :] if match else text.rstrip("\n") + "\n\n" + body
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text.rstrip("\n") + "\n")
