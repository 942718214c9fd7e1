"""The quickstart, installed as docs/quickstart-real-cluster.md tells a user to, on the real node: Kestrel's own
images under runc.

The guide's `sh` blocks run as written ("Install", "The model's files", "Serve and call it"), with the changes only
this test bed needs (`_as_on_the_test_bed`): the release in `kestrel-real` with the real node's placement and a
5 s resync, volumes made beforehand for the guide's claims (no storage provisioner here), the guide's pod and
ModelDeployment placed on the real node (`install.pin`), and the images imported already. `helm install` gives a
real operator pod under the chart's ServiceAccount; the build Job runs the builder image, the Triton pod runs the
loader as its init container and the CPU Triton image, and a client on this machine reaches the model through its
Service (kube-proxy's rules). What the tests read comes from the running containers (crictl, /proc), not from the
manifests the operator wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kestrel import infer
from kestrel.engine import progress
from kestrel.manifests import names
from testbed import demo, install, realnode
from tests.realnode import support
from tests.realnode.support import RealNode

# The first run builds the images and the engine: far beyond the suite's default per-test limit.
pytestmark = pytest.mark.timeout(3600)

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAMESPACE = "vision"  # the guide's
OPERATOR = "kestrel-operator"
GUIDE = ROOT / "docs" / "quickstart-real-cluster.md"
SERVE_TIMEOUT = 1500


@dataclasses.dataclass(frozen=True)
class Served:
    node: RealNode
    name: str
    work: pathlib.Path
    built_messages: list[str]  # the Built condition's messages, polled each second from apply to Ready

    def endpoint(self, *, with_key: bool = True) -> infer.Endpoint:
        return install.service_endpoint(self.node.kube.bed, NAMESPACE, self.name, self.work, with_key=with_key)

    @property
    def dataset(self) -> pathlib.Path:
        """The validation images as the guide copied them into the model claim."""
        return self.work / "claim" / demo.MODEL_CLAIM / "shapes"


def _guide_blocks(section: str) -> list[str]:
    text = GUIDE.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"{GUIDE.name} has no section {section!r}"
    return re.findall(r"```sh\n(.*?)```", match.group(1), re.DOTALL)


def _placed(manifest: str) -> str:
    """A YAML heredoc's objects with every Pod tolerating and selecting the real node."""
    objects = list(yaml.safe_load_all(manifest))
    for obj in objects:
        if obj["kind"] == "Pod":
            obj["spec"]["nodeSelector"] = dict(realnode.NODE_SELECTOR)
            obj["spec"]["tolerations"] = [dict(realnode.TOLERATION)]
    return yaml.safe_dump_all(objects, sort_keys=False)


def _as_on_the_test_bed(block: str, work: pathlib.Path, placement_values: pathlib.Path) -> str:
    """The guide's block with the test bed's changes (module docstring); each replace must find its text."""

    def replace(old: str, new: str) -> None:
        nonlocal block
        assert old in block, f"the guide no longer says {old!r}"
        block = block.replace(old, new)

    if block.startswith("helm install"):
        replace("helm install kestrel ", f"helm install {install.RELEASE} ")
        replace("--namespace kestrel-system", f"--namespace {install.NAMESPACE} --values {placement_values}")
    for heredoc in re.findall(r"<<'EOF'\n(.*?)\nEOF", block, re.DOTALL):
        replace(heredoc, _placed(heredoc).rstrip("\n"))
    if "examples/quickstart/modeldeployment.yaml" in block:
        pinned = work / "examples" / "quickstart" / "modeldeployment.yaml"
        pinned.parent.mkdir(parents=True, exist_ok=True)
        pinned.write_text(yaml.safe_dump(install.pin(yaml.safe_load(demo.EXAMPLE.read_text())), sort_keys=False))
    return block


def _run_guide(node: RealNode, block: str, work: pathlib.Path, seen: list[str] | None = None) -> None:
    """One block in `work` (which links the checkout's charts, tools and tests), with the test bed's kubectl and
    helm; while it runs, the Built messages of the guide's model are collected into `seen`."""
    bed = node.kube.bed
    env = {
        **os.environ,
        "KUBECONFIG": str(bed.kubeconfig),
        "PATH": f"{bed.bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + SERVE_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        if seen is not None:
            found = node.kube.kubectl("get", "mdep", "shapes", "-n", NAMESPACE, "-o", "json", check=False)
            if found.returncode == 0:
                message = support.condition(json.loads(found.stdout), "Built").get("message")
                if message:
                    seen.append(str(message))
        time.sleep(1)
    if process.poll() is None:
        process.kill()
    output = process.communicate()[0]
    if process.returncode != 0:
        raise AssertionError(
            f"{block}\n--- output ---\n{output}\n--- operator ---\n{install.operator_log(bed)[-4000:]}"
        )


@pytest.fixture(scope="module")
def served(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    bed = real_node.kube.bed
    work = tmp_path_factory.mktemp("quickstart")
    for linked in ("charts", "testbed", "synthetic", "tests", ".venv"):
        (work / linked).symlink_to(ROOT / linked)
    placement = install.values("", resyncSeconds=5)
    del placement["engineStore"]  # the guide's
    placement_values = work / "placement.yaml"
    placement_values.write_text(yaml.safe_dump(placement))
    support.remove(real_node, NAMESPACE)  # what an interrupted run left
    volumes = []
    for claim in (demo.MODEL_CLAIM, demo.STORE_CLAIM):
        made = install.owned_claim(claim, work / "claims" / claim, NAMESPACE)
        (volume,) = [o for o in made if o["kind"] == "PersistentVolume"]  # the guide makes the claim
        volume["spec"]["accessModes"] = ["ReadWriteOnce", "ReadWriteMany"]  # the guide's claims ask for RWO
        volumes.append(volume)
    (work / "volumes.yaml").write_text(yaml.safe_dump_all(volumes))
    bed.kubectl("apply", "-f", str(work / "volumes.yaml"))
    try:
        (helm,) = _guide_blocks("Install")
        _run_guide(real_node, _as_on_the_test_bed(helm, work, placement_values), work)
        (files,) = _guide_blocks("The model's files")
        _run_guide(real_node, _as_on_the_test_bed(files, work, placement_values), work)
        seen: list[str] = []
        (serve,) = _guide_blocks("Serve and call it")
        _run_guide(real_node, _as_on_the_test_bed(serve, work, placement_values), work, seen)
        yield Served(real_node, "shapes", work, seen)
    finally:
        support.remove(real_node, NAMESPACE)
        install.helm_uninstall(bed)


def test_detections_through_the_service_match_the_ground_truth(served: Served) -> None:
    dataset = served.dataset
    matched = total = 0
    with infer.Client(served.endpoint()) as client:
        for path in sorted((dataset / "images" / "val").glob("*.png"))[:8]:
            image = infer.read_image(path)
            result = client.detect(image, path.name)
            height, width = image.shape[:2]
            truths = demo.ground_truth(dataset / "labels" / "val" / f"{path.stem}.txt", width, height)
            matched += sum(1 for found in demo.match(result.detections, truths) if found is not None)
            total += len(truths)
    assert total > 0
    assert matched / total >= 0.8, f"only {matched}/{total} ground-truth boxes were detected"


def test_the_build_stage_read_from_the_build_pods_log_reached_the_models_status(served: Served) -> None:
    """While the build ran in its real container, the operator read its `kestrel-progress` lines through the API
    server (the kubelet's log endpoint) and said the stage in Built."""
    stages = {m.split(" is running: ", 1)[1].split()[0] for m in served.built_messages if " is running: " in m}
    log = install.operator_log(served.node.kube.bed)
    assert stages & set(progress.STAGES), f"{served.built_messages}\n--- operator ---\n{log[-6000:]}"


def test_a_request_without_the_api_key_is_refused(served: Served) -> None:
    with pytest.raises(infer.InferError):
        infer.Client(served.endpoint(with_key=False)).detect(infer.read_image(next(served.work.rglob("*.png"))))


def test_the_operator_runs_as_a_pod_of_its_image_under_the_charts_service_account(served: Served) -> None:
    pod = install.operator_pod(served.node.kube.bed)
    assert pod is not None
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert pod["spec"]["serviceAccountName"] == install.SERVICE_ACCOUNT
    (container,) = [c for c in support.containers(served.node, install.NAMESPACE) if support.image_name(c) == OPERATOR]
    assert container["status"]["state"] == "CONTAINER_RUNNING"


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}


def _declared_memory_limit(served: Served, container: dict[str, Any]) -> int:
    """The memory limit the container's pod declares for it, in bytes."""
    labels = container["status"]["labels"]
    namespace, pod = labels["io.kubernetes.pod.namespace"], labels["io.kubernetes.pod.name"]
    body = json.loads(served.node.kube.kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout)
    declared = body["spec"].get("initContainers", []) + body["spec"]["containers"]
    (found,) = [c for c in declared if c["name"] == labels["io.kubernetes.container.name"]]
    quantity = re.fullmatch(r"(\d+)([KMG]i)?", found["resources"]["limits"]["memory"])
    assert quantity, found["resources"]
    return int(quantity[1]) * _UNITS[quantity[2] or ""]


def test_every_kestrel_container_runs_hardened_as_runc_runs_it(served: Served) -> None:
    """Non-root, read-only root filesystem, no capabilities, no privilege gain, RuntimeDefault seccomp, and the
    memory limit its pod declares: read from each container's runtime spec (the build, the loader, Triton, and the
    operator)."""
    containers = support.containers(served.node, NAMESPACE) + support.containers(served.node, install.NAMESPACE)
    seen = {support.image_name(c) for c in containers}
    assert {"kestrel-builder", "kestrel-loader", "kestrel-triton-cpu", OPERATOR} <= seen
    for container in containers:
        spec = container["info"]["runtimeSpec"]
        where = f"{container['status']['metadata']['name']} ({support.image_name(container)})"
        assert spec["process"]["user"]["uid"] != 0, where
        assert spec["root"].get("readonly") is True, where
        capabilities = spec["process"].get("capabilities", {})
        assert all(not capabilities.get(kind) for kind in ("bounding", "effective", "permitted")), where
        assert spec["process"].get("noNewPrivileges") is True, where
        assert spec["linux"].get("seccomp", {}).get("defaultAction") == "SCMP_ACT_ERRNO", where
        assert spec["linux"]["resources"]["memory"]["limit"] == _declared_memory_limit(served, container), where


def test_the_served_repository_lives_on_a_memory_volume(served: Served) -> None:
    """The loader decrypts into the pod's memory-backed emptyDir: Triton's /models is a tmpfs in its mount table."""
    mounts = support.mount_table(support.running(served.node, NAMESPACE, "kestrel-triton-cpu"))
    models = [fields for fields in mounts if fields[1] == "/models"]
    assert models and models[0][2] == "tmpfs", mounts
    root = [fields for fields in mounts if fields[1] == "/"]
    assert "ro" in root[0][3].split(","), root


def test_the_served_models_need_no_opencv(served: Served) -> None:
    """The CPU Triton image has no cv2, so the quickstart serving at all shows its preprocessing needs none."""
    selector = f"app.kubernetes.io/instance={served.name},app.kubernetes.io/component=triton"
    pod = served.node.kube.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "name").stdout.split()[0]
    probe = served.node.kube.kubectl(
        "exec", "-n", NAMESPACE, pod, "-c", "triton", "--", "python3", "-c", "import cv2", check=False
    )
    assert probe.returncode != 0 and "No module named 'cv2'" in probe.stderr


@dataclasses.dataclass
class _Loop:
    """A client sending inferences through the Service until stopped; each answer or failure is kept."""

    endpoint: infer.Endpoint
    image: infer.Image
    fresh_connection: bool  # a new gRPC channel per request, or one channel kept for the whole loop
    answered: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def run(self) -> None:
        kept = None if self.fresh_connection else infer.Client(self.endpoint, timeout=10.0)
        try:
            while not self.stop.is_set():
                client = kept or infer.Client(self.endpoint, timeout=10.0)
                try:
                    client.detect(self.image)
                    self.answered += 1
                except infer.InferError as error:
                    self.failures.append(f"{time.strftime('%T')} {error}")
                finally:
                    if kept is None:
                        client.close()
                time.sleep(0.05)
        finally:
            if kept is not None:
                kept.close()


def _triton_pods(served: Served) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={served.name},app.kubernetes.io/component=triton"
    listed = served.node.kube.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout
    pods: list[dict[str, Any]] = json.loads(listed)["items"]
    return pods


def test_a_rolling_update_under_a_client_loop_loses_no_request(served: Served) -> None:
    """A changed pod template rolls out (surge one new pod, then the old one drains: readiness, endpoint removal,
    preStop, Triton's exit timeout, under the real kubelet and kube-proxy) while two clients send inferences
    through the Service: one opening a new connection per request, one keeping its gRPC channel. Every request is
    answered. Runs last in this module: it replaces the serving pod the other tests read."""
    bed = served.node.kube.bed
    deployment = names.triton(served.name)
    before = {pod["metadata"]["name"] for pod in _triton_pods(served)}
    limits = json.loads(bed.kubectl("get", "deployment", deployment, "-n", NAMESPACE, "-o", "json").stdout)
    (server,) = [c for c in limits["spec"]["template"]["spec"]["containers"] if c["name"] == "triton"]
    image = infer.read_image(next(served.work.rglob("*.png")))
    loops = [_Loop(served.endpoint(), image, fresh_connection=fresh) for fresh in (True, False)]
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)  # both loops answered before the rollout starts
        assert all(loop.answered > 0 for loop in loops), [loop.failures[-3:] for loop in loops]
        resources = {"requests": {"cpu": "300m", "memory": "256Mi"}, "limits": server["resources"]["limits"]}
        patch = {"spec": {"serving": {"triton": {"resources": resources}}}}
        bed.kubectl("patch", "mdep", served.name, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch))

        def replaced() -> bool:
            pods = _triton_pods(served)
            names_now = {pod["metadata"]["name"] for pod in pods}
            ready = all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
                for pod in pods
            )
            return bool(names_now) and not names_now & before and ready

        install.wait_for("the old Triton pod to be replaced", replaced, 600, interval=1.0)
        time.sleep(5)  # requests after the old pod is gone reach the new one
    finally:
        for loop in loops:
            loop.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    for loop in loops:
        kind = "fresh connections" if loop.fresh_connection else "a kept channel"
        assert loop.answered > 20, f"{kind}: only {loop.answered} answered"
        assert not loop.failures, f"{kind}: {len(loop.failures)} failed of {loop.answered + len(loop.failures)}: " + (
            "\n".join(loop.failures[:10])
        )
