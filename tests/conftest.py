"""Suite-wide wiring: markers by folder, and the real control plane for the suites that need it."""

from __future__ import annotations

import pathlib

import pytest

# The test bed's fixtures, for every suite below (they start nothing until a test asks for them).
from tests.cluster.kubelet_fixtures import process_kubelet  # noqa: F401
from tests.cluster_fixtures import (  # noqa: F401
    kube,
    manual_node,
    namespace,
    operator,
    operator_kubeconfig,
    pod_namespace,
    shared_namespace,
    with_crd,
)

HERE = pathlib.Path(__file__).parent
FOLDER_MARKERS = {
    "cluster": ("cluster",),
    "e2e": ("cluster", "slow"),
    "engine": ("slow",),
    "realnode": ("cluster", "slow", "realnode"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = pathlib.Path(str(item.fspath)).relative_to(HERE)
        for marker in FOLDER_MARKERS.get(relative.parts[0], ()):
            item.add_marker(marker)
