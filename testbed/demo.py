"""`make demo`: from `kubectl apply` to detections from a real Triton, on this machine.

Stages, each printed with the elapsed time: start the test bed (real kube-apiserver, etcd, controller-manager,
scheduler) and a process kubelet (node `local-0`, which runs pods as local processes); install the CRD and the
chart's RBAC; run the operator (`kestrel run`, with nothing but the chart's ServiceAccount token); lay out the
model claim (the project's fixture detector and its validation images) and the engine store claim; apply
`examples/quickstart/modeldeployment.yaml`; wait while the operator's build Job builds, validates and publishes the
engine and the Triton Deployment rolls out; send validation images over gRPC with TLS and the API key (and once
without the key, which must be refused); print each image's detections beside its ground truth; show
`kubectl get mdep` and the Events; tear down. Annotated images go to `demo-output/`.

The last line is `demo_detections=<n> matched_ground_truth=<m>/<k> p50_ms=<x>`; a detection matches a
ground-truth box of the same class at IoU >= 0.5.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import yaml
from kubernetes import client, config

from kestrel import infer
from kestrel.api import crd
from kestrel.manifests import names, transport
from testbed import cluster, kubelet_pods, service_proxy
from testbed import operator as operator_process
from testbed.kubelet import LOCAL_LABEL, ProcessKubelet
from testbed.kubelet_api import Api

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart" / "modeldeployment.yaml"
CHECKPOINT = ROOT / "tests" / "fixtures" / "models" / "shapes-yolov8n.pt"
RECORD = ROOT / "tests" / "fixtures" / "models" / "shapes-yolov8n.json"
WORK = ROOT / ".demo"
OUTPUT = ROOT / "demo-output"
NAMESPACE = "kestrel-demo"
STORE_CLAIM = "kestrel-engines"
MODEL_CLAIM = "kestrel-models"
VALIDATION_IMAGES = 24  # the validation split the build's gate scores; the demo sends the first few
BUILD_TIMEOUT = 1200.0
ROLLOUT_TIMEOUT = 600.0
IOU_MATCH = 0.5


class DemoError(RuntimeError):
    """A stage failed; the message says why."""


class Progress:
    """One line per stage with the elapsed time; a failure names its stage."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", flush=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        self.say(f"{name} ...")
        try:
            yield
        except Exception as error:
            self.say(f"{name}: FAILED: {error}")
            raise DemoError(f"stage '{name}' failed: {error}") from error
        self.say(f"{name}: done in {time.monotonic() - began:.1f}s")


@dataclasses.dataclass(frozen=True)
class Truth:
    class_id: int
    box: tuple[float, float, float, float]


# --- the claims: the fixture detector, its validation images, and the engine store ---------------------------


def prepare_claims(work: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The model claim (checkpoint + dataset with a relative data.yaml) and an empty engine store claim."""
    sys.path.insert(0, str(ROOT))
    from tests.fixtures import shapes  # noqa: PLC0415 - the fixture's generator, shared with the tests

    models, engines = work / "claims" / MODEL_CLAIM, work / "claims" / STORE_CLAIM
    for folder in (models, engines):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    shutil.copy(CHECKPOINT, models / CHECKPOINT.name)
    record = json.loads(RECORD.read_text())
    dataset = models / "shapes"
    shapes.write_split(dataset, record["dataset"]["seed"], "val", VALIDATION_IMAGES)
    # Relative to the data.yaml: the claim is mounted elsewhere in the build pod than it lies here.
    lines = ["path: .", "train: images/val", "val: images/val", "names:"]
    lines += [f"  {index}: {name}" for index, name in enumerate(shapes.CLASSES)]
    (dataset / "data.yaml").write_text("\n".join(lines) + "\n")
    return models, engines


def claim_objects(claim: str, path: pathlib.Path, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """A hostPath PersistentVolume pre-bound to the claim, and the claim."""
    volume = f"{namespace}-{claim}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    ]


def model_deployment(namespace: str = NAMESPACE) -> dict[str, Any]:
    """The quickstart example, pinned to the process kubelet's node (the test bed's other nodes are kwok's)."""
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"].setdefault("target", {})["nodeSelector"] = {LOCAL_LABEL: "true"}
    return body


# --- ground truth and matching ----------------------------------------------------------------------------------


def ground_truth(label_file: pathlib.Path, width: int, height: int) -> list[Truth]:
    found = []
    for line in label_file.read_text().splitlines():
        if not line.strip():
            continue
        cls, cx, cy, w, h = line.split()
        x, y, bw, bh = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        found.append(Truth(int(cls), (x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)))
    return found


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(detections: list[infer.Detection], truths: list[Truth]) -> list[int | None]:
    """For each ground-truth box, the detection matched to it (same class, IoU >= 0.5, best score first)."""
    matched: list[int | None] = [None] * len(truths)
    taken: set[int] = set()
    for index in sorted(range(len(detections)), key=lambda i: -detections[i].score):
        found = detections[index]
        best, best_iou = None, IOU_MATCH
        for t, truth in enumerate(truths):
            if matched[t] is None and truth.class_id == found.class_id:
                overlap = iou(found.box, truth.box)
                if overlap >= best_iou:
                    best, best_iou = t, overlap
        if best is not None and index not in taken:
            matched[best] = index
            taken.add(index)
    return matched


def annotate(image: np.ndarray, detections: list[infer.Detection], truths: list[Truth], target: pathlib.Path) -> None:
    import cv2  # noqa: PLC0415

    canvas = np.ascontiguousarray(image[:, :, ::-1])  # RGB -> BGR for OpenCV
    for truth in truths:
        x0, y0, x1, y1 = (round(v) for v in truth.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 200, 0), 1)
    for found in detections:
        x0, y0, x1, y1 = (round(v) for v in found.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 0, 255), 1)
        label = f"{found.class_name} {found.score:.2f}"
        cv2.putText(canvas, label, (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 255), 1)
    cv2.imwrite(str(target), canvas)


def serving_pods(bed: cluster.Testbed, namespace: str, name: str) -> list[dict[str, Any]]:
    """The model's Ready Triton pods on the process kubelet (which publishes their local ports)."""
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=triton"
    pods = json.loads(bed.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)
    return [
        pod
        for pod in pods["items"]
        if kubelet_pods.PORTS_ANNOTATION in pod["metadata"].get("annotations", {})
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    ]


def secret_value(bed: cluster.Testbed, namespace: str, name: str, key: str) -> bytes:
    found = json.loads(bed.kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)
    return base64.b64decode(found["data"][key])


def pod_endpoint(
    bed: cluster.Testbed, pod: dict[str, Any], name: str, work: pathlib.Path, *, with_key: bool = True
) -> infer.Endpoint:
    """How a client in the model's namespace would reach this pod: its gRPC port here, the operator-issued CA,
    the certificate's name (the Service's DNS name), and the API key."""
    namespace = pod["metadata"]["namespace"]
    ports = json.loads(pod["metadata"]["annotations"][kubelet_pods.PORTS_ANNOTATION])
    ca = work / f"{namespace}-{name}-ca.crt"
    ca.write_bytes(secret_value(bed, namespace, names.tls_secret(name), "ca.crt"))
    api_key = secret_value(bed, namespace, names.api_key_secret(name), transport.API_KEY_FIELD) if with_key else None
    return infer.Endpoint(
        address=f"127.0.0.1:{ports[str(transport.GRPC_PORT)]}",
        model=names.triton_model(name),
        ca_file=ca,
        server_name=f"{names.service(name)}.{namespace}.svc",
        api_key=api_key.decode() if api_key else None,
    )


def local_endpoint(
    bed: cluster.Testbed, namespace: str, name: str, work: pathlib.Path, *, with_key: bool = True
) -> infer.Endpoint:
    serving = serving_pods(bed, namespace, name)
    if not serving:
        raise DemoError("no Ready serving pod with published local ports")
    return pod_endpoint(bed, serving[0], name, work, with_key=with_key)


# --- the cluster side ------------------------------------------------------------------------------------------


class Demo:
    def __init__(self, progress: Progress, images: int, keep: bool) -> None:
        self.progress = progress
        self.images = images
        self.keep = keep
        self.bed = cluster.Testbed()
        self.started_bed = False
        self.kubelet: ProcessKubelet | None = None
        self.operator: operator_process.OperatorProcess | None = None
        self.api: client.ApiClient | None = None
        self.name = ""
        self.seen: dict[str, str] = {}  # the last condition line printed, by type

    # Small helpers over the API.

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def apply(self, objects: list[dict[str, Any]]) -> None:
        text = yaml.safe_dump_all(objects)
        done = subprocess.run(
            [
                str(self.bed.bin_dir / "kubectl"),
                f"--kubeconfig={self.bed.kubeconfig}",
                *("apply", "--server-side", "--field-manager=kestrel-demo", "-f", "-"),
            ],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise DemoError(done.stderr.strip())

    def mdep(self) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(
            crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, self.name
        )
        return body

    # Stages.

    def start(self) -> None:
        with self.progress.stage("test bed: kube-apiserver, etcd, controller-manager, scheduler, kwok"):
            self.started_bed = self.bed.up()
            self.api = config.new_client_from_config(config_file=str(self.bed.kubeconfig))
        with self.progress.stage("process kubelet: node local-0 runs pods as local processes"):
            self.kubelet = ProcessKubelet(Api(self.api), node="local-0", renew_seconds=2.0).start()
        with self.progress.stage("install: the CRD, and the chart's ServiceAccount and RBAC"):
            crd_file = ROOT / "crds" / "modeldeployments.kestrel.dev.yaml"
            self.apply(list(yaml.safe_load_all(crd_file.read_text())))
            self.bed.kubectl("wait", "--for=condition=Established", f"crd/{crd.CRD_NAME}", "--timeout=60s")
            operator_process.install_rbac(self.bed)
        with self.progress.stage("operator: kestrel run, with the chart's ServiceAccount token only"):
            kubeconfig = operator_process.kubeconfig(self.bed, WORK / "operator.kubeconfig")
            env = {
                "KESTREL_ENGINE_STORE": f"pvc://{STORE_CLAIM}/engines",
                "KESTREL_RESYNC_SECONDS": "2",
                "KESTREL_WATCH_NAMESPACES": NAMESPACE,
            }
            # The operator's smoke inference and metrics scrape reach the Service and pods through this forwarder.
            network = service_proxy.ServiceProxy(self.api, WORK / "address-map.json", [NAMESPACE])
            self.operator = operator_process.OperatorProcess(kubeconfig, WORK / "logs", env, network).start()

    def deploy(self) -> None:
        with self.progress.stage(f"claims: the fixture detector and {VALIDATION_IMAGES} validation images"):
            models, engines = prepare_claims(WORK)
            self.bed.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
            for claim in (MODEL_CLAIM, STORE_CLAIM):
                self.bed.kubectl("delete", "pv", f"{NAMESPACE}-{claim}", "--ignore-not-found")
            self.bed.kubectl("create", "namespace", NAMESPACE)
            self.apply(claim_objects(MODEL_CLAIM, models) + claim_objects(STORE_CLAIM, engines))
        with self.progress.stage(f"apply {EXAMPLE.relative_to(ROOT)}"):
            body = model_deployment()
            self.name = body["metadata"]["name"]
            self.apply([body])
        with self.progress.stage("build: export, validate against the source model, publish (build Job)"):
            self.wait(BUILD_TIMEOUT, self.built)
        with self.progress.stage("rollout: Triton loads the signed engine and turns Ready"):
            self.wait(ROLLOUT_TIMEOUT, self.ready)

    def wait(self, timeout: float, done: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + timeout
        seen = self.seen
        while time.monotonic() < deadline:
            if self.operator and not self.operator.running():
                raise DemoError(f"the operator exited; its log:\n{self.operator.log()[-3000:]}")
            body = self.mdep()
            for item in body.get("status", {}).get("conditions", []):
                line = f"{item['status']} {item.get('reason', '')}: {item.get('message', '')}"
                if seen.get(item["type"]) != line:
                    seen[item["type"]] = line
                    self.progress.say(f"  {item['type']}={line}")
            if done(body):
                return
            time.sleep(2.0)
        raise DemoError(f"timed out after {timeout:.0f}s")

    @staticmethod
    def _condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
        found = [c for c in body.get("status", {}).get("conditions", []) if c["type"] == kind]
        return found[0] if found else {}

    def built(self, body: dict[str, Any]) -> bool:
        built, validated = self._condition(body, "Built"), self._condition(body, "Validated")
        if built.get("status") == "False" and built.get("reason") == "BuildFailed":
            raise DemoError(built.get("message", "the build failed"))
        if validated.get("status") == "False":
            raise DemoError(f"the engine failed validation: {validated.get('message')}")
        return built.get("status") == "True" and validated.get("status") == "True"

    def ready(self, body: dict[str, Any]) -> bool:
        degraded = self._condition(body, "Degraded")
        if degraded.get("status") == "True":
            raise DemoError(degraded.get("message", "the rollout failed"))
        return self._condition(body, "Ready").get("status") == "True"

    def endpoint(self, *, with_key: bool = True) -> infer.Endpoint:
        return local_endpoint(self.bed, NAMESPACE, self.name, WORK, with_key=with_key)

    def infer(self) -> str:
        with self.progress.stage("refusal: a request without the API key"):
            try:
                infer.Client(self.endpoint(with_key=False))
            except infer.InferError as refused:
                self.progress.say(f"  refused as it should be: {str(refused)[:160]}")
            else:
                raise DemoError("Triton answered a request that carried no API key")
        with self.progress.stage(f"inference: {self.images} validation images over gRPC, TLS and the API key"):
            summary = self.detect()
        return summary

    def detect(self) -> str:
        dataset = WORK / "claims" / MODEL_CLAIM / "shapes"
        images = sorted((dataset / "images" / "val").glob("*.png"))[: self.images]
        shutil.rmtree(OUTPUT, ignore_errors=True)
        OUTPUT.mkdir(parents=True)
        latencies: list[float] = []
        detections = matched = truths_total = 0
        with infer.Client(self.endpoint()) as served:
            for path in images:
                image = infer.read_image(path)
                result = served.detect(image, path.name)
                height, width = image.shape[:2]
                truths = ground_truth(dataset / "labels" / "val" / f"{path.stem}.txt", width, height)
                pairs = match(result.detections, truths)
                hits = sum(1 for p in pairs if p is not None)
                latencies.append(result.latency_ms)
                detections += len(result.detections)
                matched += hits
                truths_total += len(truths)
                print(
                    f"  {path.name}: {len(result.detections)} detections, {hits}/{len(truths)} ground truth matched, "
                    f"{result.latency_ms:.1f} ms",
                    flush=True,
                )
                for t, truth in enumerate(truths):
                    found = pairs[t]
                    name = served.names.get(truth.class_id, str(truth.class_id))
                    shown = "missed"
                    if found is not None:
                        hit = result.detections[found]
                        shown = f"found {hit.class_name} {hit.score:.2f} IoU {iou(hit.box, truth.box):.2f}"
                    box = ", ".join(f"{v:.0f}" for v in truth.box)
                    print(f"    truth {name:<9} [{box}] -> {shown}", flush=True)
                extra = [d for i, d in enumerate(result.detections) if i not in set(p for p in pairs if p is not None)]
                for d in extra:
                    print(f"    extra {d.class_name:<9} {d.score:.2f} (no ground truth)", flush=True)
                annotate(image, result.detections, truths, OUTPUT / path.name)
        p50 = infer.percentile(latencies, 50)
        return f"demo_detections={detections} matched_ground_truth={matched}/{truths_total} p50_ms={p50:.1f}"

    def report(self) -> None:
        with self.progress.stage("status: kubectl get mdep, and the Events"):
            print(self.bed.kubectl("get", "mdep", "-n", NAMESPACE, "-o", "wide").stdout, flush=True)
            checks = (self.mdep().get("status") or {}).get("serving") or {}
            print(f"status.serving (the operator's smoke inference and Triton's metrics): {checks}", flush=True)
            events = self.bed.kubectl("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp").stdout
            print("\n".join(events.splitlines()[-25:]), flush=True)

    def stop(self) -> None:
        if self.keep:
            # The kubelet and the operator live in this process: keep it, not orphans, until the user is done.
            self.progress.say(f"--keep: running until Ctrl-C; kubectl --kubeconfig {self.bed.kubeconfig} get mdep -A")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        with self.progress.stage("teardown"):
            if self.api is not None and self.name:
                with contextlib.suppress(Exception):
                    self.bed.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=90s")
            if self.operator:
                self.operator.stop()
            if self.kubelet:
                self.kubelet.stop(deregister=True)
            for claim in (MODEL_CLAIM, STORE_CLAIM):
                with contextlib.suppress(Exception):
                    self.bed.kubectl("delete", "pv", f"{NAMESPACE}-{claim}", "--ignore-not-found")
            if self.started_bed:
                self.bed.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="validation images to send (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C, then tear down")
    args = parser.parse_args(argv)
    progress = Progress()
    demo = Demo(progress, args.images, args.keep)
    WORK.mkdir(exist_ok=True)
    summary = None
    try:
        demo.start()
        demo.deploy()
        summary = demo.infer()
        demo.report()
        if args.keep:
            print(summary, flush=True)
    except DemoError as error:
        progress.say(f"demo failed: {error}")
        if demo.operator is not None:
            print("--- operator log (tail) ---\n" + demo.operator.log()[-4000:], file=sys.stderr)
        if demo.kubelet is not None:
            print(f"--- pod logs: {demo.kubelet.log_dir} ---", file=sys.stderr)
    finally:
        demo.stop()
    if summary is None:
        return 1
    print(f"Annotated images: {OUTPUT.relative_to(ROOT)}/ (green: ground truth, red: detections)", flush=True)
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
