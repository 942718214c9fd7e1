"""What a container gets from its pod to reach something: volumes, their mounts, and options that point at them.

One value for both command styles: the loader takes the options as flags (`--kek-dir /…`), the build Job as
`KESTREL_*` environment variables, which `kestrel build` can read without a flag for each of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Files:
    volumes: tuple[dict[str, Any], ...] = ()
    mounts: tuple[dict[str, Any], ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # (option name, value), in order

    def __add__(self, other: Files) -> Files:
        return Files(self.volumes + other.volumes, self.mounts + other.mounts, self.options + other.options)

    def flags(self) -> list[str]:
        return [part for name, value in self.options for part in (f"--{name}", value)]

    def env(self) -> list[dict[str, str]]:
        return [{"name": "KESTREL_" + name.upper().replace("-", "_"), "value": value} for name, value in self.options]


def total(parts: tuple[Files, ...] | list[Files]) -> Files:
    combined = Files()
    for part in parts:
        combined += part
    return combined
