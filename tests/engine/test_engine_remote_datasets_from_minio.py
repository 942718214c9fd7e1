"""Datasets on s3://: one archive, verified by its sha256, fetched once, scored and calibrated on, against a real
S3 server (the test bed's MinIO binary on loopback) and a real INT8 build of the committed detector."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

import pytest

from kestrel.api import errors as api_errors
from kestrel.engine import errors, fetch, pipeline
from kestrel.storage import s3
from synthetic import detector
from tests.engine import builds
from tests.engine.minio_support import PASSWORD, USER, minio, put

__all__ = ["minio"]  # the fixture, used by name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> detector.ShapesDetector:
    return detector.shapes_detector(tmp_path_factory.mktemp("shapes"))


def _archive(shapes: detector.ShapesDetector, target: Path) -> bytes:
    """The fixture's dataset as a user would pack it: data.yaml at the root, paths relative to it."""
    root = shapes.data_yaml.parent
    relative = target.parent / "data.yaml"
    text = shapes.data_yaml.read_text().splitlines()
    relative.write_text("\n".join(["path: ."] + [line for line in text if not line.startswith("path:")]) + "\n")
    with tarfile.open(target, "w:gz") as tar:
        tar.add(relative, arcname="data.yaml")
        tar.add(root / "images", arcname="images")
        tar.add(root / "labels", arcname="labels")
    return target.read_bytes()


def _secret(folder: Path, credentials: s3.Credentials) -> Path:
    folder.mkdir()
    values = {"AWS_ACCESS_KEY_ID": USER, "AWS_SECRET_ACCESS_KEY": PASSWORD, "AWS_ENDPOINT_URL": credentials.endpoint}
    for key, value in values.items():
        (folder / key).write_text(value)
    return folder


def _spec(shapes: detector.ShapesDetector, digest: str) -> dict[str, Any]:
    raw = builds.spec(shapes, {"format": "onnx", "precision": "int8"})
    remote = {"dataset": "s3://datasets/shapes.tar.gz", "datasetSha256": digest}
    raw["engine"]["calibration"] = {**remote, "samples": detector.CALIBRATION_IMAGES}
    raw["validation"] = {**remote, "maxMapDrop": 0.05}
    return raw


def _upload(
    minio: s3.Credentials, shapes: detector.ShapesDetector, tmp_path: Path, *, appended: bytes = b""
) -> tuple[str, pipeline.BuildOptions]:
    """The packed dataset in the bucket (with `appended` bytes, to tamper with it); its true digest, and build
    options holding the bucket's credentials as a mounted Secret."""
    (tmp_path / "pack").mkdir()
    body = _archive(shapes, tmp_path / "pack" / "shapes.tar.gz")
    put(minio, "datasets", b"")
    put(minio, "datasets/shapes.tar.gz", body + appended)
    credentials = _secret(tmp_path / "s", minio)
    return hashlib.sha256(body).hexdigest(), pipeline.BuildOptions(
        iterations=5, fetch=fetch.FetchOptions(credentials_dir=credentials)
    )


def test_an_int8_build_scores_and_calibrates_on_one_archive_fetched_once(
    minio: s3.Credentials, shapes: detector.ShapesDetector, tmp_path: Path
) -> None:
    digest, options = _upload(minio, shapes, tmp_path)
    out = tmp_path / "out"
    built = pipeline.build(builds.parse(_spec(shapes, digest)), out, options)
    result, _ = builds.check_outputs(out)
    # Scored on the archive's val split, calibrated on its train split: both measured, neither the other.
    assert result.validation.map_source is not None and result.validation.map_engine is not None
    assert result.validation.map_source > 0.5, result.validation
    assert built.result.gate.reason in ("Passed", "AccuracyDrop")
    unpacked = [p.name for p in (out / "work" / pipeline.DATASETS).iterdir()]
    assert unpacked == [digest], unpacked  # one fetch for both fields, no archive left


def test_a_wrong_digest_stops_the_build_before_any_work_naming_the_field(
    minio: s3.Credentials, shapes: detector.ShapesDetector, tmp_path: Path
) -> None:
    digest, options = _upload(minio, shapes, tmp_path, appended=b"tampered")
    with pytest.raises(errors.ChecksumMismatchError, match=r"^spec\.engine\.calibration\.datasetSha256: "):
        pipeline.build(builds.parse(_spec(shapes, digest)), tmp_path / "out", options)


def test_without_credentials_the_dataset_field_and_the_secret_are_named(
    shapes: detector.ShapesDetector, tmp_path: Path
) -> None:
    options = pipeline.BuildOptions(iterations=5, fetch=fetch.FetchOptions(credentials_dir=tmp_path))
    with pytest.raises(api_errors.SpecError, match="credentialsSecret") as refused:
        pipeline.build(builds.parse(_spec(shapes, "a" * 64)), tmp_path / "out", options)
    assert refused.value.field == "spec.engine.calibration.dataset"
