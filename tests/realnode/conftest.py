"""The real node's suites: the test bed's control plane plus a kubelet, containerd and runc running real pods.

The node is added to the session's test bed once, and Kestrel's images (built from docker/, cached) are imported
into its containerd. Pods run there only when they tolerate its taint and select it (`realnode.TOLERATION`,
`realnode.NODE_SELECTOR`).
"""

from __future__ import annotations

import pytest

from testbed import install
from tests.cluster_fixtures import Cluster
from tests.realnode.support import RealNode


@pytest.fixture(scope="session")
def real_node(kube: Cluster) -> RealNode:
    kube.bed.up(real_node=True)
    node = kube.bed.real_node()
    assert node is not None
    install.load_images(kube.bed)
    return RealNode(kube=kube, node=node)
