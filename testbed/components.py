"""Pinned upstream components of the test bed and where their binaries are cached.

Each component is cached in its own folder, so pinning a new version of one never rebuilds the others.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

KUBERNETES = "v1.34.4"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
HELM = "v3.21.4"

GO_DIR = pathlib.Path(__file__).resolve().parent / "go"


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    version: str
    binaries: tuple[str, ...]

    @property
    def home(self) -> pathlib.Path:
        return cache_root() / f"{self.name}-{self.version}"

    @property
    def bin_dir(self) -> pathlib.Path:
        return self.home / "bin"

    def binary(self, name: str) -> pathlib.Path:
        return self.bin_dir / name

    def is_built(self) -> bool:
        return all(self.binary(b).is_file() for b in self.binaries)


def cache_root() -> pathlib.Path:
    override = os.environ.get("KESTREL_TESTBED_CACHE")
    if override:
        return pathlib.Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(xdg) / "kestrel" / "testbed"


KUBE = Component("kubernetes", KUBERNETES, ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"))
ETCD_SERVER = Component("etcd", ETCD, ("etcd",))
KWOK_CONTROLLER = Component("kwok", KWOK, ("kwok",))
HELM_CLI = Component("helm", HELM, ("helm",))

ALL = (KUBE, ETCD_SERVER, KWOK_CONTROLLER, HELM_CLI)
