"""The synthetic shapes dataset is deterministic, so the committed detector's recorded mAP can be re-measured."""

from __future__ import annotations

import hashlib
from pathlib import Path

from synthetic import shapes


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "data.yaml"
    }


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    shapes.generate(tmp_path / "a", seed=3, train=2, val=3)
    shapes.generate(tmp_path / "b", seed=3, train=2, val=3)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert len(_digests(tmp_path / "a")) == 10  # 5 images + 5 label files


def test_val_split_does_not_depend_on_the_train_split(tmp_path: Path) -> None:
    shapes.generate(tmp_path / "full", seed=3, train=4, val=2)
    shapes.generate(tmp_path / "valonly", seed=3, train=0, val=2)
    full, alone = _digests(tmp_path / "full"), _digests(tmp_path / "valonly")
    assert {k: v for k, v in full.items() if "/val/" in k} == alone


def test_another_seed_draws_other_images(tmp_path: Path) -> None:
    shapes.generate(tmp_path / "a", seed=3, train=0, val=2)
    shapes.generate(tmp_path / "b", seed=4, train=0, val=2)
    assert _digests(tmp_path / "a") != _digests(tmp_path / "b")


def test_labels_are_normalised_boxes_of_known_classes() -> None:
    for index in range(20):
        image, boxes = shapes.render(7, "val", index)
        assert 1 <= len(boxes) <= shapes.MAX_OBJECTS
        for line in shapes.yolo_label(boxes, image.width, image.height).splitlines():
            cls, *coords = line.split()
            assert int(cls) in range(len(shapes.CLASSES))
            cx, cy, w, h = map(float, coords)
            assert 0 < w <= 1 and 0 < h <= 1
            assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
            assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6


def test_objects_do_not_hide_each_other() -> None:
    for index in range(20):
        _, boxes = shapes.render(7, "train", index)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a.overlap(b) <= shapes.MAX_OVERLAP
