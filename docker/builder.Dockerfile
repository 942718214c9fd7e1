# syntax=docker/dockerfile:1.7
# The CPU engine builder (`kestrel build`, the build Job): Ultralytics with CPU-only torch, ONNX Runtime,
# OpenVINO and NNCF. Builds onnx, openvino and torchscript engines.
# Build from the repository root: docker build -f docker/builder.Dockerfile -t ghcr.io/kestrel-dev/kestrel-builder:VERSION .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# CPU wheels of torch (`2.14.1+cpu` satisfies the `==2.14.1` pin); everything else from PyPI.
RUN python -m venv /opt/kestrel \
 && /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check \
      --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple '.[engine]'

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="kestrel-builder" \
      org.opencontainers.image.description="Kestrel engine builder for CPU targets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix=""
# OpenCV (an Ultralytics dependency) needs these shared libraries. Debian replaces point releases with
# security updates, so a pinned version would stop building: the base image's digest is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/kestrel /opt/kestrel
# Offline: no hub, no fonts, no asset downloads (kestrel.engine.offline sets the rest at start-up).
ENV PATH=/opt/kestrel/bin:$PATH YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=/tmp/ultralytics \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["kestrel", "build"]
