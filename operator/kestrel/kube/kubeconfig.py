"""How a person's command (`kestrel status`, `kubectl kestrel canary`) reaches the API server: kubectl's rules.

A kubeconfig named on the command line, else $KUBECONFIG (a list of files, merged), else ~/.kube/config; only when
none of those exists, the pod's ServiceAccount. The namespace is the one asked for, else the context's, else the
pod's own (in a pod), else `default`. The operator itself connects with `client.Kube.connect`, which prefers its
ServiceAccount.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping

from kubernetes import client as kubernetes_client
from kubernetes import config

from kestrel.api import errors
from kestrel.kube import client

POD_NAMESPACE_FILE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# A person's writes (a canary request) show in managedFields under this name, not as the operator's.
FIELD_MANAGER = "kestrel-cli"


@dataclasses.dataclass(frozen=True)
class Connection:
    kube: client.Kube
    namespace: str


def _kubeconfig(explicit: str | None, environ: Mapping[str, str]) -> str | None:
    """The kubeconfig file(s) to read, or None when there are none (in a pod: use its ServiceAccount)."""
    if explicit:
        return explicit
    if environ.get("KUBECONFIG"):
        paths = [path for path in environ["KUBECONFIG"].split(os.pathsep) if path]
        if any(pathlib.Path(path).expanduser().is_file() for path in paths):
            return os.pathsep.join(paths)
    default = pathlib.Path(environ.get("HOME", "~"), ".kube", "config").expanduser()
    return str(default) if default.is_file() else None


def _context_namespace(kubeconfig: str, context: str | None) -> str | None:
    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((found for found in contexts if found.get("name") == context), None) if context else current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def connect(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Connection:
    """A client as kubectl would configure it; ClusterError saying what is missing when it cannot."""
    configuration = kubernetes_client.Configuration()
    found = _kubeconfig(kubeconfig, environ)
    try:
        if found is not None:
            config.load_kube_config(config_file=found, context=context, client_configuration=configuration)
            namespace = namespace or _context_namespace(found, context)
        elif environ.get("KUBERNETES_SERVICE_HOST") and context is None:
            config.load_incluster_config(client_configuration=configuration)
            if namespace is None and POD_NAMESPACE_FILE.is_file():
                namespace = POD_NAMESPACE_FILE.read_text().strip() or None
        else:
            raise errors.ClusterError(
                "No kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config"
                + (f" (context {context!r} was asked for)" if context else "")
            )
    except config.ConfigException as error:
        raise errors.ClusterError(f"Cannot use the kubeconfig {found or '(in-cluster)'}: {error}") from error
    kube = client.Kube(kubernetes_client.ApiClient(configuration), field_manager=FIELD_MANAGER)
    return Connection(kube, namespace or "default")
