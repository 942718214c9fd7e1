"""Live sampling in the served model (serving/backends/sampling.py): the token bucket chooses, a full queue drops and
counts, a daily cap holds, and what is sealed with the KEK's public key opens only with its private key, through the
operator's own key ring, and only at the place it was sealed for."""

from __future__ import annotations

import datetime
import io
import pathlib
import threading
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from kestrel.commands import samples as samples_command
from kestrel.security import errors as security_errors
from kestrel.security import kms, x25519
from kestrel.serving.backends import sampling
from kestrel.storage import layout, pvc

FOLDER = "vision/cams/0123abcd/samples"


def _public(kek: x25519.PrivateKek) -> X25519PublicKey:
    """The public key as the pod holds it: read from the PEM the operator writes."""
    loaded = serialization.load_pem_public_key(kek.public.to_pem())
    assert isinstance(loaded, X25519PublicKey)
    return loaded


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_lets_through_its_rate_and_a_bounded_burst() -> None:
    clock = Clock()
    bucket = sampling.TokenBucket(6, burst=2, clock=clock)  # one every 10 s
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now = 9.9
    assert not bucket.take()
    clock.now = 10.0
    assert bucket.take() and not bucket.take()
    clock.now = 1000.0  # a quiet quarter hour refills the burst, not 100 tokens
    assert sum(bucket.take() for _ in range(10)) == 2


def test_a_bucket_without_a_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="positive rate"):
        sampling.TokenBucket(0)


def _image(seed: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def _boxes(n: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.arange(n * 6, dtype=np.float32).reshape(n, 6)


def _ring(kek: x25519.PrivateKek) -> sampling.Unwrap:
    return samples_command.opener(x25519.key_ring([kek]))


def test_a_sealed_sample_opens_with_the_private_key_only_and_only_where_it_was_sealed() -> None:
    kek = x25519.PrivateKek.generate()
    image, boxes = _image(1), _boxes(3)
    plain = sampling.payload(image, boxes, {"pod": "p"})
    context = f"{FOLDER}/a.sample".encode()
    blob = sampling.seal(_public(kek), plain, context)
    assert image.tobytes() not in blob and plain not in blob
    opened = sampling.unpack(sampling.open_sealed(blob, context, _ring(kek)))
    assert opened.image is not None and np.array_equal(opened.image, image)
    assert opened.detections is not None and np.array_equal(opened.detections, boxes)
    assert opened.meta == {"pod": "p"}
    with pytest.raises(security_errors.KeyUnwrapError):  # another model's sample, moved here
        sampling.open_sealed(blob, b"vision/other/0123abcd/samples/a.sample", _ring(kek))
    with pytest.raises(security_errors.KeyUnwrapError):  # another model's key
        sampling.open_sealed(blob, context, _ring(x25519.PrivateKek.generate()))
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(ValueError, match="does not open"):
        sampling.open_sealed(bytes(tampered), context, _ring(kek))
    with pytest.raises(security_errors.PublicKeyOnlyError):  # what the pod holds cannot open it
        sampling.open_sealed(blob, context, samples_command.opener(kms.KeyRing(kek.public)))


def _pem(kek: x25519.PrivateKek, tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "kek.pub"
    path.write_bytes(kek.public.to_pem())
    return path


def test_chosen_images_are_sealed_to_a_mounted_folder_and_the_cli_opens_them(tmp_path: pathlib.Path) -> None:
    kek = x25519.PrivateKek.generate()
    store_root = tmp_path / "pvc"
    ref = layout.EngineRef("vision", "cams", "0123abcd")
    folder = store_root / "claim" / "engines" / ref.path / layout.SAMPLES_DIR
    folder.mkdir(parents=True)
    environ = {
        sampling.RATE_ENV: "6",
        sampling.PUBLIC_KEY_ENV: str(_pem(kek, tmp_path)),
        sampling.DIR_ENV: str(folder),
        sampling.FOLDER_ENV: f"{ref.path}/{layout.SAMPLES_DIR}",
        sampling.MAX_BYTES_ENV: str(10 << 20),
        "HOSTNAME": "cams-triton-abc",
    }
    sampler = sampling.from_environ("cams", skip=1, environ=environ)
    assert sampler is not None
    images = [_image(i) for i in range(8)]
    sampler.offer(images[:1], [_boxes(1)])  # Triton's warm-up: never sampled
    sampler.offer(images[1:], [_boxes(i) for i in range(1, 8)])  # a burst of 5 goes through, 2 wait for tokens
    sampler.drain()
    counts = sampler.taken()
    assert (counts.sent, counts.dropped) == (sampling.BURST, {})
    assert len(list(folder.glob("*.sample"))) == sampling.BURST
    for path in folder.glob("*.sample"):
        assert all(image.tobytes()[:4096] not in path.read_bytes() for image in images)

    engines = pvc.PvcStore(layout.parse_store_uri("pvc://claim/engines"), store_root)
    out, errors = tmp_path / "out", io.StringIO()
    opened = samples_command.download(engines, ref, x25519.key_ring([kek]), out, errors)
    assert opened == (sampling.BURST, 0), errors.getvalue()
    got = [sampling.unpack(path.read_bytes()) for path in sorted(out.glob("*.npz"))]
    assert [s.meta["pod"] for s in got] == ["cams-triton-abc"] * sampling.BURST
    sent = {image.tobytes(): n for n, image in enumerate(images)}
    assert sorted(sent[s.image.tobytes()] for s in got if s.image is not None) == [1, 2, 3, 4, 5]
    for s in got:
        assert s.image is not None and s.detections is not None
        assert len(s.detections) == sent[s.image.tobytes()]


def test_a_full_queue_drops_and_counts_and_the_daily_cap_holds(tmp_path: pathlib.Path) -> None:
    kek = x25519.PrivateKek.generate()
    release = threading.Event()
    uploaded: list[int] = []

    def slow(name: str, body: bytes) -> None:
        release.wait(10)
        uploaded.append(len(body))

    sampler = sampling.Sampler(
        bucket=sampling.TokenBucket(6000, burst=100),
        public=_public(kek),
        upload=slow,
        folder=FOLDER,
        include=["outputs"],
        max_bytes_per_day=10 << 20,
        queue_size=2,
    )
    sampler.offer([_image(i) for i in range(10)], [_boxes(1)] * 10)  # returns at once, the upload waits
    release.set()
    sampler.drain()
    counts = sampler.taken()
    # One is with the thread, two wait in the queue: at least 7 of the 10 are dropped, none waited for.
    assert counts.dropped["queue_full"] >= 7 and counts.sent + counts.dropped["queue_full"] == 10
    assert sampler.taken().sent == 0  # taken resets

    day = [datetime.date(2026, 1, 1)]
    capped = sampling.Sampler(
        bucket=sampling.TokenBucket(6000, burst=100),
        public=_public(kek),
        upload=lambda name, body: None,
        folder=FOLDER,
        include=["inputs"],
        max_bytes_per_day=3 * 48 * 64 * 3 + 3000,  # about three images' worth
        today=lambda: day[0],
    )
    for i in range(5):
        capped.offer([_image(i)], [_boxes(1)])
    capped.drain()
    counts = capped.taken()
    assert (counts.sent, counts.dropped) == (3, {"daily_cap": 2})
    day[0] = datetime.date(2026, 1, 2)  # a new UTC day starts a new budget
    capped.offer([_image(9)], [_boxes(1)])
    capped.drain()
    assert capped.taken().sent == 1


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({sampling.RATE_ENV: "six"}, "whole number"),
        ({sampling.RATE_ENV: "6"}, "KESTREL_SAMPLES_PUBLIC_KEY"),
    ],
)
def test_a_bad_environment_fails_the_model_load(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sampling.from_environ("cams", environ=environ)


def test_no_rate_is_no_sampler() -> None:
    assert sampling.from_environ("cams", environ={}) is None
    assert sampling.from_environ("cams", environ={sampling.RATE_ENV: "0"}) is None
