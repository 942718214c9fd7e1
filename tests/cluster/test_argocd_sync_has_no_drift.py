"""What Argo CD syncs from examples/argocd stays in sync: after the operator reconciles, a re-sync changes nothing.

Argo CD itself is not installable here, so the test does what its sync does with `ServerSideApply=true`:
server-side applies of the kustomized folder, wave by wave, under Argo CD's field manager. The real operator
(under the chart's RBAC) then reconciles the ModelDeployment: Kopf adds its finalizer and annotations, the
operator writes status and children, the API server fills defaults. A server-side diff of the same manifests
(what Argo CD's server-side diff computes) must be empty; a changed manifest must show.

The operator's namespace and cluster-wide names are moved aside (tests/cluster/install_support.py), and the
CRD, shared by every suite on the test bed, is applied as they apply it and left out of the diff: another
session may re-apply it at any moment.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import time
import uuid
from typing import Any

import pytest

from kestrel.api import crd
from kestrel.manifests import names
from tests.cluster import install_support
from tests.cluster.operator_support import get_mdep, wait_for
from tests.cluster_fixtures import Cluster, Operator

pytestmark = pytest.mark.cluster

FOLDER = pathlib.Path(__file__).parents[2] / "examples" / "argocd"
FIELD_MANAGER = "argocd-controller"  # the manager Argo CD's server-side apply writes as
WAVE = "argocd.argoproj.io/sync-wave"
MODEL_NAMESPACE = "kestrel-gitops"


def _wave(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(WAVE, "0"))


def _server_side_diff(kube: Cluster, objects: list[dict[str, Any]]) -> Any:
    return kube.kubectl(
        "diff",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        stdin=install_support.dump(objects),
        check=False,
    )


def _reconciled(kube: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    body = get_mdep(kube, namespace, name)
    status = body.get("status") or {}
    # Status from the reconcilers, then Kopf's finalizer and its record of the handled spec.
    done = (
        status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("conditions")
        and body["metadata"].get("finalizers")
        and "kestrel.dev/last-handled-configuration" in (body["metadata"].get("annotations") or {})
    )
    return body if done else None


def test_sync_then_reconcile_then_resync_shows_no_diff(operator: Operator) -> None:
    kube = operator.kube
    # The folder as Argo CD renders it, moved aside from the operator suites' own install (install_support).
    model_namespace = f"gitops-{uuid.uuid4().hex[:8]}"
    text, operator_namespace, prefix = install_support.isolated(
        kube.kubectl("kustomize", str(FOLDER)).stdout, (MODEL_NAMESPACE, model_namespace)
    )
    crds, objects = install_support.split(text)
    model = next(o for o in objects if o["kind"] == crd.KIND)
    name = model["metadata"]["name"]
    assert model["metadata"]["namespace"] == model_namespace
    try:
        # Wave -1 holds the CRD, which the suites share: applied as they apply it (their manager, no sync-wave
        # annotation), so it keeps one owner and one content; its place in the waves is checked by the unit tests.
        assert all(_wave(o) < 0 for o in crds)
        for shared in crds:
            shared["metadata"].pop("annotations", None)
        install_support.apply_crds(kube, crds)
        for wave, group in itertools.groupby(sorted(objects, key=_wave), key=_wave):
            applied = kube.kubectl(
                "apply",
                "--server-side",
                f"--field-manager={FIELD_MANAGER}",
                "-f",
                "-",
                stdin=install_support.dump(list(group)),
                check=False,
            )
            assert applied.returncode == 0, applied.stderr
            if wave < 0:
                kube.wait_established(crd.CRD_NAME)
            if wave == 0:
                kube.kubectl(
                    "rollout",
                    "status",
                    f"deployment/{prefix}-operator",
                    f"--namespace={operator_namespace}",
                    "--timeout=180s",
                )

        wait_for("the operator to reconcile the model", lambda: _reconciled(kube, model_namespace, name), timeout=90)
        # The operator wrote its children (the signing key first), so it has really acted on the synced spec.
        wait_for(
            "the model's signing key",
            lambda: (
                kube.kubectl(
                    "get", "secret", names.signing_secret(name), f"--namespace={model_namespace}", check=False
                ).returncode
                == 0
            ),
        )
        time.sleep(3)  # a few drift-check passes of the operator (resync every second in the fixture)

        diff = _server_side_diff(kube, objects)
        assert diff.returncode == 0 and not diff.stdout, f"a re-sync would change:\n{diff.stdout}{diff.stderr}"

        # The same check sees a real change: Argo CD would report this model OutOfSync.
        changed = json.loads(json.dumps(objects))
        next(o for o in changed if o["kind"] == crd.KIND)["spec"]["model"]["imgsz"] = 640
        drift = _server_side_diff(kube, changed)
        assert drift.returncode == 1 and "imgsz" in drift.stdout, drift.stdout + drift.stderr
    finally:
        # The model first, while the operator still runs to remove its finalizer; then the namespaces.
        install_support.delete_model(kube, model_namespace, name)
        kube.kubectl("delete", "namespace", model_namespace, "--ignore-not-found", "--wait=false", check=False)
        install_support.cleanup(kube, operator_namespace, prefix)
