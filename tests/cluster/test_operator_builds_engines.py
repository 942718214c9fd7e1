"""The operator against the real API server: one build Job per engine key, results read from the build pod's
termination message, the gate reported in Validated, and all of it visible in status and `kubectl get`.

The build pod runs on a node no kwok manages; the test plays its kubelet and reports the pod's end the way a
kubelet does, through the pod status, so everything else (scheduler, Job controller, operator) is real.
"""

from __future__ import annotations

import time

from kestrel.api import keys, spec
from kestrel.manifests import names
from tests.cluster.operator_support import condition, finish_build_pod, get_mdep, jobs, mdep_spec, report, wait_for


def test_one_job_per_key_across_an_operator_crash_and_a_validated_engine(
    kube, operator, namespace, manual_node
) -> None:
    raw = mdep_spec(namespace)
    kube.create_mdep(namespace, "cams", raw)
    parsed = spec.parse(raw)
    job_name = names.build_job("cams", keys.engine_key(parsed))

    job = wait_for(
        "the build Job", lambda: next((j for j in jobs(kube, namespace) if j.metadata.name == job_name), None)
    )
    assert job.metadata.owner_references[0].kind == "ModelDeployment"
    assert job.spec.template.spec.automount_service_account_token is False
    building = wait_for(
        "Built=False/Building",
        lambda: (
            (c := condition(get_mdep(kube, namespace, "cams"), "Built"))
            and c["reason"] == "Building"
            and get_mdep(kube, namespace, "cams")
        ),
    )
    assert building["status"]["phase"] == "Building"
    assert condition(building, "Ready")["status"] == "False"

    # Crash the operator mid-build and start it again: it finds its Job instead of making another.
    operator.kill()
    operator.start()
    time.sleep(4)  # several resync periods of the new operator
    assert [j.metadata.name for j in jobs(kube, namespace)] == [job_name]

    finish_build_pod(kube, namespace, job_name, manual_node, report(parsed, passed=True, message="mAP50-95 0.805"))
    done = wait_for(
        "Built=True",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (c := condition(b, "Validated"))
            and c["status"] == "True"
            and b
        ),
    )
    assert condition(done, "Built")["status"] == "True"
    assert done["status"]["engine"]["key"] == keys.engine_key(parsed)
    assert done["status"]["engine"]["format"] == "onnx"
    assert done["status"]["validation"]["mapEngine"] == 0.805
    assert done["status"]["validation"]["passed"] is True
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]
    assert done["status"]["revision"]["current"] == keys.engine_key(parsed)
    assert [j.metadata.name for j in jobs(kube, namespace)] == [job_name]
    exported = operator.metrics()  # of the restarted operator, which saw the build finish
    assert 'kestrel_events_total{reason="Passed",type="Normal"} 1.0' in exported
    assert 'kestrel_reconciles_total{result="ok"}' in exported
    assert "Traceback" not in operator.log()
    # No RBAC denial: the chart's role covers every call (a namespace being deleted also refuses writes: not RBAC).
    assert 'forbidden: User "system:serviceaccount:' not in operator.log()


def test_failed_gate_is_reported_with_its_reason_and_an_event(kube, operator, namespace, manual_node) -> None:
    raw = mdep_spec(namespace)
    kube.create_mdep(namespace, "cams", raw)
    parsed = spec.parse(raw)
    job_name = names.build_job("cams", keys.engine_key(parsed))
    wait_for("the build Job", lambda: jobs(kube, namespace))
    finish_build_pod(
        kube,
        namespace,
        job_name,
        manual_node,
        report(parsed, passed=False, reason="AccuracyDrop", message="mAP50-95 dropped 0.070 > maxMapDrop 0.020"),
    )
    failed = wait_for(
        "Validated=False",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (c := condition(b, "Validated"))
            and c["status"] == "False"
            and b
        ),
    )
    validated = condition(failed, "Validated")
    assert validated["reason"] == "AccuracyDrop"
    assert "0.070" in validated["message"]
    assert failed["status"]["phase"] == "Failed"
    assert condition(failed, "Ready")["reason"] == "AccuracyDrop"
    events = wait_for(
        "the AccuracyDrop Event",
        lambda: [
            e
            for e in kube.core.list_namespaced_event(namespace).items
            if e.reason == "AccuracyDrop" and e.involved_object.name == "cams"
        ],
    )
    assert events[0].type == "Warning"


def test_a_crashed_build_is_reported_as_build_failed(kube, operator, namespace, manual_node) -> None:
    raw = mdep_spec(namespace, build={"backoffLimit": 0})
    kube.create_mdep(namespace, "cams", raw)
    job_name = names.build_job("cams", keys.engine_key(spec.parse(raw)))
    wait_for("the build Job", lambda: jobs(kube, namespace))
    finish_build_pod(kube, namespace, job_name, manual_node, "spec.model.source.sha256 mismatch", exit_code=1)
    failed = wait_for(
        "Built=False/BuildFailed",
        lambda: (
            (b := get_mdep(kube, namespace, "cams"))
            and (c := condition(b, "Built"))
            and c["reason"] == "BuildFailed"
            and b
        ),
    )
    assert "sha256 mismatch" in condition(failed, "Built")["message"]
    assert failed["status"]["phase"] == "Failed"
