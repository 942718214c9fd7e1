"""The real Triton (nvidia-pytriton's, Python backend) samples live requests into a private MinIO: at the configured
rate, only below the engine's samples folder (the grant refuses anything else), as ciphertext, and the operator's
`kestrel samples download` opens them to the very images sent and the detections answered. Also times the served
model with sampling on and off, interleaved, on the same engine."""

from __future__ import annotations

import datetime
import io
import re
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kestrel.commands import samples as samples_command
from kestrel.engine import datasets
from kestrel.security import x25519
from kestrel.serving.backends import drift, sampling
from kestrel.storage import layout, s3
from synthetic import detector
from testbed import minio
from testbed.ports import free_port
from tests.engine import builds
from tests.engine.test_engine_triton_serves_the_validated_pipeline import triton

pytestmark = pytest.mark.slow
pytest.importorskip("pytriton")
RATE = 120  # a minute: two a second, after a burst of sampling.BURST
TIMED = 40  # requests per server in the interleaved timing


def _infer(client: Any, image: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    import tritonclient.http as http  # noqa: PLC0415

    tensor = http.InferInput("IMAGE", [1, *image.shape], "UINT8")
    tensor.set_data_from_numpy(image[None])
    answer: np.ndarray[Any, Any] = client.infer("shapes", [tensor]).as_numpy("DETECTIONS")[0]
    return answer[answer[:, 5] >= 0]  # padding rows have class -1


def _wait_for(engines: s3.S3Store, ref: layout.EngineRef, at_least: int) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = engines.list_files(ref, layout.SAMPLES_DIR)
        if len(found) >= at_least:
            time.sleep(1.0)  # and nothing more comes
            return engines.list_files(ref, layout.SAMPLES_DIR)
        time.sleep(0.2)
    pytest.fail(f"only {engines.list_files(ref, layout.SAMPLES_DIR)} arrived")


def test_live_requests_are_sampled_sealed_into_the_samples_folder_and_open_with_the_kek(tmp_path: Path) -> None:
    shapes = detector.shapes_detector(tmp_path / "data", val=10)
    built = builds.python_runtime_engine(shapes, tmp_path / "out")
    assert built.passed and built.repository is not None
    assert (built.repository / "shapes" / "1" / "sampling.py").is_file()
    images = [datasets.read_rgb(path) for path in datasets.load(shapes.data_yaml).images("val")]

    kek = x25519.PrivateKek.generate()
    public = tmp_path / "kek.pub"
    public.write_bytes(kek.public.to_pem())
    ref = layout.EngineRef("vision", "shapes", "0123456789abcdef")
    with minio.MinioServer(bucket="engines", log_dir=tmp_path) as connection:
        location = layout.parse_store_uri(f"s3://{connection.bucket}/prod")
        engines = s3.S3Store(location, s3.Credentials.load(None, connection.environment()))
        grant = engines.upload_grant(
            ref, datetime.timedelta(hours=1), within=layout.SAMPLES_DIR, max_size=layout.MAX_SAMPLE_SIZE
        )
        grant_file = tmp_path / "grant.json"
        grant_file.write_text(grant.to_json())
        # The grant is for the samples folder only: the engine beside it, and other models, are out of its reach.
        for outside in (f"prod/{ref.path}/manifest.json", f"prod/vision/other/{ref.key}/samples/x.sample"):
            with pytest.raises(OSError, match="HTTP 403"):
                sampling._post(grant.url, {**grant.fields, "key": outside}, b"x")

        env = {
            drift.WINDOW_ENV: "0",
            sampling.RATE_ENV: str(RATE),
            sampling.MAX_BYTES_ENV: str(256 << 20),
            sampling.PUBLIC_KEY_ENV: str(public),
            sampling.GRANT_ENV: str(grant_file),
            sampling.FOLDER_ENV: f"{ref.path}/{layout.SAMPLES_DIR}",
            "HOSTNAME": "shapes-triton-0",
        }
        metrics_port = free_port()
        import tritonclient.http as http  # noqa: PLC0415

        with triton(built.repository, tmp_path / "backends", metrics_port=metrics_port, env=env) as port:
            client = http.InferenceServerClient(f"127.0.0.1:{port}")
            started = time.monotonic()
            answers = [_infer(client, image) for image in images * 2]
            elapsed = time.monotonic() - started
            allowed = sampling.BURST + int(elapsed * RATE / 60) + 1
            names = _wait_for(engines, ref, sampling.BURST)
            _infer(client, images[0])  # brings the thread's counts into Triton's metrics
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
                metrics_page = page.read().decode()
        assert sampling.BURST <= len(names) <= min(allowed, len(answers)), (len(names), elapsed)
        assert len(names) < len(answers), "every request was sampled: the rate did not hold"
        counted = re.search(r'^kestrel_samples_total\{model="shapes"\} (\d+)', metrics_page, re.MULTILINE)
        # The last request's own sample may be counted already, or not yet.
        assert counted is not None and int(counted.group(1)) in (len(names), len(names) + 1), metrics_page
        names = engines.list_files(ref, layout.SAMPLES_DIR)  # the model's finalize sent what was queued

        client_minio = engines._client
        everything = [obj.object_name for obj in client_minio.list_objects(connection.bucket, recursive=True)]
        assert everything and all(name.startswith(f"prod/{ref.path}/{layout.SAMPLES_DIR}/") for name in everything), (
            everything
        )
        for name in names:
            blob = engines.read_file(ref, f"{layout.SAMPLES_DIR}/{name}", layout.MAX_SAMPLE_SIZE)
            assert blob.startswith(sampling.MAGIC)
            assert all(image.tobytes()[1000:5096] not in blob for image in images), f"{name} holds image bytes"

        out, errors = tmp_path / "opened", io.StringIO()
        opened = samples_command.download(engines, ref, x25519.key_ring([kek]), out, errors)
        assert opened == (len(names), 0), errors.getvalue()
        other = x25519.key_ring([x25519.PrivateKek.generate()])
        assert samples_command.download(engines, ref, other, tmp_path / "other", io.StringIO()) == (0, len(names))
    sent = {image.tobytes(): n for n, image in enumerate(images)}
    for path in sorted(out.glob("*.npz")):
        sample = sampling.unpack(path.read_bytes())
        assert sample.image is not None and sample.detections is not None
        assert sample.image.tobytes() in sent, "a sample is not an image that was sent"
        expected = answers[sent[sample.image.tobytes()]]
        np.testing.assert_allclose(sample.detections, expected, atol=1e-4)
        assert sample.meta["pod"] == "shapes-triton-0"


def test_the_cost_of_sampling_per_request_interleaved(tmp_path: Path) -> None:
    """Two servers of one engine at once, one sampling at the highest rate the spec allows into a folder, the
    other not; requests alternate between them, so both see the same load on the shared cores."""
    shapes = detector.shapes_detector(tmp_path / "data", val=10)
    built = builds.python_runtime_engine(shapes, tmp_path / "out")
    assert built.repository is not None
    images = [datasets.read_rgb(path) for path in datasets.load(shapes.data_yaml).images("val")]
    public = tmp_path / "kek.pub"
    public.write_bytes(x25519.PrivateKek.generate().public.to_pem())
    folder = tmp_path / "samples"
    folder.mkdir()
    on = {
        drift.WINDOW_ENV: "0",
        sampling.RATE_ENV: "600",
        sampling.MAX_BYTES_ENV: str(256 << 20),
        sampling.PUBLIC_KEY_ENV: str(public),
        sampling.DIR_ENV: str(folder),
        sampling.FOLDER_ENV: "vision/shapes/0123/samples",
    }
    import tritonclient.http as http  # noqa: PLC0415

    took: dict[str, list[float]] = {"on": [], "off": []}
    with (
        triton(built.repository, tmp_path / "b-on", env=on) as port_on,
        triton(built.repository, tmp_path / "b-off", env={drift.WINDOW_ENV: "0"}) as port_off,
    ):
        clients = {
            "on": http.InferenceServerClient(f"127.0.0.1:{port_on}"),
            "off": http.InferenceServerClient(f"127.0.0.1:{port_off}"),
        }
        for client in clients.values():
            _infer(client, images[0])
        for n in range(TIMED):
            for which in ("on", "off") if n % 2 else ("off", "on"):
                started = time.perf_counter()
                _infer(clients[which], images[n % len(images)])
                took[which].append((time.perf_counter() - started) * 1000)
    sampled = len(list(folder.glob("*.sample")))
    assert sampled >= sampling.BURST
    print(
        f"p50 ms sampling on (600/min, {sampled} samples sealed) {statistics.median(took['on']):.2f}, "
        f"off {statistics.median(took['off']):.2f}; mean {statistics.mean(took['on']):.2f} / "
        f"{statistics.mean(took['off']):.2f} (n={TIMED} each, interleaved)"
    )
