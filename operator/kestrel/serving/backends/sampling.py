"""Sampling of live requests: a few of the images the served model answers, and its answers, sealed to the store.

Copied into the Triton repository beside the fused model (the Python runtime, fused.py), which offers every
execution's images and boxes to `Sampler.offer`. numpy, the standard library and `cryptography` only: the model's
files import nothing of Kestrel.

- **Which**: a token bucket (`TokenBucket`) of `KESTREL_SAMPLES_RATE` images a minute, one token an image, at most
  `BURST` at once. Triton's warm-up executions are skipped.
- **Never on the request's time**: a chosen image is copied (Triton reuses the request's memory once `execute`
  returns) and put on a bounded queue (`QUEUE_SIZE`) without waiting; a full queue drops the sample and counts it. A
  daemon thread seals and uploads.
- **Sealed to the model's key-encryption key**: the pod holds only the KEK's public key (`KESTREL_SAMPLES_PUBLIC_KEY`,
  a PEM file), so it can seal samples and read none back. A fresh data key per sample is wrapped exactly as
  `kestrel.security.x25519.PublicKek.wrap` wraps an engine's data key (X25519 ephemeral-static, HKDF-SHA256,
  AES-256-GCM, the same domain string), so the operator's key ring unwraps it with `envelope.unwrap`; the sample
  itself is one AES-256-GCM message under that data key (a sample is small; the engines' chunked format exists for
  files of gigabytes). Both the wrap and the message are bound to the sample's name in the store (`context`), so a
  sample moved to another model's or revision's folder does not open.
- **Where**: `KESTREL_SAMPLES_GRANT`, an upload grant (`kestrel.storage.grants`, a POST policy for the samples folder
  of this revision's engine, renewed by the operator; the file is read again for every upload), or
  `KESTREL_SAMPLES_DIR`, a writable mount of that folder on a pvc:// store. `KESTREL_SAMPLES_FOLDER` is the folder's
  name below the store's prefix (`<namespace>/<name>/<engine key>/samples`), which every sample's context starts with.
- **How much**: at most `KESTREL_SAMPLES_MAX_BYTES_PER_DAY` sealed bytes per pod and UTC day; a sample past it is
  dropped and counted.

A sealed sample (`<UTC time>-<pod>-<n>.sample`):

    MAGIC || u16 header length || header (JSON: kekId, wrappedKey, nonce, both base64) || AES-256-GCM(payload)

and the payload, once opened, an `.npz` (numpy, no pickle) of `image` (uint8 HxWx3, if inputs are included),
`detections` (float32 n x 6: x0 y0 x1 y1 score class, if outputs are) and `meta` (JSON: time, model, pod, shape).

Metrics (Triton custom metrics, label `model`; updated from `execute`, the thread only counts):
    kestrel_samples_total              samples uploaded
    kestrel_samples_dropped_total{reason}   queue_full, daily_cap, failed (sealing or upload)
    kestrel_samples_bytes_total        sealed bytes uploaded
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import http.client
import importlib
import io
import json
import os
import queue
import secrets
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RATE_ENV = "KESTREL_SAMPLES_RATE"  # images a minute; 0 or absent: sampling off
MAX_BYTES_ENV = "KESTREL_SAMPLES_MAX_BYTES_PER_DAY"
INCLUDE_ENV = "KESTREL_SAMPLES_INCLUDE"  # "inputs,outputs", "inputs" or "outputs"
PUBLIC_KEY_ENV = "KESTREL_SAMPLES_PUBLIC_KEY"
GRANT_ENV = "KESTREL_SAMPLES_GRANT"
DIR_ENV = "KESTREL_SAMPLES_DIR"
FOLDER_ENV = "KESTREL_SAMPLES_FOLDER"
INCLUDES = ("inputs", "outputs")

MAGIC = b"KSMP\x01"
SUFFIX = ".sample"
BURST = 5  # tokens the bucket holds: a quiet minute does not let a burst of more through
QUEUE_SIZE = 8  # samples waiting for the thread; a 640x640 image is 1.2 MB, so at most ~10 MB held
UPLOAD_TIMEOUT = 30.0
# The wrap of `kestrel.security.x25519`, byte for byte: the operator's key ring must unwrap what is sealed here.
_WRAP_DOMAIN = b"kestrel/wrap/x25519-hkdf-sha256-aes256gcm/v1"
_ID_DOMAIN = b"kestrel/kek-id/x25519/v1\x00"
_KEY_SIZE = 32
_NONCE_SIZE = 12
_HEADER_LENGTH = struct.Struct(">H")

Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens a minute, at most `burst` held; starts full."""

    def __init__(self, rate_per_minute: float, burst: int = BURST, clock: Clock = time.monotonic) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._per_second, self._burst, self._clock = rate_per_minute / 60.0, float(burst), clock
        self._tokens, self._last = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._per_second)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def key_id(public: x25519.X25519PublicKey) -> str:
    return "x25519/" + hashlib.sha256(_ID_DOMAIN + public.public_bytes_raw()).hexdigest()[:16]


def _derive(shared: bytes, enc: bytes, recipient: bytes, context: bytes) -> tuple[AESGCM, bytes]:
    info = _WRAP_DOMAIN + b"\x00" + enc + recipient + context
    okm = HKDF(hashes.SHA256(), _KEY_SIZE + _NONCE_SIZE, salt=_WRAP_DOMAIN, info=info).derive(shared)
    return AESGCM(okm[:_KEY_SIZE]), okm[_KEY_SIZE:]


def wrap(public: x25519.X25519PublicKey, data_key: bytes, context: bytes) -> bytes:
    """`x25519.PublicKek.wrap`: ephemeral public key, then the AES-GCM of the data key under the derived key."""
    ephemeral = x25519.X25519PrivateKey.generate()
    enc = ephemeral.public_key().public_bytes_raw()
    aead, nonce = _derive(ephemeral.exchange(public), enc, public.public_bytes_raw(), context)
    return enc + aead.encrypt(nonce, data_key, context)


def seal(public: x25519.X25519PublicKey, payload: bytes, context: bytes) -> bytes:
    """`payload` sealed to `public`, bound to `context`: only the holder of the private key opens it."""
    data_key, nonce = secrets.token_bytes(_KEY_SIZE), secrets.token_bytes(_NONCE_SIZE)
    header = json.dumps(
        {
            "kekId": key_id(public),
            "wrappedKey": base64.b64encode(wrap(public, data_key, context)).decode(),
            "nonce": base64.b64encode(nonce).decode(),
        },
        sort_keys=True,
    ).encode()
    body = AESGCM(data_key).encrypt(nonce, payload, MAGIC + header + context)
    return MAGIC + _HEADER_LENGTH.pack(len(header)) + header + body


Unwrap = Callable[[str, bytes, bytes], bytes]  # (KEK id, wrapped data key, context) -> data key


def open_sealed(blob: bytes, context: bytes, unwrap: Unwrap) -> bytes:
    """The payload of a sealed sample; `unwrap` is the holder of the private key's (the operator's key ring through
    `kestrel.security.envelope.unwrap`). ValueError for anything that is not a sample sealed under `context`."""
    start = len(MAGIC) + _HEADER_LENGTH.size
    if not blob.startswith(MAGIC) or len(blob) < start:
        raise ValueError("not a sealed Kestrel sample")
    (length,) = _HEADER_LENGTH.unpack_from(blob, len(MAGIC))
    header_bytes = blob[start : start + length]
    try:
        header = json.loads(header_bytes)
        wrapped, nonce = base64.b64decode(header["wrappedKey"]), base64.b64decode(header["nonce"])
        kek_id = str(header["kekId"])
    except (ValueError, KeyError, TypeError):
        raise ValueError("a sealed sample's header is damaged") from None
    data_key = unwrap(kek_id, wrapped, context)
    try:
        return AESGCM(data_key).decrypt(nonce, blob[start + length :], MAGIC + header_bytes + context)
    except InvalidTag:
        raise ValueError("a sealed sample does not open: tampered, or not sealed for this place") from None


@dataclasses.dataclass(frozen=True)
class Sample:
    image: npt.NDArray[np.uint8] | None
    detections: npt.NDArray[np.float32] | None
    meta: Mapping[str, Any]


def unpack(plain: bytes) -> Sample:
    """An opened sample's arrays (no pickles are loaded)."""
    with np.load(io.BytesIO(plain), allow_pickle=False) as arrays:
        meta = json.loads(arrays["meta"].tobytes())
        image = arrays["image"] if "image" in arrays.files else None
        detections = arrays["detections"] if "detections" in arrays.files else None
    return Sample(image, detections, meta)


def read_public_key(path: Path) -> x25519.X25519PublicKey:
    loaded = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(loaded, x25519.X25519PublicKey):
        raise ValueError(f"{path} is not an X25519 public key")
    return loaded


def payload(
    image: npt.NDArray[np.uint8] | None, detections: npt.NDArray[np.float32] | None, meta: Mapping[str, Any]
) -> bytes:
    """The plaintext of one sample: an .npz of what is included and its metadata."""
    arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(dict(meta), sort_keys=True).encode(), dtype=np.uint8)}
    if image is not None:
        arrays["image"] = image
    if detections is not None:
        arrays["detections"] = detections
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # not compressed: images compress poorly and it would cost the thread's CPU
    return buffer.getvalue()


@dataclasses.dataclass
class Counts:
    """What the thread did; read and reset by `execute`'s thread (the metrics are updated there)."""

    sent: int = 0
    bytes: int = 0
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


Upload = Callable[[str, bytes], None]


def post_with_grant(grant_file: Path) -> Upload:
    """Uploads through the upload grant in `grant_file`, read again each time (the operator renews it)."""

    def upload(name: str, body: bytes) -> None:
        grant = json.loads(grant_file.read_text(encoding="utf-8"))
        if grant.get("kind") != "upload" or grant.get("version") != 1:
            raise ValueError(f"{grant_file} is not an upload grant")
        expires = datetime.datetime.strptime(grant["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
        if expires <= datetime.datetime.now(datetime.UTC):
            raise ValueError("the samples grant has expired (the operator renews it well before)")
        if len(body) > int(grant["maxSize"]):
            raise ValueError(f"a sample of {len(body)} bytes is over the grant's {grant['maxSize']}")
        _post(grant["url"], {**grant["fields"], "key": grant["keyPrefix"] + name}, body)

    return upload


def _post(url: str, fields: Mapping[str, str], body: bytes) -> None:
    boundary = "kestrel-" + secrets.token_hex(16)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="sample"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    form = "".join(parts).encode() + body + f"\r\n--{boundary}--\r\n".encode()
    target = urllib.parse.urlsplit(url)
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        # Imported here: in a Python stub whose libpython is not the interpreter's own build (pytriton's stub under
        # another 3.11 release), `ssl` fails to import, and an http:// store (MinIO in tests) needs none.
        ssl = importlib.import_module("ssl")
        bundle = os.environ.get("AWS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
        tls = ssl.create_default_context(cafile=bundle)
        connection = http.client.HTTPSConnection(target.netloc, timeout=UPLOAD_TIMEOUT, context=tls)
    elif target.scheme == "http":
        connection = http.client.HTTPConnection(target.netloc, timeout=UPLOAD_TIMEOUT)
    else:
        raise ValueError("the samples grant's address is not http(s)")
    try:
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        connection.request("POST", target.path or "/", body=form, headers=headers)
        answer = connection.getresponse()
        answer.read(4096)
        # Neither the URL nor the answer's body goes into the message: they carry signatures.
        if answer.status not in (200, 201, 204):
            raise OSError(f"the store refused a sample: HTTP {answer.status}")
    finally:
        connection.close()


def write_to(folder: Path) -> Upload:
    """Writes into a mounted samples folder (pvc:// stores), whole files only (written aside, then renamed)."""

    def upload(name: str, body: bytes) -> None:
        partial = folder / f".{name}.partial"
        partial.write_bytes(body)
        partial.rename(folder / name)

    return upload


class Sampler:
    """Chooses images by the token bucket and hands them to a thread that seals and uploads them."""

    def __init__(
        self,
        *,
        bucket: TokenBucket,
        public: x25519.X25519PublicKey,
        upload: Upload,
        folder: str,
        include: Sequence[str] = INCLUDES,
        max_bytes_per_day: int,
        model: str = "",
        pod: str = "",
        skip: int = 0,
        queue_size: int = QUEUE_SIZE,
        today: Callable[[], datetime.date] = lambda: datetime.datetime.now(datetime.UTC).date(),
    ) -> None:
        self._bucket, self._public, self._upload, self._folder = bucket, public, upload, folder.strip("/")
        self._inputs, self._outputs = "inputs" in include, "outputs" in include
        self._max_bytes, self._model, self._pod, self._skip = max_bytes_per_day, model, pod, skip
        self._today, self._day, self._day_bytes, self._serial = today, today(), 0, 0
        self._queue: queue.Queue[tuple[npt.NDArray[np.uint8] | None, npt.NDArray[np.float32] | None, float]]
        self._queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._counts = Counts()
        self._thread = threading.Thread(target=self._run, name="kestrel-samples", daemon=True)
        self._thread.start()

    def offer(self, images: Sequence[npt.NDArray[np.uint8]], boxes: Sequence[npt.NDArray[np.float32]]) -> None:
        """One execution's images and their boxes; returns at once."""
        if self._skip:
            self._skip -= 1
            return
        for image, found in zip(images, boxes, strict=True):
            if not self._bucket.take():
                continue
            item = (np.array(image, copy=True) if self._inputs else None, found if self._outputs else None, time.time())
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                with self._lock:
                    self._counts.drop("queue_full")

    def taken(self) -> Counts:
        """What happened since the last call."""
        with self._lock:
            counts, self._counts = self._counts, Counts()
        return counts

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued sample is handled (tests, and the model's finalize)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while True:
            image, found, moment = self._queue.get()
            try:
                self._handle(image, found, moment)
            except Exception:  # a failed sample is counted; the thread must live on
                with self._lock:
                    self._counts.drop("failed")
            finally:
                self._queue.task_done()

    def _handle(
        self, image: npt.NDArray[np.uint8] | None, found: npt.NDArray[np.float32] | None, moment: float
    ) -> None:
        stamp = datetime.datetime.fromtimestamp(moment, datetime.UTC)
        self._serial += 1
        name = f"{stamp.strftime('%Y%m%dT%H%M%S.%fZ')}-{self._pod or 'pod'}-{self._serial}{SUFFIX}"
        meta = {
            "time": stamp.isoformat(),
            "model": self._model,
            "pod": self._pod,
            "shape": list(image.shape) if image is not None else None,
        }
        body = seal(self._public, payload(image, found, meta), f"{self._folder}/{name}".encode())
        day = self._today()
        if day != self._day:
            self._day, self._day_bytes = day, 0
        if self._day_bytes + len(body) > self._max_bytes:
            with self._lock:
                self._counts.drop("daily_cap")
            return
        self._upload(name, body)
        self._day_bytes += len(body)
        with self._lock:
            self._counts.sent += 1
            self._counts.bytes += len(body)


def from_environ(
    model: str, skip: int = 0, environ: Mapping[str, str] = os.environ, queue_size: int = QUEUE_SIZE
) -> Sampler | None:
    """The sampler the Deployment's environment asks for; None when sampling is off (no rate)."""
    rate = environ.get(RATE_ENV, "0")
    if not rate.isdigit():
        raise ValueError(f"{RATE_ENV}={rate!r}: expected a whole number of images a minute (0 turns sampling off)")
    if not int(rate):
        return None
    missing = [name for name in (PUBLIC_KEY_ENV, FOLDER_ENV, MAX_BYTES_ENV) if not environ.get(name)]
    if missing or not (environ.get(GRANT_ENV) or environ.get(DIR_ENV)):
        raise ValueError(f"{RATE_ENV} is set but {', '.join(missing) or GRANT_ENV + ' or ' + DIR_ENV} is not")
    include = [part for part in environ.get(INCLUDE_ENV, ",".join(INCLUDES)).split(",") if part]
    if not include or not set(include) <= set(INCLUDES):
        raise ValueError(f"{INCLUDE_ENV}={environ.get(INCLUDE_ENV)!r}: expected inputs, outputs or both")
    grant, folder = environ.get(GRANT_ENV), environ.get(DIR_ENV)
    upload = post_with_grant(Path(grant)) if grant else write_to(Path(str(folder)))
    return Sampler(
        bucket=TokenBucket(int(rate)),
        public=read_public_key(Path(environ[PUBLIC_KEY_ENV])),
        upload=upload,
        folder=environ[FOLDER_ENV],
        include=include,
        max_bytes_per_day=int(environ[MAX_BYTES_ENV]),
        model=model,
        pod=environ.get("HOSTNAME", ""),
        skip=skip,
        queue_size=queue_size,
    )


class Metrics:
    """The sampler's Triton metrics, brought up to date from `Sampler.taken` on the model's own thread."""

    def __init__(self, pb: Any, model: str) -> None:
        counter = pb.MetricFamily.COUNTER
        labels = {"model": model}
        self._families = [
            pb.MetricFamily(name="kestrel_samples_total", description="Samples uploaded", kind=counter),
            pb.MetricFamily(name="kestrel_samples_dropped_total", description="Samples dropped", kind=counter),
            pb.MetricFamily(
                name="kestrel_samples_bytes_total", description="Sealed sample bytes uploaded", kind=counter
            ),
        ]
        self._sent = self._families[0].Metric(labels=labels)
        self._bytes = self._families[2].Metric(labels=labels)
        self._dropped = {
            reason: self._families[1].Metric(labels={**labels, "reason": reason})
            for reason in ("queue_full", "daily_cap", "failed")
        }

    def update(self, counts: Counts) -> None:
        if counts.sent:
            self._sent.increment(counts.sent)
            self._bytes.increment(counts.bytes)
        for reason, count in counts.dropped.items():
            self._dropped[reason].increment(count)
