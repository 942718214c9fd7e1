"""deploy/kestrel.yaml is the chart rendered by deploy/render.sh, never edited by hand."""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.unit.helm_support import ROOT, helm_binary

PLAIN = ROOT / "deploy" / "kestrel.yaml"
SCRIPT = ROOT / "deploy" / "render.sh"


def _rendered() -> str:
    done = subprocess.run(
        [str(SCRIPT)], capture_output=True, text=True, check=False, env={**os.environ, "HELM": str(helm_binary())}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_committed_plain_manifests_match_the_chart() -> None:
    assert PLAIN.read_text() == _rendered(), "deploy/kestrel.yaml is stale: run `make deploy` and commit the result"


def test_plain_manifests_are_complete_for_kubectl_apply() -> None:
    objects = [o for o in yaml.safe_load_all(PLAIN.read_text()) if o]
    kinds = [o["kind"] for o in objects]
    # The CRD and the namespace come first: `kubectl apply -f` creates in file order.
    assert kinds[:2] == ["CustomResourceDefinition", "Namespace"]
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"} <= set(kinds)
    namespaced = [
        o
        for o in objects
        if o["kind"] not in ("CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding")
    ]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"kestrel-system"}
    crd = objects[0]
    assert crd["metadata"]["name"] == "modeldeployments.kestrel.dev"
    assert (ROOT / "crds" / "modeldeployments.kestrel.dev.yaml").read_text().split("\n", 1)[1] in PLAIN.read_text()
