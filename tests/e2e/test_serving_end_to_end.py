"""From `kubectl apply` to answers from a real Triton: the real API server, the operator under the chart's RBAC,
the process kubelet running the real build Job and the real Triton pod, and `kestrel infer` over TLS.

One ModelDeployment (the quickstart example) lives through the module, revision by revision:
1. the first engine serves boxes over TLS with the API key, and nothing without it;
   the operator's live check sent the build's probe images through the Service and got the recorded detections back
   (Verified=True, ParityPassed), and Triton's metrics reach status;
2. a second revision (dynamic batching off) rolls out while a client loop runs through the Service: no request fails;
3. a third revision whose engine Triton cannot load (the native ONNX backend, absent from this Triton) is rolled back,
   and the second keeps answering all along.
Batching on and off both serve 8 concurrent clients exactly what a single request gets.

The process kubelet is used because it starts a pod in a second, which makes three revisions affordable. It runs
pods as host processes and ignores securityContext, read-only roots, resources and image names, and its probes and
preStop are its own: pod hardening, memory volumes, the operator as a pod and the drain of a real rolling update are
shown on the real node (tests/realnode/), not here.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kestrel import infer
from kestrel.api import crd, keys
from kestrel.api import spec as specs
from kestrel.manifests import names, transport
from testbed import claims, components, demo, local_serving, routing, service_proxy
from testbed import operator as operator_process

# Below pytest's own 600 s timeout, so that a wait that runs out says what the cluster was doing.
BUILD_AND_ROLLOUT_SECONDS = 540
CONCURRENT_CLIENTS = 8


class Served:
    """The module's ModelDeployment and how to reach it."""

    def __init__(
        self, kube: Any, namespace: str, work: pathlib.Path, operator: operator_process.OperatorProcess
    ) -> None:
        self.kube = kube
        self.operator = operator
        self.namespace = namespace
        self.work = work
        self.body = local_serving.model_deployment(namespace)
        self.name: str = self.body["metadata"]["name"]
        dataset = work / "claims" / demo.MODEL_CLAIM / "shapes"
        self.images = sorted((dataset / "images" / "val").glob("*.png"))
        self.labels = dataset / "labels" / "val"

    def get(self) -> dict[str, Any]:
        found: dict[str, Any] = self.kube.custom.get_namespaced_custom_object(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, self.name
        )
        return found

    def condition(self, kind: str) -> dict[str, Any]:
        found = [c for c in self.get().get("status", {}).get("conditions", []) if c["type"] == kind]
        return found[0] if found else {}

    def patch_spec(self, spec: dict[str, Any]) -> str:
        """Merge `spec` into the object; the engine key the new spec asks for."""
        self.kube.custom.patch_namespaced_custom_object(
            crd.GROUP, crd.VERSION, self.namespace, crd.PLURAL, self.name, {"spec": spec}
        )
        return keys.engine_key(specs.parse(self.get()["spec"]))

    def wait(self, what: str, check: Any, timeout: float = BUILD_AND_ROLLOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(1.0)
        conditions = {c["type"]: (c["status"], c.get("reason"), c.get("message")) for c in self.conditions()}
        pods = self.kube.kubectl("get", "pods,jobs,replicasets", "-n", self.namespace, "-o", "wide", check=False)
        operator_log = "\n".join(self.operator.log().splitlines()[-60:])
        raise AssertionError(
            f"timed out waiting for {what}; conditions: {conditions}\n{pods.stdout}\noperator log:\n{operator_log}"
        )

    def conditions(self) -> list[dict[str, Any]]:
        conditions: list[dict[str, Any]] = self.get().get("status", {}).get("conditions", [])
        return conditions

    def serving(self, key: str) -> bool:
        """`key` is the current revision, its rollout is complete (every pod runs it), and the model is Ready.

        Complete: RolloutComplete, or CanaryPromoted after the operator-stepped canary (which keeps saying so)."""
        body = self.get()
        status = body.get("status", {})
        found = {c["type"]: c for c in status.get("conditions", [])}
        progressing = found.get("Progressing", {})
        return (
            (status.get("revision") or {}).get("current") == key
            and progressing.get("status") == "False"
            and progressing.get("reason") in ("RolloutComplete", "CanaryPromoted")
            and key[:8] in progressing.get("message", "")
            and found.get("Ready", {}).get("status") == "True"
        )

    def endpoint(self, *, with_key: bool = True) -> infer.Endpoint:
        return local_serving.local_endpoint(self.kube.bed, self.namespace, self.name, self.work, with_key=with_key)

    def router(self) -> routing.ServiceRouter:
        ca = self.work / "router-ca.crt"
        ca.write_bytes(self.kube.bed.secret_value(self.namespace, names.tls_secret(self.name), "ca.crt"))
        key = self.kube.bed.secret_value(self.namespace, names.api_key_secret(self.name), transport.API_KEY_FIELD)
        return routing.ServiceRouter(self.kube.api, self.namespace, self.name, ca, key.decode())


@pytest.fixture(scope="module")
def served(
    with_crd: Any, operator_kubeconfig: pathlib.Path, process_kubelet: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("e2e")
    namespace = f"e2e-{uuid.uuid4().hex[:8]}"
    models, engines = demo.prepare_claims(work)
    with_crd.kubectl("create", "namespace", namespace)
    objects = claims.objects(demo.MODEL_CLAIM, models, namespace)
    objects += claims.objects(demo.STORE_CLAIM, engines, namespace)
    for body in objects:
        with_crd.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(body))
    env = {
        "KESTREL_ENGINE_STORE": f"pvc://{demo.STORE_CLAIM}/engines",
        "KESTREL_RESYNC_SECONDS": "1",
        "KESTREL_WATCH_NAMESPACES": namespace,  # other suites run operators of their own
        # The operator reads the store's claim where it lies, as a pod mounting it would: the live check reads the
        # build's probes from it.
        "KESTREL_PVC_ROOT": str(work / "claims"),
    }
    # kube-proxy's part: the operator's live check and metrics scrape reach the Service and pods through it.
    network = service_proxy.ServiceProxy(with_crd.api, work / "address-map.json", [namespace])
    running = operator_process.OperatorProcess(operator_kubeconfig, work / "logs", env, network).start()
    model = Served(with_crd, namespace, work, running)
    try:
        with_crd.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(model.body))
        first = keys.engine_key(specs.parse(model.body["spec"]))
        model.wait("the quickstart to build, validate and serve", lambda: model.serving(first))
        yield model
    finally:
        with_crd.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False)
        running.stop()
        for claim in (demo.MODEL_CLAIM, demo.STORE_CLAIM):
            with_crd.kubectl("delete", "pv", f"{namespace}-{claim}", "--ignore-not-found", check=False)


def truth_matched(served: Served, path: pathlib.Path, result: infer.Result, image: infer.Image) -> tuple[int, int]:
    height, width = image.shape[:2]
    truths = demo.ground_truth(served.labels / f"{path.stem}.txt", width, height)
    return sum(1 for m in demo.match(result.detections, truths) if m is not None), len(truths)


def same_boxes(a: infer.Result, b: infer.Result) -> bool:
    if len(a.detections) != len(b.detections):
        return False
    return all(
        x.class_id == y.class_id
        and abs(x.score - y.score) < 1e-3
        and max(abs(p - q) for p, q in zip(x.box, y.box, strict=True)) < 0.5
        for x, y in zip(a.detections, b.detections, strict=True)
    )


def concurrent_matches_single(served: Served) -> None:
    """8 clients at once get, image for image, what one request at a time gets."""
    images = [(p.name, infer.read_image(p)) for p in served.images[:16]]
    with infer.Client(served.endpoint()) as one:
        alone = [one.detect(image, name) for name, image in images]
        together = infer.detect_many(one, images, CONCURRENT_CLIENTS)
    assert [r.image for r in together] == [r.image for r in alone]
    mismatched = [a.image for a, b in zip(alone, together, strict=True) if not same_boxes(a, b)]
    assert not mismatched, f"concurrent answers differ from single ones for {mismatched}"


def test_quickstart_serves_boxes_over_tls_with_the_api_key_and_nothing_without(served: Served) -> None:
    with pytest.raises(infer.InferError, match="triton-grpc-protocol-kestrel-api-key"):
        infer.Client(served.endpoint(with_key=False))
    matched = total = 0
    with infer.Client(served.endpoint()) as client:
        assert client.names == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
        for path in served.images[:8]:
            image = infer.read_image(path)
            result = client.detect(image, path.name)
            hits, truths = truth_matched(served, path, result, image)
            matched, total = matched + hits, total + truths
    # The fixture detector scores mAP50 0.93 on this split: most boxes must come back, in the right place.
    assert total > 0 and matched / total >= 0.8, f"{matched}/{total} ground-truth boxes matched"


def test_the_operator_verified_the_revision_with_the_builds_probes_and_reports_tritons_metrics(
    served: Served,
) -> None:
    status = served.get()["status"]
    smoke = status["serving"]["smoke"]
    assert smoke["revision"] == status["revision"]["current"] and smoke["passed"] is True, smoke
    assert 0 < smoke["latencyMs"] < 10_000 and smoke["checkedAt"], smoke
    assert "one 64x64 image answered" in smoke["message"]
    assert (smoke["parity"], smoke["probes"]) == (True, 4), smoke
    verified = next(c for c in status["conditions"] if c["type"] == "Verified")
    assert (verified["status"], verified["reason"]) == ("True", "ParityPassed"), verified

    def requests() -> int:
        found: int = ((served.get()["status"].get("serving") or {}).get("metrics") or {}).get("requests") or 0
        return found

    served.wait("a first metrics summary", lambda: requests() > 0, timeout=30)
    before = requests()
    sent = 5
    with infer.Client(served.endpoint()) as client:
        for path in served.images[:sent]:
            client.detect(infer.read_image(path), path.name)
    served.wait(f"status.serving.metrics to count {sent} more requests", lambda: requests() >= before + sent, 30)
    found = served.get()["status"]["serving"]["metrics"]
    assert found["failures"] == 0 and found["pods"] == 1 and found["scrapedAt"] and not found.get("error"), found
    # No canary p95 bound: Triton's summary latencies are off, so the queue time is the counters' mean, not a p50.
    assert found.get("queueP50Ms") is None and 0 <= found["queueMeanMs"] < 10_000, found


def test_batching_on_serves_concurrent_clients_exactly(served: Served) -> None:
    assert served.get()["spec"]["serving"]["triton"].get("dynamicBatching", {}).get("enabled", True)
    concurrent_matches_single(served)


class ClientLoop(threading.Thread):
    """Requests through the Service, one after another, counting failures and which pods answered."""

    def __init__(self, served: Served) -> None:
        super().__init__(daemon=True)
        self.router = served.router()
        self.image = infer.read_image(served.images[0])
        self.stopping = threading.Event()
        self.answered: dict[str, int] = {}
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                pod, result = self.router.detect(self.image)
            except Exception as error:  # every failure counts, whatever raised it
                self.failures.append(f"{type(error).__name__}: {error}"[:300])
                time.sleep(0.2)
                continue
            if not result.detections:
                self.failures.append(f"{pod}: no detections")
            self.answered[pod] = self.answered.get(pod, 0) + 1
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)
        self.router.close()


def test_a_new_revision_rolls_out_under_load_without_a_failed_request(served: Served) -> None:
    before = {p["metadata"]["name"] for p in local_serving.serving_pods(served.kube.bed, served.namespace, served.name)}
    loop = ClientLoop(served)
    loop.start()
    try:
        key = served.patch_spec({"serving": {"triton": {"dynamicBatching": {"enabled": False}}}})
        served.wait("the unbatched revision to serve", lambda: served.serving(key))
        smoke = served.get()["status"]["serving"]["smoke"]
        assert (smoke["revision"], smoke["passed"]) == (key, True), "Serving a new revision waits for its live check"
        time.sleep(3)  # requests keep flowing to the new pod after the old one is gone
    finally:
        loop.stop()
    assert not loop.failures, f"{len(loop.failures)} failed requests, first: {loop.failures[:3]}"
    old, new = set(loop.answered) & before, set(loop.answered) - before
    assert old and new, f"the loop should have been answered by the old and the new pods: {loop.answered}"
    concurrent_matches_single(served)  # batching off serves 8 clients exactly too


def test_an_engine_triton_cannot_load_is_rolled_back_and_the_old_one_keeps_answering(served: Served) -> None:
    serving = served.get()["status"]["revision"]["current"]
    loop = ClientLoop(served)
    loop.start()
    try:
        # This Triton has only the Python backend: the native ONNX Runtime backend cannot load the engine.
        bad = served.patch_spec(
            {"serving": {"triton": {"runtime": "native"}}, "rollout": {"progressDeadlineSeconds": 30}}
        )
        served.wait(
            "the rollback",
            lambda: (
                (served.get()["status"].get("revision") or {}).get("failed") == bad
                and served.condition("Degraded").get("reason") == "RolledBack"
            ),
        )
        served.wait(
            "the old revision to be available again", lambda: served.condition("Available").get("status") == "True"
        )
    finally:
        loop.stop()
    revision = served.get()["status"]["revision"]
    assert revision["current"] == serving and revision["failed"] == bad
    assert not loop.failures, f"{len(loop.failures)} failed requests, first: {loop.failures[:3]}"
    assert sum(loop.answered.values()) > 0


GUIDE = pathlib.Path(__file__).parents[2] / "docs" / "calling-the-endpoint.md"


def _json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (grpcurl prints one per call)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


def _guide_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), re.DOTALL)


def test_the_calling_guide_works_as_written(served: Served, tmp_path: pathlib.Path) -> None:
    """docs/calling-the-endpoint.md: its kubectl commands, `kestrel infer` and its Python, with NAME and NS filled
    in; only the address is this test bed's (the pod's published port), with the certificate's name given."""
    bed, name, namespace = served.kube.bed, served.name, served.namespace
    fetch, cli_call, grpcurl_calls, _https = _guide_blocks("sh")
    env = {
        **os.environ,
        "KUBECONFIG": str(bed.kubeconfig),
        "PATH": f"{bed.bin_dir}{os.pathsep}{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    filled = fetch.replace("NAME", name).replace("NS", namespace)
    shown = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", filled], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert f'"caConfigMap":"{names.ca_bundle(name)}"' in shown.stdout
    assert (tmp_path / "ca.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" not in (tmp_path / "ca.crt").read_bytes()

    endpoint = served.endpoint()
    image_path = served.images[0]
    (tmp_path / "street.png").write_bytes(image_path.read_bytes())
    command = cli_call.replace("NAME.NS.svc:8001", endpoint.address).replace("NAME", name).replace("NS", namespace)
    command = command.strip() + f" --server-name {endpoint.server_name}"
    answered = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert answered.returncode == 0, answered.stderr
    assert "images=1 detections=" in answered.stdout

    # grpcurl, from its Go module (built with the test bed), with the protoset `kestrel protoset` writes.
    env["PATH"] = f"{components.GRPCURL.bin_dir}{os.pathsep}{env['PATH']}"
    command = grpcurl_calls.replace("NAME.NS.svc:8001", endpoint.address).replace("NAME", name).replace("NS", namespace)
    command = command.replace(" -d ", f" -servername {endpoint.server_name} -d ")
    called = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert called.returncode == 0, called.stderr
    ready, metadata = _json_documents(called.stdout)
    assert ready == {"ready": True}
    assert metadata["name"] == name and [i["name"] for i in metadata["inputs"]] == [infer.INPUT]

    (python,) = _guide_blocks("python")
    scope: dict[str, Any] = {}
    exec(compile(python, str(GUIDE), "exec"), scope)  # the guide's own code, run as a reader would
    image = infer.read_image(image_path)
    boxes = scope["detect"](
        endpoint.address,
        name,
        image,
        str(tmp_path / "ca.crt"),
        str(tmp_path / "api-key"),
        server_name=endpoint.server_name,
    )
    with infer.Client(endpoint) as client:
        expected = client.detect(image, image_path.name)
    assert [b[5] for b in boxes] == [d.class_name for d in expected.detections] and boxes
    assert all(
        max(abs(p - q) for p, q in zip(b[:4], d.box, strict=True)) < 0.5
        for b, d in zip(boxes, expected.detections, strict=True)
    )
