"""The ModelDeployment that owns every object built for it (the operator's settings are kestrel/settings.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kestrel.api import crd


@dataclasses.dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns (and garbage-collects) every object built for it."""

    name: str
    namespace: str
    uid: str
    generation: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        """Read the owner from a ModelDeployment as the API server returns it."""
        metadata = body["metadata"]
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation", 0)),
        )

    def owner_reference(self) -> dict[str, Any]:
        # controller=True lets `kubectl get --show-kind` and the garbage collector name one owner;
        # blockOwnerDeletion keeps a foreground delete of the ModelDeployment waiting for its children.
        return {
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
