"""Third-party CRDs (vendored under fixtures/) installed for one test and removed after it: other suites on the
same test bed expect a cluster without them."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client import exceptions

from tests.cluster.operator_support import wait_for

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def install(kube: Any, names: Iterable[str]) -> None:
    """Apply fixtures/NAME.yaml for each CRD name and wait until each is Established."""
    for name in names:
        kube.kubectl("apply", "--server-side", "--field-manager=kestrel-tests", "-f", str(FIXTURES / f"{name}.yaml"))
        kube.wait_established(name)


def remove(kube: Any, names: Iterable[str]) -> None:
    """Delete the CRDs and wait until the API server no longer has them."""
    extensions = client.ApiextensionsV1Api(kube.api)
    wanted = list(names)
    for name in wanted:
        try:
            extensions.delete_custom_resource_definition(name)
        except exceptions.ApiException as error:
            if error.status != 404:
                raise

    def gone() -> bool:
        try:
            for name in wanted:
                extensions.read_custom_resource_definition(name)
        except exceptions.ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(f"the CRDs {', '.join(wanted)} to go", gone, timeout=60)
