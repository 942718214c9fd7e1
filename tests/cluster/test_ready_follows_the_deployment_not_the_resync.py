"""Owned Deployments are watched: a model reports Ready within seconds of its pods becoming ready, and a hand
edit of its Deployment is undone at once, with the drift timer ten minutes away.

The engine is a cache hit (published beforehand, as in test_engine_cache_reuses_stored_engines); the pods run on
a node no kwok manages, and the test plays its kubelet. Serving checks are off: these pods run no Triton.
"""

from __future__ import annotations

import time

from kubernetes import client

from kestrel.api import keys, spec
from tests.cluster.engine_store_support import StoreBed, credentials_secret, signing_pair, store_bed
from tests.cluster.operator_support import (
    condition,
    get_mdep,
    make_pods_ready,
    mdep_spec,
    name_of,
    required_condition,
    wait_for,
)
from tests.cluster.storage_fixtures import minio_connection
from tests.cluster_fixtures import Cluster

__all__ = ["minio_connection", "store_bed"]  # fixtures, imported for pytest to find

PROMPT_S = 10.0  # far below the resync below: only the Deployment watch can explain a report this fast


def test_ready_and_drift_follow_the_deployment_at_once(kube: Cluster, store_bed: StoreBed, manual_node: str) -> None:
    namespace = store_bed.namespace
    raw = mdep_spec(namespace)
    key = keys.engine_key(spec.parse(raw))
    kube.create_mdep(namespace, "cams", raw)
    store_bed.publish("cams", key, signing_pair(kube, namespace, "cams"))
    credentials_secret(kube, store_bed.secret, store_bed.connection)
    store_bed.operator.env.update({"KESTREL_RESYNC_SECONDS": "600", "KESTREL_SERVING_CHECKS": "false"})
    store_bed.operator.start()

    wait_for(
        "the Triton pod on the test's node",
        lambda: any(
            p.spec is not None and p.spec.node_name == manual_node
            for p in kube.core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=triton").items
        ),
    )
    time.sleep(3)  # past the timer's first tick (1 s after the create): only a watch event is left to act on
    before = get_mdep(kube, namespace, "cams")
    assert required_condition(before, "Available")["status"] == "False"
    assert required_condition(before, "Ready")["status"] == "False"

    started = time.monotonic()
    wait_for("the pod Ready", lambda: make_pods_ready(kube, namespace, key))
    ready = wait_for(
        "Ready=True",
        lambda: (
            (b := get_mdep(kube, namespace, "cams")) and (c := condition(b, "Ready")) and c["status"] == "True" and b
        ),
        timeout=PROMPT_S,
    )
    assert time.monotonic() - started < PROMPT_S
    assert ready["status"]["readyReplicas"] == 1

    # Someone scales the Deployment by hand: the watch sees the new generation, the owner's pass applies it back.
    apps = client.AppsV1Api(kube.api)
    (found,) = apps.list_namespaced_deployment(namespace, label_selector="kestrel.dev/model=cams").items
    deployment = name_of(found)
    apps.patch_namespaced_deployment(deployment, namespace, {"spec": {"replicas": 3}})
    wait_for(
        "the Deployment back at 1 replica",
        lambda: apps.read_namespaced_deployment(deployment, namespace).spec.replicas == 1,
        timeout=PROMPT_S,
    )
    assert "Did not pass over" not in store_bed.operator.log()
