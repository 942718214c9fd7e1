"""Two operator replicas under the chart's RBAC elect one leader on a Lease: the standby reconciles nothing while
the leader lives, takes over within the Lease's bound after the leader is SIGKILLed, and a clean stop hands the
Lease back at once."""

from __future__ import annotations

import json
import pathlib
import re
import time
import urllib.error
from typing import Any

import pytest

from kestrel.kube import lease
from tests.cluster.operator_support import mdep_spec, wait_for
from tests.cluster_fixtures import OPERATOR_NAMESPACE, Operator

pytestmark = pytest.mark.cluster

# The Lease's duration as the standby counts it, one renew period to notice, one for its pass to write status.
FAILOVER_BOUND_S = lease.DURATION + 2 * lease.RENEW + 5


def _lease(kube: Any, name: str) -> dict[str, Any]:
    found = kube.kubectl("get", "lease", name, f"--namespace={OPERATOR_NAMESPACE}", "-o", "json", check=False)
    return json.loads(found.stdout)["spec"] if found.returncode == 0 else {}


def _reconciles(operator: Operator) -> float:
    try:
        text = operator.metrics()
    except (urllib.error.URLError, ConnectionError):
        return -1  # its metrics endpoint is not up yet
    return sum(float(v) for v in re.findall(r"^kestrel_reconciles_total\{[^}]*\} (\S+)$", text, re.MULTILINE))


def _has_status(kube: Any, namespace: str, name: str) -> bool:
    body = kube.custom.get_namespaced_custom_object("kestrel.dev", "v1alpha1", namespace, "modeldeployments", name)
    return bool((body.get("status") or {}).get("conditions"))


def test_a_standby_takes_over_within_the_lease_bound_when_the_leader_is_killed(
    with_crd: Any, operator_kubeconfig: pathlib.Path, namespace: str, tmp_path: pathlib.Path
) -> None:
    kube, name = with_crd, f"kestrel-{namespace}"

    def replica(identity: str) -> Operator:
        env = {"KESTREL_LEADER_LEASE": name, "POD_ID": identity}
        return Operator(kube, operator_kubeconfig, tmp_path / identity, namespace, env)

    leader, standby = replica("replica-a"), replica("replica-b")
    try:
        leader.start()
        wait_for("replica-a to hold the Lease", lambda: _lease(kube, name).get("holderIdentity") == "replica-a")
        standby.start()
        kube.create_mdep(namespace, "one", mdep_spec(namespace))
        wait_for("the leader to reconcile the first model", lambda: _has_status(kube, namespace, "one"), timeout=60)
        wait_for("the standby's metrics", lambda: _reconciles(standby) >= 0, timeout=60)
        assert _reconciles(standby) == 0, "the standby reconciled while the leader held the Lease"
        assert "Waiting for Lease" in standby.log()

        leader.kill()
        killed = time.monotonic()
        kube.create_mdep(namespace, "two", mdep_spec(namespace))
        wait_for(
            "the standby to take over and reconcile the second model",
            lambda: _has_status(kube, namespace, "two"),
            timeout=FAILOVER_BOUND_S + 30,
        )
        took = time.monotonic() - killed
        assert took <= FAILOVER_BOUND_S, f"failover took {took:.1f} s, bound {FAILOVER_BOUND_S:.0f} s"
        spec = _lease(kube, name)
        assert spec["holderIdentity"] == "replica-b" and spec["leaseTransitions"] == 1
        assert _reconciles(standby) > 0

        standby.stop()  # SIGTERM: Kopf stops, the Lease is handed back for the next replica
        assert _lease(kube, name)["holderIdentity"] == ""
        assert "Released Lease" in standby.log()
    finally:
        leader.stop()
        standby.stop()
        kube.kubectl("delete", "lease", name, f"--namespace={OPERATOR_NAMESPACE}", "--ignore-not-found", check=False)
