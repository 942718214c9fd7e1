"""The engine cache on the test bed: a verified engine in MinIO is reused without a build Job, an untrusted one
is built again, and a missing credentials Secret stops the build until it exists. The operator runs as a
subprocess under the chart's RBAC and reads the credentials from its own namespace through the API."""

from __future__ import annotations

import base64
import json
import time

from kestrel.api import keys, spec
from kestrel.manifests import names
from kestrel.reconcilers.engine import cache, engine, storage
from kestrel.security import manifest
from tests.cluster.engine_store_support import StoreBed, credentials_secret, events, signing_pair, store_bed
from tests.cluster.operator_support import (
    condition,
    get_mdep,
    jobs,
    mdep_spec,
    meta,
    name_of,
    required_condition,
    wait_for,
)
from tests.cluster.storage_fixtures import minio_connection
from tests.cluster_fixtures import Cluster

__all__ = ["minio_connection", "store_bed"]  # fixtures, imported for pytest to find


def test_a_stored_engine_is_reused_without_a_build(kube: Cluster, store_bed: StoreBed) -> None:
    namespace = store_bed.namespace
    raw = mdep_spec(namespace)
    key = keys.engine_key(spec.parse(raw))
    kube.create_mdep(namespace, "cams", raw)
    uri = store_bed.publish("cams", key, signing_pair(kube, namespace, "cams"))
    credentials_secret(kube, store_bed.secret, store_bed.connection)
    store_bed.operator.start()

    done = wait_for(
        "Built=True from the cache",
        lambda: (
            (b := get_mdep(kube, namespace, "cams")) and (c := condition(b, "Built")) and c["status"] == "True" and b
        ),
    )

    assert required_condition(done, "Built")["reason"] == engine.CACHED
    assert required_condition(done, "Validated")["status"] == "True"
    assert done["status"]["engine"]["key"] == key and done["status"]["engine"]["uri"] == uri
    assert done["status"]["engine"]["digest"].startswith("sha256:")
    assert done["status"]["revision"]["current"] == key
    # The Triton pods' grant for this engine, owned by the model; no Secret of the namespace holds a credential.
    grant = kube.core.read_namespaced_secret(names.download_grant("cams", key), namespace)
    assert (meta(grant).owner_references or [])[0].name == "cams"
    document = json.loads(base64.b64decode((grant.data or {})["grant.json"]))
    assert document["kind"] == "download" and document["engine"] == f"{namespace}/cams/{key}"
    assert "manifest.json" in document["objects"]
    for secret in kube.core.list_namespaced_secret(namespace).items:
        values = [base64.b64decode(value) for value in (secret.data or {}).values()]
        assert not any(store_bed.connection.secret_key.encode() in value for value in values), name_of(secret)
    time.sleep(3)  # several resync periods: still no Job
    assert jobs(kube, namespace) == []
    assert len(events(kube, namespace, engine.CACHED)) == 1
    assert store_bed.connection.secret_key not in store_bed.operator.log()


def test_an_engine_signed_by_another_key_is_built_again(kube: Cluster, store_bed: StoreBed) -> None:
    namespace = store_bed.namespace
    raw = mdep_spec(namespace)
    key = keys.engine_key(spec.parse(raw))
    kube.create_mdep(namespace, "cams", raw)
    signing_pair(kube, namespace, "cams")
    store_bed.publish("cams", key, manifest.generate_signing_key())
    credentials_secret(kube, store_bed.secret, store_bed.connection)
    store_bed.operator.start()

    job = wait_for("the build Job", lambda: next(iter(jobs(kube, namespace)), None))
    assert name_of(job) == names.build_job("cams", key)
    (rejected,) = wait_for("the Warning Event", lambda: events(kube, namespace, cache.REJECTED))
    assert rejected.type == "Warning" and "not by the trusted key" in rejected.message


def test_a_missing_credentials_secret_holds_the_build_until_it_exists(kube: Cluster, store_bed: StoreBed) -> None:
    namespace = store_bed.namespace
    raw = mdep_spec(namespace)
    store_bed.operator.start()
    kube.create_mdep(namespace, "cams", raw)

    blocked = wait_for(
        "Built=False/StoreCredentialsMissing",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (c := condition(b, "Built"))
            and c["reason"] == storage.MISSING
            and b
        ),
    )
    message = required_condition(blocked, "Built")["message"]
    assert f"kestrel-system/{store_bed.secret}" in message and "create secret generic" in message
    assert required_condition(blocked, "Ready")["reason"] == storage.MISSING
    time.sleep(3)
    assert jobs(kube, namespace) == []
    assert len(events(kube, namespace, storage.MISSING)) == 1

    credentials_secret(kube, store_bed.secret, store_bed.connection)
    (job,) = wait_for("the build Job", lambda: jobs(kube, namespace))
    grant = kube.core.read_namespaced_secret(
        names.upload_grant("cams", (meta(job).annotations or {})["kestrel.dev/engine-key"]), namespace
    )
    assert json.loads(base64.b64decode((grant.data or {})["grant.json"]))["kind"] == "upload"
