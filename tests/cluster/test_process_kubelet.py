"""The process kubelet runs pods bound to `local-0` as local processes and reports them like a kubelet."""

from __future__ import annotations

import base64
import datetime
import json
import os
import pathlib
import textwrap
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from testbed import kubelet_containers, kubelet_volumes, triton
from testbed.kubelet import ProcessKubelet
from testbed.kubelet_api import Api
from testbed.kubelet_pods import PORTS_ANNOTATION
from testbed.ports import free_port
from tests.cluster.kubelet_fixtures import NODE, local_pod, python, wait_for

Body = dict[str, Any]


@pytest.fixture
def api(kube: Any, process_kubelet: ProcessKubelet) -> Api:
    return Api(kube.api)


def _pod(api: Api, namespace: str, name: str) -> Body | None:
    return api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


def _create(api: Api, namespace: str, pod: Body) -> Body:
    created = api.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=pod)
    assert created is not None
    return created


def _phase(api: Api, namespace: str, name: str, *phases: str) -> Body | None:
    pod = _pod(api, namespace, name)
    return pod if pod and pod.get("status", {}).get("phase") in phases else None


def _terminated(pod: Body) -> Body:
    state: Body = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return state


def _ready(pod: Body | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_mount_paths_are_translated_by_prefix_in_arguments_and_values(tmp_path: pathlib.Path) -> None:
    mounts = kubelet_volumes.Mounts({"/models": tmp_path / "m", "/etc/kestrel/tls": tmp_path / "tls"})
    assert mounts.translate("/models") == f"{tmp_path}/m"
    assert mounts.translate("--model-repository=/models/x") == f"--model-repository={tmp_path}/m/x"
    assert mounts.translate("/etc/kestrel/tls/tls.crt:/models") == f"{tmp_path}/tls/tls.crt:{tmp_path}/m"
    assert mounts.translate("file:///models/a") == f"file://{tmp_path}/m/a"
    # Not a mount: a longer name, a path inside a URI's authority, a path in the middle of text.
    for untouched in ("/modelsx", "pvc://models/a", "s3://bucket/models", "open('/models')"):
        assert mounts.translate(untouched) == untouched
    assert kubelet_volumes.expand("$(A)/b $$(A) $(MISSING)", {"A": "/x"}) == "/x/b $(A) $(MISSING)"


def test_a_tls_proxy_listens_on_its_pods_own_local_ports_and_relays_to_that_pods_triton() -> None:
    args = ["kestrel", "tls-proxy", "--health-listen=0.0.0.0:8081", "--target=127.0.0.1:8000", "--cert=/c"]
    first: dict[int, int] = {}
    argv, listening = kubelet_containers._local_tls_proxy([*args, "--listen=0.0.0.0:8443"], first)
    assert set(listening) == {8081, 8443} and set(first) == {8000, 8081, 8443}
    assert f"--target=127.0.0.1:{first[8000]}" in argv and f"--listen=127.0.0.1:{first[8443]}" in argv
    assert "--cert=/c" in argv
    second: dict[int, int] = {}
    kubelet_containers._local_tls_proxy(args, second)
    assert second[8081] != first[8081] and second[8000] != first[8000]


def test_a_folder_holding_only_mounts_is_mirrored_with_links(tmp_path: pathlib.Path) -> None:
    claim = tmp_path / "claim"
    claim.mkdir()
    (claim / "engine.bin").write_text("engine")
    table = {"/mnt/pvc/store": claim, "/mnt/pvc/store/inner": tmp_path / "inner"}
    mounts = kubelet_volumes.Mounts(table, tmp_path / "rootfs")
    assert sorted(p.name for p in claim.iterdir()) == ["engine.bin"]  # no link planted in a volume
    root = mounts.translate("/mnt/pvc")
    assert root == f"{tmp_path}/rootfs/mnt/pvc"
    assert (pathlib.Path(root) / "store" / "engine.bin").read_text() == "engine"
    # Below such a folder, only the mounts themselves are the container's.
    assert mounts.translate("/mnt/pvc/other") == "/mnt/pvc/other"
    assert mounts.translate("/mnt") == f"{tmp_path}/rootfs/mnt"


def test_host_paths_are_refused(tmp_path: pathlib.Path) -> None:
    pod = {
        "metadata": {"uid": "u", "namespace": "n", "name": "p"},
        "spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
    }
    with pytest.raises(kubelet_volumes.RefusedError, match="hostPath is refused"):
        kubelet_volumes.PodLayout(tmp_path, pod).materialise(Api(None))  # type: ignore[arg-type]  # refused before any API call


def test_the_node_is_ready_with_a_fresh_lease(api: Api) -> None:
    node = api.get(f"/api/v1/nodes/{NODE}")
    assert node is not None
    assert node["metadata"]["labels"]["kestrel.dev/local"] == "true"
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])

    def renew_time() -> datetime.datetime:
        lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")
        assert lease is not None and lease["spec"]["holderIdentity"] == NODE
        return datetime.datetime.fromisoformat(lease["spec"]["renewTime"])

    first = renew_time()
    assert datetime.datetime.now(datetime.UTC) - first < datetime.timedelta(seconds=10)
    wait_for(lambda: renew_time() > first, 10, "the lease to be renewed")


def test_a_kestrel_job_completes(api: Api, pod_namespace: str) -> None:
    container = {
        "name": "build",
        "image": "registry.example.com/kestrel/kestrel-builder:0.1.0-gpu",
        "command": ["kestrel"],
        "args": ["render", "crd"],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "render"},
        "spec": {"backoffLimit": 0, "template": {"spec": local_pod("unused", [container])["spec"]}},
    }
    began = time.monotonic()
    api.request("POST", f"/apis/batch/v1/namespaces/{pod_namespace}/jobs", body=job)

    def complete() -> bool:
        status = (api.get(f"/apis/batch/v1/namespaces/{pod_namespace}/jobs/render") or {}).get("status", {})
        return bool(status.get("succeeded") == 1)

    wait_for(complete, 60, "the Job to succeed")
    print(f"kestrel Job completed in {time.monotonic() - began:.1f}s")
    pods = api.get(f"/api/v1/namespaces/{pod_namespace}/pods?labelSelector=job-name%3Drender") or {}
    (pod,) = pods["items"]
    assert pod["spec"]["nodeName"] == NODE
    assert pod["status"]["phase"] == "Succeeded"
    assert _terminated(pod)["exitCode"] == 0 and _terminated(pod)["reason"] == "Completed"


def test_volumes_env_and_the_termination_message_reach_the_process(api: Api, pod_namespace: str) -> None:
    namespace = pod_namespace
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "stringData": {"token": "s3cr3t"}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting"}, "data": {"text": "hello"}}
    api.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=secret)
    api.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=config)
    code = textwrap.dedent("""
        import os, pathlib, sys
        greeting = pathlib.Path(sys.argv[2]).read_text()
        pathlib.Path(os.environ["WORK"], "out.txt").write_text("scratch")
        token = os.environ["TOKEN"]
        pathlib.Path(sys.argv[1]).write_text(f"{greeting} {len(token)} {os.environ['WHERE'].endswith('/out.txt')}")
    """)
    container = python(
        "report",
        code,
        # Mount paths are translated in arguments and environment values, not inside program text.
        args=["/results/message", "/etc/greeting/text"],
        env=[
            {"name": "WORK", "value": "/work"},
            {"name": "WHERE", "value": "$(WORK)/out.txt"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}},
        ],
        volumeMounts=[
            {"name": "greeting", "mountPath": "/etc/greeting"},
            {"name": "work", "mountPath": "/work"},
            {"name": "results", "mountPath": "/results"},
        ],
        terminationMessagePath="/results/message",
    )
    volumes = [
        {"name": "greeting", "configMap": {"name": "greeting"}},
        {"name": "work", "emptyDir": {}},
        {"name": "results", "emptyDir": {"medium": "Memory"}},
    ]
    _create(api, namespace, local_pod("report", [container], volumes=volumes))
    pod = wait_for(lambda: _phase(api, namespace, "report", "Succeeded", "Failed"), 60, "the pod to finish")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]["containerStatuses"]
    assert _terminated(pod)["message"] == "hello 6 True"
    # A finished pod's volumes go, the memory-backed one (under /dev/shm) included.
    tmpfs = f"kestrel-kubelet-{pod['metadata']['uid']}-*"
    wait_for(lambda: not list(pathlib.Path("/dev/shm").glob(tmpfs)), 10, "the pod's tmpfs volume to be removed")


def test_init_containers_run_first_and_share_the_pods_volumes(api: Api, pod_namespace: str) -> None:
    shared = [{"name": "shared", "mountPath": "/shared"}]
    write = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('fetched')"
    read = "import pathlib, sys; pathlib.Path(sys.argv[2]).write_text(pathlib.Path(sys.argv[1]).read_text())"
    pod = local_pod(
        "init",
        [python("serve", read, args=["/shared/model", "/dev/termination-log"], volumeMounts=shared)],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )
    pod["spec"]["initContainers"] = [python("load", write, args=["/shared/model"], volumeMounts=shared)]
    _create(api, pod_namespace, pod)
    done = wait_for(lambda: _phase(api, pod_namespace, "init", "Succeeded", "Failed"), 60, "the pod to finish")
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert _terminated(done)["message"] == "fetched"


def test_a_native_sidecar_serves_the_main_container_and_stops_after_it(api: Api, pod_namespace: str) -> None:
    port = free_port()
    serve = (
        "import http.server as h; "
        f"h.ThreadingHTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler).serve_forever()"
    )
    probe = {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 30}
    sidecar = python("proxy", serve, restartPolicy="Always", startupProbe=probe)
    fetch = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=5).read()"
    pod = local_pod("sidecar", [python("client", fetch)])
    pod["spec"]["initContainers"] = [sidecar]
    _create(api, pod_namespace, pod)
    done = wait_for(lambda: _phase(api, pod_namespace, "sidecar", "Succeeded", "Failed"), 60, "the pod to finish")
    assert done["status"]["phase"] == "Succeeded", done["status"]["containerStatuses"]
    wait_for(lambda: triton.http_status(f"http://127.0.0.1:{port}/") == 0, 15, "the sidecar to stop")


def test_a_claim_bound_to_a_host_path_volume_is_that_folder(
    api: Api, pod_namespace: str, tmp_path: pathlib.Path
) -> None:
    pv_name = f"store-{pod_namespace}"
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "hostPath": {"path": str(tmp_path)},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "store"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "volumeName": pv_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    api.request("POST", "/api/v1/persistentvolumes", body=pv)
    try:
        api.request("POST", f"/api/v1/namespaces/{pod_namespace}/persistentvolumeclaims", body=claim)
        write = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('engine')"
        container = python(
            "save", write, args=["/store/engine.bin"], volumeMounts=[{"name": "s", "mountPath": "/store"}]
        )
        volumes = [{"name": "s", "persistentVolumeClaim": {"claimName": "store"}}]
        _create(api, pod_namespace, local_pod("save", [container], volumes=volumes))
        done = wait_for(lambda: _phase(api, pod_namespace, "save", "Succeeded", "Failed"), 60, "the pod to finish")
        assert done["status"]["phase"] == "Succeeded"
        assert (tmp_path / "engine.bin").read_text() == "engine"
    finally:
        api.request("DELETE", f"/api/v1/persistentvolumes/{pv_name}", missing_ok=True)


def test_a_missing_secret_holds_the_container_until_it_exists(api: Api, pod_namespace: str) -> None:
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "late", "key": "key"}}}]
    _create(api, pod_namespace, local_pod("late", [python("late", "pass", env=env)]))

    def config_error() -> bool:
        statuses = ((_pod(api, pod_namespace, "late") or {}).get("status") or {}).get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting", {})
        return bool(waiting.get("reason") == "CreateContainerConfigError" and "late" in waiting.get("message", ""))

    wait_for(config_error, 30, "CreateContainerConfigError naming the Secret")
    assert _phase(api, pod_namespace, "late", "Pending")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late"}, "stringData": {"key": "v"}}
    api.request("POST", f"/api/v1/namespaces/{pod_namespace}/secrets", body=secret)
    wait_for(lambda: _phase(api, pod_namespace, "late", "Succeeded"), 30, "the pod to run once the Secret exists")


def test_a_failing_command_fails_the_pod_with_its_exit_code_and_log(
    api: Api, pod_namespace: str, process_kubelet: ProcessKubelet
) -> None:
    code = "import sys; print('bad input: no such model', file=sys.stderr); sys.exit(3)"
    container = python("fail", code, terminationMessagePolicy="FallbackToLogsOnError")
    _create(api, pod_namespace, local_pod("fail", [container]))
    pod = wait_for(lambda: _phase(api, pod_namespace, "fail", "Succeeded", "Failed"), 60, "the pod to finish")
    assert pod["status"]["phase"] == "Failed"
    assert _terminated(pod)["exitCode"] == 3
    assert "bad input: no such model" in _terminated(pod)["message"]
    (log,) = process_kubelet.log_dir.glob(f"{pod_namespace}_fail_*/fail.log")
    assert "bad input: no such model" in log.read_text()


def test_an_image_without_a_local_program_fails_the_pod_clearly(api: Api, pod_namespace: str) -> None:
    container = {"name": "shell", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}
    _create(api, pod_namespace, local_pod("busybox", [container]))
    pod = wait_for(lambda: _phase(api, pod_namespace, "busybox", "Failed"), 30, "the pod to fail")
    assert "busybox:1.36" in pod["status"]["message"] and "no local program" in pod["status"]["message"]


def test_a_crashing_container_restarts_with_back_off(api: Api, pod_namespace: str) -> None:
    _create(api, pod_namespace, local_pod("crash", [python("crash", "raise SystemExit(1)")], restart_policy="Always"))

    def restarted() -> Body | None:
        pod = _pod(api, pod_namespace, "crash") or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 1 else None

    status = wait_for(restarted, 30, "a restart")
    assert status["lastState"]["terminated"]["exitCode"] == 1


def test_ready_only_once_the_readiness_endpoint_answers(api: Api, pod_namespace: str) -> None:
    port = free_port()
    # Serves only after 3 s: the pod must be Running but not Ready until then.
    code = (
        "import http.server, time; time.sleep(3); "
        f"http.server.ThreadingHTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    container = python(
        "web",
        code,
        ports=[{"name": "http", "containerPort": port}],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    )
    began = time.monotonic()
    _create(api, pod_namespace, local_pod("web", [container], restart_policy="Always"))
    running = wait_for(lambda: _phase(api, pod_namespace, "web", "Running"), 30, "the pod to run")
    print(f"pod Running {time.monotonic() - began:.2f}s after creation")
    assert not _ready(running)
    assert triton.http_status(f"http://127.0.0.1:{port}/") == 0
    wait_for(lambda: _ready(_pod(api, pod_namespace, "web")), 30, "the pod to be Ready")
    print(f"pod Ready {time.monotonic() - began:.2f}s after creation")
    assert triton.http_status(f"http://127.0.0.1:{port}/") == 200


def test_deleting_a_running_pod_kills_its_process_and_removes_the_pod(api: Api, pod_namespace: str) -> None:
    _create(api, pod_namespace, local_pod("sleeper", [python("sleep", "import time; time.sleep(600)")], grace=5))
    pod = wait_for(lambda: _phase(api, pod_namespace, "sleeper", "Running"), 30, "the pod to run")
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("process://"))
    os.kill(pid, 0)  # alive
    began = time.monotonic()
    api.request("DELETE", f"/api/v1/namespaces/{pod_namespace}/pods/sleeper")
    wait_for(lambda: _pod(api, pod_namespace, "sleeper") is None, 20, "the pod to disappear")
    print(f"pod gone {time.monotonic() - began:.2f}s after deletion")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow
@pytest.mark.skipif(not triton.available(), reason="nvidia-pytriton (tritonserver) is not installed")
def test_a_triton_pod_serves_on_its_published_ports(api: Api, pod_namespace: str) -> None:
    model = textwrap.dedent("""
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def execute(self, requests):
                out = []
                for r in requests:
                    x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
                    out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
                return out
    """)
    config = """name: "double"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
    repository = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "models"}}
    repository["binaryData"] = {
        "model.py": base64.b64encode(model.encode()).decode(),
        "config.pbtxt": base64.b64encode(config.encode()).decode(),
    }
    api.request("POST", f"/api/v1/namespaces/{pod_namespace}/configmaps", body=repository)
    items = [{"key": "config.pbtxt", "path": "double/config.pbtxt"}, {"key": "model.py", "path": "double/1/model.py"}]
    container = {
        "name": "triton",
        "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
        "command": ["tritonserver"],
        "args": [
            "--model-repository=/models",
            "--model-control-mode=explicit",
            "--load-model=double",
            "--http-address=0.0.0.0",
            "--http-port=8000",
            "--grpc-port=8001",
            "--metrics-port=8002",
            # As the operator renders it: the key comes from a Secret through the kubelet's $(VAR) expansion.
            "--http-restricted-api=inference:kestrel-api-key=$(KESTREL_API_KEY)",
        ],
        "env": [{"name": "KESTREL_API_KEY", "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "api-key"}}}],
        "ports": [{"name": "http", "containerPort": 8000}, {"name": "grpc", "containerPort": 8001}],
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 2},
        "readinessProbe": {"httpGet": {"path": "/v2/models/double/ready", "port": "http"}, "periodSeconds": 1},
        "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
        "volumeMounts": [{"name": "models", "mountPath": "/models"}, {"name": "shm", "mountPath": "/dev/shm"}],
    }
    volumes = [
        {"name": "models", "configMap": {"name": "models", "items": items}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
    ]
    key = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-key"}, "stringData": {"api-key": "k3y"}}
    api.request("POST", f"/api/v1/namespaces/{pod_namespace}/secrets", body=key)
    began = time.monotonic()
    _create(api, pod_namespace, local_pod("triton", [container], restart_policy="Always", volumes=volumes, grace=15))
    wait_for(lambda: _ready(_pod(api, pod_namespace, "triton")), 90, "Triton to be Ready")
    print(f"Triton pod Ready {time.monotonic() - began:.2f}s after creation")
    pod = _pod(api, pod_namespace, "triton")
    assert pod is not None
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    ports = json.loads(pod["metadata"]["annotations"][PORTS_ANNOTATION])
    assert ports["8000"] != 8000
    request = {"inputs": [{"name": "X", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0, 3.5]}]}

    def infer(headers: dict[str, str]) -> Any:
        url = f"http://127.0.0.1:{ports['8000']}/v2/models/double/infer"
        body = json.dumps(request).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as answer:
            return json.loads(answer.read())

    assert infer({"kestrel-api-key": "k3y"})["outputs"][0]["data"] == [2.0, 4.0, 7.0]
    with pytest.raises(urllib.error.HTTPError):
        infer({})
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("process://"))
    regions = triton.shm_regions(pid)
    api.request("DELETE", f"/api/v1/namespaces/{pod_namespace}/pods/triton")
    wait_for(lambda: _pod(api, pod_namespace, "triton") is None, 30, "the Triton pod to disappear")
    assert regions and not any(region.exists() for region in regions)
