"""`kestrel infer`'s reading of the ensemble's output, and the demo's ground-truth matching (IoU >= 0.5, same class)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from kestrel import cli, infer
from testbed import demo

NAMES = {0: "circle", 1: "square"}


def test_rows_become_named_detections_and_padding_rows_are_dropped() -> None:
    rows = np.array([[10, 20, 30, 40, 0.9, 1], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 0.4, 7]], dtype=np.float32)
    found = infer._detections(rows, NAMES)
    assert [(d.class_name, round(d.score, 2), d.box) for d in found] == [
        ("square", 0.9, (10.0, 20.0, 30.0, 40.0)),
        ("7", 0.4, (1.0, 2.0, 3.0, 4.0)),  # a class the config does not name keeps its number
    ]


def test_the_api_key_never_appears_in_an_error() -> None:
    endpoint = infer.Endpoint("127.0.0.1:1", "m", api_key="s3cr3t-key-value")
    error = infer._failure(RuntimeError("header s3cr3t-key-value rejected"), endpoint)
    assert "s3cr3t-key-value" not in str(error) and "<api-key>" in str(error)
    assert "s3cr3t" not in repr(endpoint)


def test_tls_options_follow_the_files_given(tmp_path: pathlib.Path) -> None:
    plain = infer.Endpoint("h:1", "m")
    assert plain._tls() == {}
    mutual = infer.Endpoint("h:1", "m", tmp_path / "ca", tmp_path / "c", tmp_path / "k", server_name="s.ns.svc")
    options = mutual._tls()
    assert options["ssl"] is True and options["certificate_chain"].endswith("/c")
    assert options["channel_args"] == [("grpc.ssl_target_name_override", "s.ns.svc")]


def test_ground_truth_is_read_from_yolo_labels_in_pixels(tmp_path: pathlib.Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("1 0.5 0.5 0.25 0.5\n\n")
    (truth,) = demo.ground_truth(label, 320, 240)
    assert truth.class_id == 1 and truth.box == pytest.approx((120.0, 60.0, 200.0, 180.0))


def test_a_detection_matches_one_truth_of_its_class_at_iou_half_or_more() -> None:
    truths = [demo.Truth(0, (0, 0, 10, 10)), demo.Truth(1, (20, 20, 30, 30)), demo.Truth(0, (50, 50, 60, 60))]
    detections = [
        infer.Detection((0, 0, 10, 9), 0.9, 0, "circle"),  # IoU 0.9 with truth 0
        infer.Detection((0, 0, 10, 10), 0.8, 0, "circle"),  # a duplicate: truth 0 is taken
        infer.Detection((20, 20, 30, 30), 0.7, 0, "circle"),  # right place, wrong class
        infer.Detection((50, 50, 60, 65), 0.6, 0, "circle"),  # IoU 0.67 with truth 2
        infer.Detection((50, 50, 53, 53), 0.95, 0, "circle"),  # IoU 0.09: too small to match
    ]
    assert demo.match(detections, truths) == [0, None, 3]


def test_infer_takes_the_api_key_from_a_file_or_the_environment_never_a_flag() -> None:
    parser = cli.build_parser()
    parsed = parser.parse_args(["infer", "--endpoint", "h:1", "--model", "m", "--image", "a.png", "--api-key", "x"])
    assert not hasattr(parsed, "api_key")  # at most a prefix of --api-key-file: a path, not the key
    assert parsed.api_key_file == pathlib.Path("x")
    parsed = parser.parse_args(["infer", "--endpoint", "h:1", "--model", "m", "--image", "a.png", "--concurrency=8"])
    assert parsed.concurrency == 8 and parsed.api_key_file is None
