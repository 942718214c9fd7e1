"""Serving overhead: one engine and pipeline in-process (bare ONNX Runtime) and through Triton (gRPC, TLS, API key).

    .venv/bin/python -m bench.serving [--seconds 15] [--write-docs]

One run, one machine, same engine, same images: `kestrel build` builds the quickstart's engine (the fixture detector,
ONNX FP32, Triton's Python-backend runtime) twice, with dynamic batching on and off, and then

- bare: the repository's own preprocessing, the engine in ONNX Runtime and the NMS, called in this process, at
  batch 1 (latency) and batch 8 (throughput per image); its best throughput is the reference;
- triton: the `tritonserver` that nvidia-pytriton ships (`testbed.triton`), serving the repository's one fused
  Python-backend model (preprocessing, engine and NMS in one step) over gRPC with the operator's TLS (a CA and a
  server certificate from `kestrel.security.certificates`) and the API key, with 1 and 8 concurrent clients
  (threads, one gRPC channel each), dynamic batching on and off.

Rows report p50/p95 latency per request and throughput in images per second over `--seconds` of sustained load
after a warm-up. Printed last: `serving_efficiency` (Triton's best throughput at 8 clients / bare's best),
`triton_overhead` (Triton p50 at 1 client, batching on / bare p50 at batch 1) and `batching_gain` (Triton throughput
at 8 clients, batching on / off). Goals (issue 6): efficiency >= 0.85, overhead <= 1.15.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import pathlib
import platform
import resource
import statistics
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench import doc_sections
from kestrel import infer
from kestrel.api import spec as api
from kestrel.engine import pipeline
from kestrel.security import certificates
from kestrel.serving.backends import fused, postprocess, preprocess, runtime
from synthetic import detector
from testbed import triton

ROOT = pathlib.Path(__file__).resolve().parents[1]

DOCS = doc_sections.DOCS
MODEL = "shapes"
API_KEY = "bench-api-key"
BATCH = 8
CLIENTS = (1, 8)


@dataclasses.dataclass
class Row:
    name: str
    clients: int
    p50_ms: float
    p95_ms: float
    throughput: float  # images per second
    mean_ms: float
    where: Where


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a row's time went: Triton's own statistics (means per request) and CPU time per image by process."""

    triton_ms: float | None = None  # from Triton receiving a request to its response: queue, copies, execute
    queue_ms: float | None = None  # waiting in the dynamic batcher's queue
    execute_ms: float | None = None  # the Python model's execute() that answered it, stub round trip included
    batch: float | None = None  # requests per execute()
    model_cpu_ms: float = 0.0  # the pipeline's own process: the Python stub, or this process for the bare rows
    triton_cpu_ms: float | None = None  # tritonserver itself: gRPC, TLS, scheduling, copies
    client_cpu_ms: float | None = None  # this process driving the clients


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pct(values: list[float], q: int) -> float:
    return float(statistics.quantiles(values, n=100, method="inclusive")[q - 1]) if len(values) > 1 else values[0]


def build(work: pathlib.Path, shapes: detector.ShapesDetector, batching: bool) -> pathlib.Path:
    data = f"file://{shapes.data_yaml}"
    spec = api.parse(
        {
            "model": {"source": {"uri": f"file://{shapes.checkpoint}", "sha256": shapes.sha256}, "imgsz": shapes.imgsz},
            "engine": {"format": "onnx", "precision": "fp32", "batch": {"max": BATCH}},
            "validation": {"dataset": data},
            "target": {"environment": "cpu"},
            "serving": {"triton": {"runtime": "python", "dynamicBatching": {"enabled": batching}}},
        }
    )
    out = work / ("batching-on" if batching else "batching-off")
    built = pipeline.build(spec, out, pipeline.BuildOptions(model_name=MODEL, validation_limit=16, iterations=10))
    if not built.passed or built.repository is None:
        raise SystemExit(f"the build did not pass its gate: {built.result.gate.message}")
    return built.repository


def _config(repository: pathlib.Path) -> model_config_pb2.ModelConfig:
    text = (repository / MODEL / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _parameters(repository: pathlib.Path) -> dict[str, str]:
    return {key: value.string_value for key, value in _config(repository).parameters.items()}


def batcher(repository: pathlib.Path) -> str:
    """The dynamic batcher the build chose from its profile (serving/config.py choose_batching)."""
    config = _config(repository)
    if not config.HasField("dynamic_batching"):
        return "off"
    preferred = list(config.dynamic_batching.preferred_batch_size)
    delay = config.dynamic_batching.max_queue_delay_microseconds
    return f"preferred batch {preferred or 'none'}, queue delay {delay} µs"


class Bare:
    """The served pipeline without the server: the served model's own `detect` (backends/fused.py), with the
    parameters and the engine file its repository holds, called directly."""

    def __init__(self, repository: pathlib.Path) -> None:
        params = _parameters(repository)
        self.pre = preprocess.Preprocessing.from_json(params["preprocessing"])
        self.post = postprocess.Postprocessing.from_json(params["postprocessing"])
        engine_file = repository / MODEL / "1" / params["engine_file"]
        threads = int(params.get("threads", "0"))
        self.run = runtime.load(str(engine_file), params["inference_precision"], threads, self.pre.imgsz)

    def detect(self, images: list[infer.Image]) -> list[np.ndarray[Any, Any]]:
        # One request of len(images) images, as Triton's execute() gets a batch.
        return fused.detect([images], self.run, self.pre, self.post)


def _round_robin(items: list[Any], send: Callable[[int, Any], object]) -> Callable[[int], None]:
    """A call for `sustained`: client `index` sends the items in turn, each client from its own position."""
    positions: dict[int, int] = {}

    def call(index: int) -> None:
        position = positions.get(index, index)
        positions[index] = position + 1
        send(index, items[position % len(items)])

    return call


def sustained(seconds: float, clients: int, call: Callable[[int], None]) -> tuple[list[float], float]:
    """Each of `clients` threads calls `call(client)` back to back for `seconds`; latencies (ms) and requests/s."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        while time.monotonic() < stop:
            began = time.perf_counter()
            call(index)
            latencies[index].append((time.perf_counter() - began) * 1000)

    began = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [value for values in latencies for value in values]
    return flat, len(flat) / (time.monotonic() - began)


def bench_bare(repository: pathlib.Path, images: list[infer.Image], seconds: float) -> list[Row]:
    bare = Bare(repository)
    rows = []
    for size in (1, BATCH):
        batches = [images[i : i + size] for i in range(0, len(images) - size + 1, size)]
        for warm in batches[:3]:
            bare.detect(warm)
        cpu = _own_cpu_seconds()
        latencies, rate = sustained(seconds, 1, _round_robin(batches, lambda _, batch: bare.detect(batch)))
        where = Where(batch=size, model_cpu_ms=(_own_cpu_seconds() - cpu) * 1000 / (len(latencies) * size))
        name = f"bare ONNX Runtime, batch {size}"
        rows.append(Row(name, 1, _pct(latencies, 50), _pct(latencies, 95), rate * size, _mean(latencies), where))
    return rows


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


@dataclasses.dataclass(frozen=True)
class Served:
    endpoint: infer.Endpoint
    pid: int  # tritonserver's; its Python stubs are its children

    def statistics(self) -> dict[str, Any]:
        """The model's cumulative statistics (Triton's statistics extension, over the same TLS channel)."""
        import tritonclient.grpc as grpcclient  # noqa: PLC0415

        endpoint = self.endpoint
        options = [("grpc.ssl_target_name_override", endpoint.server_name)]
        with grpcclient.InferenceServerClient(
            endpoint.address, ssl=True, root_certificates=str(endpoint.ca_file), channel_args=options
        ) as client:
            found = client.get_inference_statistics(MODEL, headers=endpoint.headers(), as_json=True)
        stats: dict[str, Any] = found["model_stats"][0]
        return stats

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time so far of tritonserver and of its Python stubs."""
        return _cpu_seconds(self.pid), sum(_cpu_seconds(child) for child in _children(self.pid))


@contextlib.contextmanager
def served(repository: pathlib.Path, work: pathlib.Path) -> Iterator[Served]:
    now = datetime.datetime.now(datetime.UTC)
    ca = certificates.create_ca(now=now)
    server = certificates.issue_server(ca, name=MODEL, namespace="bench", now=now)
    tls = work / "tls"
    tls.mkdir(exist_ok=True)
    (tls / "ca.crt").write_bytes(ca.certificate_pem())
    (tls / "tls.crt").write_bytes(server.certificate_pem())
    (tls / "tls.key").write_bytes(server.private_key_pem())
    restricted = f"inference,model-config,metadata:kestrel-api-key={API_KEY}"
    args = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={tls / 'tls.crt'}",
        f"--grpc-server-key={tls / 'tls.key'}",
        f"--grpc-root-cert={tls / 'ca.crt'}",
        f"--grpc-restricted-protocol={restricted}",
        "--model-control-mode=explicit",
        "--disable-auto-complete-config",
    ]
    with triton.TritonServer(repository, models=[MODEL], extra_args=args) as running:
        running.wait_ready(MODEL, timeout=180)
        assert running.pid is not None
        endpoint = infer.Endpoint(
            running.urls["grpc"], MODEL, ca_file=tls / "ca.crt", server_name=f"{MODEL}.bench.svc", api_key=API_KEY
        )
        yield Served(endpoint, running.pid)


def bench_triton(server: Served, images: list[infer.Image], seconds: float, label: str) -> list[Row]:
    rows = []
    for clients in CLIENTS:
        connections = [infer.Client(server.endpoint) for _ in range(clients)]
        try:
            for connection in connections:
                for image in images[:3]:
                    connection.detect(image)

            def send(index: int, image: infer.Image, opened: list[infer.Client] = connections) -> None:
                opened[index].detect(image)

            before, cpu = server.statistics(), (*server.cpu_seconds(), _own_cpu_seconds())
            latencies, rate = sustained(seconds, clients, _round_robin(images, send))
            after, cpu_after = server.statistics(), (*server.cpu_seconds(), _own_cpu_seconds())
        finally:
            for connection in connections:
                connection.close()
        where = _where(before, after, [b - a for a, b in zip(cpu, cpu_after, strict=True)])
        name = f"Triton gRPC+TLS, {label}"
        rows.append(Row(name, clients, _pct(latencies, 50), _pct(latencies, 95), rate, _mean(latencies), where))
    return rows


def _where(before: dict[str, Any], after: dict[str, Any], cpu: list[float]) -> Where:
    """Means per request over the row, from two readings of Triton's cumulative statistics and CPU times."""

    def delta(kind: str) -> tuple[int, int]:
        old, new = before["inference_stats"].get(kind, {}), after["inference_stats"].get(kind, {})
        return int(new.get("count", 0)) - int(old.get("count", 0)), int(new.get("ns", 0)) - int(old.get("ns", 0))

    requests, request_ns = delta("success")
    _, execute_ns = delta("compute_infer")
    _, queue_ns = delta("queue")
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    triton_cpu, model_cpu, client_cpu = (seconds * 1000 / max(requests, 1) for seconds in cpu)
    return Where(
        triton_ms=request_ns / max(requests, 1) / 1e6,
        queue_ms=queue_ns / max(requests, 1) / 1e6,
        execute_ms=execute_ns / max(requests, 1) / 1e6,
        batch=requests / max(executions, 1),
        model_cpu_ms=model_cpu,
        triton_cpu_ms=triton_cpu,
        client_cpu_ms=client_cpu,
    )


def table(rows: list[Row], reference: float) -> list[str]:
    lines = [
        "| path | clients | p50 ms | p95 ms | images/s | vs bare best |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.clients} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.throughput:.1f} "
        f"| {r.throughput / reference:.2f} |"
        for r in rows
    ]
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def where_table(rows: list[Row]) -> list[str]:
    lines = [
        "| path | clients | mean ms | in Triton ms | queue ms | execute ms | images/execute "
        "| CPU ms/image: model | Triton | client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.clients} | {r.mean_ms:.1f} | {_ms(r.where.triton_ms)} | {_ms(r.where.queue_ms)} "
        f"| {_ms(r.where.execute_ms)} "
        f"| {_ms(r.where.batch)} | {r.where.model_cpu_ms:.1f} | {_ms(r.where.triton_cpu_ms)} "
        f"| {_ms(r.where.client_cpu_ms)} |"
        for r in rows
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="sustained load per row")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the Serving section of {DOCS}")
    args = parser.parse_args()
    if not triton.available():
        raise SystemExit("tritonserver from nvidia-pytriton is not installed: make setup")
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-serving-") as folder:
        work = pathlib.Path(folder)
        shapes = detector.shapes_detector(work / "data", val=16)
        images = [infer.read_image(p) for p in sorted(shapes.val_images.glob("*.png"))]
        load_before = os.getloadavg()[0]
        print("building the engine with dynamic batching on and off ...", flush=True)
        repositories = {True: build(work, shapes, True), False: build(work, shapes, False)}
        chosen = batcher(repositories[True])
        rows = bench_bare(repositories[True], images, args.seconds)
        for batching in (True, False):
            label = "batching " + ("on" if batching else "off")
            with served(repositories[batching], work / label.replace(" ", "-")) as server:
                rows += bench_triton(server, images, args.seconds, label)
        load_after = os.getloadavg()[0]
    bare_best = max(r.throughput for r in rows if r.name.startswith("bare"))
    bare_p50 = next(r.p50_ms for r in rows if r.name == "bare ONNX Runtime, batch 1")
    on = {r.clients: r for r in rows if r.name.endswith("batching on")}
    off = {r.clients: r for r in rows if r.name.endswith("batching off")}
    efficiency = max(on[8].throughput, off[8].throughput) / bare_best
    overhead = on[1].p50_ms / bare_p50
    gain = on[8].throughput / off[8].throughput
    lines = [*table(rows, bare_best), "", *where_table(rows)]
    print("\n".join(lines))
    summary = f"serving_efficiency={efficiency:.2f} triton_overhead={overhead:.2f} batching_gain={gain:.2f}"
    if args.write_docs:
        _write_docs(lines, explain(rows, chosen), summary, args, (load_before, load_after))
    print(summary)


def explain(rows: list[Row], chosen: str) -> list[str]:
    """The run's own numbers, read into where the time went; only arithmetic on what was measured."""
    bare = {r.where.batch: r for r in rows if r.name.startswith("bare")}
    on = {r.clients: r for r in rows if r.name.endswith("batching on")}
    one, many = on[1].where, on[8].where
    assert one.triton_ms is not None and one.execute_ms is not None and one.queue_ms is not None
    around = one.triton_ms - one.execute_ms - one.queue_ms
    outside = (many.triton_cpu_ms or 0) + (many.client_cpu_ms or 0)
    text = (
        f"Where the time went (second table: means per request, CPU time per image by process). Dynamic batching "
        f"as the build chose it from its profile: {chosen}. At 1 client, a {on[1].mean_ms:.1f} ms round trip "
        f"against {bare[1].mean_ms:.1f} ms bare: {one.execute_ms:.1f} ms in the model's execute() (letterbox, engine, "
        f"NMS and the trip to the Python stub), {one.queue_ms:.1f} ms queued for a batch, {around:.1f} ms elsewhere "
        f"in Triton (copies, scheduling) and {on[1].mean_ms - one.triton_ms:.1f} ms in gRPC, TLS and the client. "
        f"At 8 clients Triton ran {many.batch or 0:.1f} images per execute(); each image cost the model's process "
        f"{many.model_cpu_ms:.1f} ms of CPU (bare at batch {BATCH}: {bare[BATCH].where.model_cpu_ms:.1f} ms), and "
        f"tritonserver and the clients {outside:.1f} ms more, on the same {os.cpu_count()} cores: at full load, CPU "
        "time the engine does not get."
    )
    return textwrap.wrap(text, width=110)


def _write_docs(
    lines: list[str], explanation: list[str], summary: str, args: argparse.Namespace, load: tuple[float, float]
) -> None:
    section = "\n".join(
        [
            "## Serving",
            "",
            "The quickstart's engine (fixture detector, ONNX FP32, imgsz 320) and its whole pipeline (letterbox,",
            "engine, NMS) called in-process, against the same repository served by the Triton that nvidia-pytriton",
            "ships over gRPC with TLS and the API key. That Triton has only the Python backend, so the repository is",
            "the Python runtime's one model (serving/backends/fused.py): each execute() letterboxes the images of a",
            "dynamic batch, runs ONNX Runtime once on all of them and applies the NMS, the same functions the bare",
            "path calls. One run, same machine, same images; sustained load per row after a warm-up. Goals:",
            "Triton's best throughput at 8 clients >= 0.85x the bare runtime's best, and p50 at 1 client <= 1.15x",
            "bare at batch 1.",
            "",
            *lines,
            "",
            f"`{summary}`",
            "",
            *explanation,
            "",
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, {os.cpu_count()}",
            f"CPUs, 1-minute load average {load[0]:.1f} before and {load[1]:.1f} after (the benchmark's own load",
            "shows in the second figure; a first figure above 1 means other work shared the machine).",
            f"Reproduce with `.venv/bin/python -m bench.serving --seconds {args.seconds:g} --write-docs`.",
            "",
        ]
    )
    doc_sections.replace("Serving", section)


if __name__ == "__main__":
    main()
