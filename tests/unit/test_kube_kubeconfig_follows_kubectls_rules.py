"""kube/kubeconfig.py, how a person's command connects: a kubeconfig named on the command line, else $KUBECONFIG (a
list, merged), else ~/.kube/config; the namespace asked for, else the context's, else `default`."""

from __future__ import annotations

import os
import pathlib

import pytest
import yaml

from kestrel.api import errors
from kestrel.kube import kubeconfig


def write(path: pathlib.Path, server: str, namespace: str | None, current: str = "main") -> pathlib.Path:
    context = {"cluster": "c", "user": "u", **({"namespace": namespace} if namespace else {})}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "main", "context": context},
                    {"name": "other", "context": {**context, "namespace": "other"}},
                ],
                "current-context": current,
            }
        )
    )
    return path


def host(connection: kubeconfig.Connection) -> str:
    return str(connection.kube.api.configuration.host)


def test_the_namespace_is_the_one_asked_for_else_the_contexts_else_default(tmp_path: pathlib.Path) -> None:
    path = str(write(tmp_path / "config", "https://one.example:6443", "vision"))
    env = {"HOME": str(tmp_path)}
    assert kubeconfig.connect(kubeconfig=path, environ=env).namespace == "vision"
    assert kubeconfig.connect(kubeconfig=path, namespace="retail", environ=env).namespace == "retail"
    assert kubeconfig.connect(kubeconfig=path, context="other", environ=env).namespace == "other"
    bare = str(write(tmp_path / "bare", "https://one.example:6443", None))
    assert kubeconfig.connect(kubeconfig=bare, environ=env).namespace == "default"


def test_kubeconfig_lists_are_merged_and_missing_entries_skipped(tmp_path: pathlib.Path) -> None:
    found = write(tmp_path / "second", "https://two.example:6443", "vision")
    env = {"HOME": str(tmp_path), "KUBECONFIG": os.pathsep.join([str(tmp_path / "absent"), str(found)])}
    connection = kubeconfig.connect(environ=env)
    assert (host(connection), connection.namespace) == ("https://two.example:6443", "vision")


def test_home_config_is_the_default_and_a_pod_without_one_is_not_guessed(tmp_path: pathlib.Path) -> None:
    (tmp_path / ".kube").mkdir()
    write(tmp_path / ".kube" / "config", "https://home.example:6443", None)
    assert host(kubeconfig.connect(environ={"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.0.0.1"})) == (
        "https://home.example:6443"  # a kubeconfig wins over the pod's ServiceAccount, as with kubectl
    )
    with pytest.raises(errors.ClusterError, match="No kubeconfig"):
        kubeconfig.connect(environ={"HOME": str(tmp_path / "nowhere")})


def test_an_unknown_context_is_a_cluster_error_naming_it(tmp_path: pathlib.Path) -> None:
    path = str(write(tmp_path / "config", "https://one.example:6443", "vision"))
    with pytest.raises(errors.ClusterError, match="staging"):
        kubeconfig.connect(kubeconfig=path, context="staging", environ={"HOME": str(tmp_path)})
