"""Garbage collection of stored engines on the test bed: a rollout keeps only what the revisions reference, and
deleting the ModelDeployment (Kopf's finalizer holds it meanwhile) removes its engines from MinIO, no one else's."""

from __future__ import annotations

import dataclasses
import socket
import time

from kestrel.api import crd, keys, spec
from kestrel.reconcilers.engine import garbage
from tests.cluster.engine_store_support import StoreBed, credentials_secret, events, signing_pair, store_bed
from tests.cluster.operator_support import get_mdep, mdep_spec, wait_for
from tests.cluster.storage_fixtures import minio_connection
from tests.cluster_fixtures import Cluster

__all__ = ["minio_connection", "store_bed"]  # fixtures, imported for pytest to find

OLD = "0" * 64


def _gone(kube: Cluster, namespace: str, name: str) -> bool:
    try:
        get_mdep(kube, namespace, name)
    except Exception as error:  # the client raises ApiException(404)
        return getattr(error, "status", None) == 404
    return False


def test_rollout_keeps_the_revisions_and_deletion_removes_the_rest(kube: Cluster, store_bed: StoreBed) -> None:
    namespace = store_bed.namespace
    raw = mdep_spec(namespace)
    key = keys.engine_key(spec.parse(raw))
    kube.create_mdep(namespace, "cams", raw)
    signer = signing_pair(kube, namespace, "cams")
    store_bed.publish("cams", OLD, signer)  # an engine no revision references any more
    store_bed.publish("cams", key, signer)
    neighbour_signer = signing_pair(kube, namespace, "other")
    store_bed.publish("other", key, neighbour_signer)  # another model's engine, never ours to collect
    credentials_secret(kube, store_bed.secret, store_bed.connection)
    store_bed.operator.start()

    wait_for("the unreferenced engine to be collected", lambda: store_bed.keys("cams") == {key}, timeout=60)
    wait_for("the Event", lambda: events(kube, namespace, garbage.COLLECTED))
    assert get_mdep(kube, namespace, "cams")["status"]["revision"]["current"] == key

    kube.custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, "cams")
    wait_for("the ModelDeployment to be gone", lambda: _gone(kube, namespace, "cams"), timeout=60)
    assert store_bed.keys("cams") == set()
    assert store_bed.keys("other") == {key}


def test_an_unreachable_store_delays_deletion_but_never_blocks_it(kube: Cluster, store_bed: StoreBed) -> None:
    namespace = store_bed.namespace
    with socket.socket() as probe:  # a port nothing listens on: every store request is refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    unreachable = dataclasses.replace(store_bed.connection, endpoint=f"http://127.0.0.1:{closed}")
    credentials_secret(kube, store_bed.secret, unreachable)
    store_bed.operator.start()
    kube.create_mdep(namespace, "cams", mdep_spec(namespace))
    wait_for("the cache miss", lambda: events(kube, namespace, "EngineCacheUnavailable"))

    started = time.monotonic()
    kube.custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, "cams")
    wait_for("the ModelDeployment to be gone", lambda: _gone(kube, namespace, "cams"), timeout=150)
    took = time.monotonic() - started
    # Five attempts, ten seconds apart: held for a while, never for ever.
    assert (garbage.DELETE_ATTEMPTS - 1) * garbage.RETRY_DELAY <= took < 150
    (left,) = events(kube, namespace, garbage.LEFT)
    assert left.type == "Warning" and f"{store_bed.store.location.uri}/{namespace}/cams" in left.message
    assert store_bed.connection.secret_key not in left.message
