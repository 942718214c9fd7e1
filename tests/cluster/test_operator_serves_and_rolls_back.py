"""From a validated engine to serving pods, and back to the previous revision when a new one never gets ready.

As in test_operator_builds_engines, the pods run on a node no kwok manages and the test plays its kubelet:
it finishes build pods and marks Triton pods Ready (or leaves them unready) through the pod status API.
"""

from __future__ import annotations

import json

from kestrel.manifests import names
from kestrel.security import audit
from tests.cluster.operator_support import (
    build,
    condition,
    get_mdep,
    make_pods_ready,
    mdep_spec,
    name_of,
    required_condition,
    wait_for,
)
from tests.cluster_fixtures import Cluster, Operator


def test_validated_engine_is_served_then_a_bad_revision_is_rolled_back(
    kube: Cluster, operator: Operator, namespace: str, manual_node: str
) -> None:
    raw = {
        **mdep_spec(namespace),
        "rollout": {"progressDeadlineSeconds": 30},
        "security": {"access": {"allowedServiceAccounts": [f"{namespace}/camera-app"]}},
    }
    kube.create_mdep(namespace, "cams", raw)
    first = build(kube, namespace, raw, manual_node)

    # The operator made the keys and certificate the pods need, then the workload.
    secrets = {name_of(s) for s in kube.core.list_namespaced_secret(namespace).items}
    assert {names.signing_secret("cams"), names.tls_secret("cams"), names.api_key_secret("cams")} <= secrets
    wait_for("the first revision's pods", lambda: make_pods_ready(kube, namespace, first))
    ready = wait_for(
        "Ready=True",
        lambda: (
            (b := get_mdep(kube, namespace, "cams")) and (c := condition(b, "Ready")) and c["status"] == "True" and b
        ),
        timeout=60,
    )
    assert ready["status"]["phase"] == "Ready"
    assert ready["status"]["revision"]["current"] == first
    assert ready["status"]["readyReplicas"] == 1
    assert ready["status"]["endpoints"]["grpc"] == f"{names.service('cams')}.{namespace}.svc:8001"
    assert required_condition(ready, "CertificateReady")["status"] == "True"
    # Only the allowed ServiceAccount may read the API key; the NetworkPolicy fences the pods.
    secret = f"secret/{names.api_key_secret('cams')}"
    allowed = kube.kubectl(
        "auth",
        "can-i",
        "get",
        secret,
        f"--namespace={namespace}",
        f"--as=system:serviceaccount:{namespace}:camera-app",
        check=False,
    )
    other = kube.kubectl(
        "auth",
        "can-i",
        "get",
        secret,
        f"--namespace={namespace}",
        f"--as=system:serviceaccount:{namespace}:default",
        check=False,
    )
    assert (allowed.stdout.strip(), other.stdout.strip()) == ("yes", "no")
    assert required_condition(ready, "AccessConfigured")["status"] == "True"
    assert (
        kube.kubectl("get", "networkpolicy", names.network_policy("cams"), f"--namespace={namespace}").returncode == 0
    )
    columns = kube.kubectl("get", "mdep", "cams", f"--namespace={namespace}", "--no-headers").stdout.split()
    assert columns[1:6] == ["True", "onnx", "fp32", "1", f"{names.service('cams')}.{namespace}.svc:8001"]

    # A new spec builds a new engine; its pods never become ready, so the operator goes back to the first.
    raw["engine"] = {**raw["engine"], "opset": 17}
    kube.custom.patch_namespaced_custom_object(
        "kestrel.dev", "v1alpha1", namespace, "modeldeployments", "cams", {"spec": {"engine": {"opset": 17}}}
    )
    second = build(kube, namespace, raw, manual_node)
    assert second != first
    rolling = wait_for(
        "the rollout of the second engine",
        lambda: (
            (b := get_mdep(kube, namespace, "cams")) and b["status"].get("revision", {}).get("current") == second and b
        ),
    )
    assert rolling["status"]["revision"]["previous"] == first
    assert required_condition(rolling, "Available")["status"] == "True"  # the first revision's pod keeps serving

    back = wait_for(
        "the rollback",
        lambda: (
            (b := get_mdep(kube, namespace, "cams")) and (c := condition(b, "Degraded")) and c["status"] == "True" and b
        ),
        timeout=90,
    )
    assert required_condition(back, "Degraded")["reason"] == "RolledBack"
    assert back["status"]["revision"] == {"current": first, "failed": second}
    assert back["status"]["phase"] == "Degraded"
    events = [e.reason for e in kube.core.list_namespaced_event(namespace).items if e.involved_object.name == "cams"]
    assert "RolledBack" in events
    # Every change left one audit line naming who changed the spec, and no log line holds key material.
    log = operator.log()
    audited = [json.loads(line[line.index("{") :]) for line in log.splitlines() if '"audit":' in line]
    changes = {record["change"] for record in audited}
    assert {"spec", "engine", "revision", "certificate", "key", "access"} <= changes
    spec_changes = [r for r in audited if r["change"] == "spec" and r["old"]]
    assert spec_changes and spec_changes[0]["fieldManagers"]
    assert "SpecChanged" in events
    assert audit.find_key_material(log) is None
    assert "Refused an audit line" not in log
    # The first revision is what the Deployment runs again.
    deployment = kube.kubectl(
        "get",
        "deployment",
        names.triton("cams"),
        f"--namespace={namespace}",
        "-o",
        "jsonpath={.spec.template.metadata.labels.kestrel\\.dev/engine-key}",
    ).stdout
    assert first.startswith(deployment)
