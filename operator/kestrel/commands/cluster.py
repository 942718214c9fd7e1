"""What every command about one ModelDeployment shares: kubectl's connection flags and reading the model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kestrel.api import crd, errors

if TYPE_CHECKING:
    from kestrel.kube import kubeconfig


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the ModelDeployment")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def connect(args: argparse.Namespace) -> kubeconfig.Connection:
    # Imported here: the Kubernetes client costs a second at start-up, which `kestrel load` and the TLS proxy,
    # sidecars that never call the API, should not pay.
    from kestrel.kube import kubeconfig  # noqa: PLC0415

    return kubeconfig.connect(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)


def read_model(connection: kubeconfig.Connection, name: str) -> dict[str, Any]:
    """The ModelDeployment as stored now; NotFoundError naming namespace and name when there is none."""
    found = connection.kube.get_model_deployment(connection.namespace, name)
    if found is None:
        raise errors.NotFoundError(
            f"{crd.KIND} {connection.namespace}/{name} not found (kubectl get {crd.SHORT_NAMES[0]} "
            f"-n {connection.namespace} lists those that exist)"
        )
    return found
