"""`make demo`: from `kubectl apply` to detections from Kestrel's own containers on a real node, on this machine.

Stages, each printed with the elapsed time: start the test bed (real kube-apiserver, etcd, controller-manager,
scheduler) with its real node (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS; see testbed/realnode.py);
build Kestrel's images from docker/ (cached) and import them into the node's runtime; `helm install` the chart,
whose operator then runs as a real pod under the chart's ServiceAccount; lay out the model claim (the project's
fixture detector and its validation images) and the engine store claim; apply
`examples/quickstart/modeldeployment.yaml` (placed on the real node); wait while the build Job (the builder image)
builds, validates and publishes the engine and the Triton Deployment (the loader and the CPU Triton image) rolls
out; send validation images over gRPC with TLS and the API key through the model's Service (and once without the
key, which must be refused); print each image's detections beside its ground truth; show `kubectl get mdep` and
the Events; tear down. Annotated images go to `demo-output/`.

The last line is `demo_detections=<n> matched_ground_truth=<m>/<k> p50_ms=<x> apply_to_ready_s=<s>`; a detection
matches a ground-truth box of the same class at IoU >= 0.5.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import yaml
from kubernetes import client, config

from kestrel import infer
from kestrel.api import crd
from kestrel.serving.backends import postprocess
from synthetic import detector
from testbed import cluster, install

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart" / "modeldeployment.yaml"
CHECKPOINT = detector.CHECKPOINT
RECORD = detector.RECORD
WORK = ROOT / ".demo"
OUTPUT = ROOT / "demo-output"
NAMESPACE = "kestrel-demo"
STORE_CLAIM = "kestrel-engines"
MODEL_CLAIM = "kestrel-models"
VALIDATION_IMAGES = 24  # the validation split the build's gate scores; the demo sends the first few
CALIBRATION_IMAGES = 64  # the first images of the training split, for the INT8 examples (their calibration.samples)
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
    models, engines = work / "claims" / MODEL_CLAIM, work / "claims" / STORE_CLAIM
    write_model_files(models)
    shutil.rmtree(engines, ignore_errors=True)
    engines.mkdir(parents=True)
    return models, engines


def write_model_files(models: pathlib.Path) -> None:
    """What the model claim holds (made anew): the fixture checkpoint and its dataset, with a relative data.yaml."""
    from synthetic import shapes  # noqa: PLC0415 - the fixture's generator, shared with the tests

    shutil.rmtree(models, ignore_errors=True)
    models.mkdir(parents=True)
    shutil.copy(CHECKPOINT, models / CHECKPOINT.name)
    record = json.loads(RECORD.read_text())
    dataset = models / "shapes"
    shapes.write_split(dataset, record["dataset"]["seed"], "val", VALIDATION_IMAGES)
    # INT8 examples calibrate on train (the first images of the detector's training split), never on val.
    shapes.write_split(dataset, record["dataset"]["seed"], "train", CALIBRATION_IMAGES)
    # Relative to the data.yaml: the claim is mounted elsewhere in the build pod than it lies here.
    lines = ["path: .", "train: images/train", "val: images/val", "names:"]
    lines += [f"  {index}: {name}" for index, name in enumerate(shapes.CLASSES)]
    (dataset / "data.yaml").write_text("\n".join(lines) + "\n")


def model_deployment(namespace: str = NAMESPACE) -> dict[str, Any]:
    """The quickstart example, placed on the real node (the test bed's other nodes are kwok's)."""
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"]["namespace"] = namespace
    return install.pin(body)


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
    return float(postprocess.iou_matrix(np.array([a]), np.array([b]))[0, 0])


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


def annotate(
    image: np.ndarray[Any, np.dtype[np.uint8]],
    detections: list[infer.Detection],
    truths: list[Truth],
    target: pathlib.Path,
) -> None:
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


# --- the cluster side ------------------------------------------------------------------------------------------


class Demo:
    def __init__(self, progress: Progress, images: int, keep: bool) -> None:
        self.progress = progress
        self.images = images
        self.keep = keep
        self.bed = cluster.Testbed()
        self.started_bed = False
        self.installed = False
        self.api: client.ApiClient | None = None
        self.name = ""
        self.apply_to_ready_s: float | None = None
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
        body = self.custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, self.name)
        return cast(dict[str, Any], body)

    # Stages.

    def start(self) -> None:
        with self.progress.stage("test bed: control plane, kwok, and the real node (kubelet, containerd, runc)"):
            self.started_bed = self.bed.up(real_node=True)
            self.api = config.new_client_from_config(config_file=str(self.bed.kubeconfig))
        with self.progress.stage("images: Kestrel's images from docker/ (cached), into the node's containerd"):
            for image in install.load_images(self.bed):
                self.progress.say(f"  {image.ref} ({image.size / 1e6:.0f} MB)")
        with self.progress.stage("helm install charts/kestrel: the CRD, RBAC, and the operator as a real pod"):
            self.installed = True
            # A short resync: the demo reports each condition as it changes.
            install.helm_install(self.bed, install.values(f"pvc://{STORE_CLAIM}/engines", resyncSeconds=2))

    def deploy(self) -> None:
        with self.progress.stage(f"claims: the fixture detector and {VALIDATION_IMAGES} validation images"):
            models, engines = prepare_claims(WORK)
            self.bed.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
            for claim in (MODEL_CLAIM, STORE_CLAIM):
                self.bed.kubectl("delete", "pv", f"{NAMESPACE}-{claim}", "--ignore-not-found")
            self.bed.kubectl("create", "namespace", NAMESPACE)
            claims = install.owned_claim(MODEL_CLAIM, models, NAMESPACE)
            self.apply(claims + install.owned_claim(STORE_CLAIM, engines, NAMESPACE))
        with self.progress.stage(f"apply {EXAMPLE.relative_to(ROOT)}"):
            body = model_deployment()
            self.name = body["metadata"]["name"]
            self.apply([body])
            applied = time.monotonic()
        with self.progress.stage("build: export, validate against the source model, publish (build Job)"):
            self.wait(BUILD_TIMEOUT, self.built)
        with self.progress.stage("rollout: the loader decrypts into memory, Triton loads the engine and turns Ready"):
            self.wait(ROLLOUT_TIMEOUT, self.ready)
        self.apply_to_ready_s = time.monotonic() - applied

    def wait(self, timeout: float, done: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + timeout
        seen = self.seen
        while time.monotonic() < deadline:
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
        return install.service_endpoint(self.bed, NAMESPACE, self.name, WORK, with_key=with_key)

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
        summary = f"demo_detections={detections} matched_ground_truth={matched}/{truths_total} p50_ms={p50:.1f}"
        return f"{summary} apply_to_ready_s={self.apply_to_ready_s:.1f}"

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
            if self.installed:
                install.helm_uninstall(self.bed)
            for claim in (MODEL_CLAIM, STORE_CLAIM):
                with contextlib.suppress(Exception):
                    self.bed.kubectl("delete", "pv", f"{NAMESPACE}-{claim}", "--ignore-not-found")
            if self.started_bed:
                self.bed.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="validation images to send (default 8)")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C, then tear down")
    parser.add_argument(
        "--claims-only",
        type=pathlib.Path,
        metavar="DIR",
        help=f"only write the model claim's files to DIR/{MODEL_CLAIM}/ (docs/quickstart-real-cluster.md), then exit",
    )
    args = parser.parse_args(argv)
    if args.claims_only is not None:
        write_model_files(args.claims_only / MODEL_CLAIM)
        print(f"Wrote {args.claims_only / MODEL_CLAIM}/: {CHECKPOINT.name} and shapes/ (data.yaml, images, labels)")
        return 0
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
        if demo.installed:
            print("--- operator log (tail) ---\n" + install.operator_log(demo.bed)[-4000:], file=sys.stderr)
    finally:
        demo.stop()
    if summary is None:
        return 1
    print(f"Annotated images: {OUTPUT.relative_to(ROOT)}/ (green: ground truth, red: detections)", flush=True)
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
