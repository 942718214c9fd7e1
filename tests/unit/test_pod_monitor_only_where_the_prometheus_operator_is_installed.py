"""A serving pass makes the model's PodMonitor where the cluster has the Prometheus Operator's CRD, and only there:
owned by the model, selecting the pods of both tracks (and of an Argo Rollout) by their labels and the Triton
container's metrics port by its name, labelled with what the setting adds; turned off, it makes none."""

from __future__ import annotations

import dataclasses
from typing import Any

from kestrel import settings as operator_settings
from kestrel.api import spec
from kestrel.manifests import argo, owners, triton
from kestrel.reconcilers import context, installed
from kestrel.reconcilers.serving import serving, workload
from tests.unit import canary_support
from tests.unit.tls_fake_kube import SETTINGS, UID, FakeKube, body

MONITOR = ("monitoring.coreos.com/v1", "PodMonitor", "vision", "cams-triton")
STABLE = ("apps/v1", "Deployment", "vision", "cams-triton")
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podmonitors.monitoring.coreos.com"},
}


def serving_pass(kube: FakeKube, settings: operator_settings.Settings = SETTINGS) -> dict[str, Any]:
    """One serving pass of a model whose validated engine rolls out (its pods' Secrets exist); the model."""
    obj = body({"mode": "disabled"})
    key = canary_support.validated(obj)
    pod = triton.deployment(spec.parse(obj["spec"]), owners.Owner.from_body(obj), settings, key)
    for name in serving.referenced_secrets(pod["spec"]["template"]["spec"]):
        kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "vision"}, "data": {}})
    ctx = context.Context.load(kube, obj, canary_support.T0)
    serving.reconcile(ctx, settings, canary_support.Metrics())
    assert STABLE in kube.objects, "the pass did not roll the engine out"
    return obj


def test_made_where_the_crd_exists_owned_by_the_model() -> None:
    kube = FakeKube()
    kube.put(CRD)
    serving_pass(kube)
    monitor = kube.objects[MONITOR]
    (owner,) = monitor["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("ModelDeployment", "cams", UID, True)
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["interval"]) == ("metrics", SETTINGS.pod_monitor_interval)


def test_selects_the_pods_of_every_track_and_the_triton_metrics_port() -> None:
    kube = FakeKube()
    kube.put(CRD)
    obj = serving_pass(kube)
    selector = kube.objects[MONITOR]["spec"]["selector"]["matchLabels"].items()
    parsed, owner = spec.parse(obj["spec"]), owners.Owner.from_body(obj)
    canary_spec = spec.parse({**obj["spec"], "rollout": {"strategy": "canary", "canary": {"steps": [50, 100]}}})
    templates = [
        kube.objects[STABLE]["spec"]["template"],
        triton.canary_deployment(parsed, owner, SETTINGS, "ab" * 32, replicas=1)["spec"]["template"],
        argo.rollout(canary_spec, owner, SETTINGS, "ab" * 32)["spec"]["template"],
    ]
    for template in templates:
        assert selector <= template["metadata"]["labels"].items()
        (server,) = [c for c in template["spec"]["containers"] if c["name"] == "triton"]
        assert "metrics" in [port["name"] for port in server["ports"]]


def test_not_made_where_the_crd_is_absent() -> None:
    kube = FakeKube()
    serving_pass(kube)
    assert not [key for key in kube.objects if key[1] == "PodMonitor"]


def test_labels_from_the_setting_beside_kestrels_own() -> None:
    kube = FakeKube()
    kube.put(CRD)
    settings = dataclasses.replace(SETTINGS, pod_monitor_labels=(("release", "prometheus"), ("team", "vision")))
    serving_pass(kube, settings)
    found = kube.objects[MONITOR]["metadata"]["labels"]
    assert {"release": "prometheus", "team": "vision"}.items() <= found.items()
    assert found["kestrel.dev/model"] == "cams"
    assert found["app.kubernetes.io/managed-by"] == "kestrel"


def test_turned_off_makes_none_and_does_not_ask_for_the_crd() -> None:
    kube = FakeKube()
    kube.put(CRD)
    serving_pass(kube, dataclasses.replace(SETTINGS, pod_monitor=False))
    assert MONITOR not in kube.objects
    assert installed.ANSWERS.get(workload.POD_MONITOR_CRD) is None


def test_an_operator_installed_later_is_noticed_once_the_answer_expires() -> None:
    kube = FakeKube()
    serving_pass(kube)
    kube.put(CRD)
    installed.ANSWERS.put(workload.POD_MONITOR_CRD, False)  # as remembered within the minute
    serving_pass(kube)
    assert MONITOR not in kube.objects
    installed.ANSWERS.ttl = 0.0  # the minute has passed
    serving_pass(kube)
    assert MONITOR in kube.objects
