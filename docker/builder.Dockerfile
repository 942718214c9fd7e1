# syntax=docker/dockerfile:1.7
# The CPU engine builder (`kestrel build`, the build Job): Ultralytics with torch, ONNX Runtime, OpenVINO and NNCF.
# Builds onnx, openvino and torchscript engines.
# Build from the repository root: docker build -f docker/builder.Dockerfile -t ghcr.io/kestrel-dev/kestrel-builder:VERSION .
# The base is Debian's own: its python3, with a venv at /opt/kestrel; the test bed passes its debootstrap-made copy.
# torch comes from PyPI, whose Linux wheels are the CUDA build (several GB of nvidia-* wheels; it runs on CPU). The
# CPU-only wheels of PyTorch's own index would make it several GB smaller, but need a lock of their own, resolved
# against that index (testbed/lock.py), which this project cannot reach.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS python
# Debian replaces point releases with security updates, so a pinned version would stop building: the base
# image's digest is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/kestrel
WORKDIR /src

# The dependencies as locked (docker/requirements/builder.txt, `make lock`): every distribution pinned with its
# hashes, wheels only, so the build takes exactly the locked files or stops. Only a change of the lock rebuilds this.
FROM python AS deps
COPY docker/requirements/builder.txt ./requirements.txt
RUN /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: -r requirements.txt

# The package, installed under /staging: the image takes it as a layer of its own, on top of the dependencies'
# gigabytes, which code edits leave as they were.
FROM deps AS build
# What builds the package, locked too (no build isolation, which would fetch setuptools unpinned).
COPY docker/requirements/build.txt ./build-requirements.txt
RUN /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: -r build-requirements.txt
# pyproject.toml names README.md as the package's long description: an empty one, so that editing the README
# rebuilds no image.
COPY pyproject.toml ./
RUN touch README.md
COPY operator/ operator/
RUN /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check --no-build-isolation --no-deps --root /staging .

FROM ${BASE}
# OpenCV (an Ultralytics dependency) needs libgl1 and libglib2.0-0.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/kestrel /opt/kestrel
COPY --from=build /staging/ /
# Offline: no hub, no fonts, no asset downloads (kestrel.engine.offline sets the rest at start-up).
ENV PATH=/opt/kestrel/bin:$PATH YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=/tmp/ultralytics \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="kestrel-builder" \
      org.opencontainers.image.description="Kestrel engine builder for CPU targets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix=""
USER 65532:65532
ENTRYPOINT ["kestrel", "build"]
