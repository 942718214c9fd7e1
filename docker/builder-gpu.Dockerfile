# syntax=docker/dockerfile:1.7
# The GPU engine builder: everything of builder.Dockerfile plus CUDA torch and TensorRT, to build and profile
# TensorRT engines on the GPU product they will serve on. A TensorRT engine loads only in the TensorRT release
# that built it, so CUDA and TensorRT here are those of the Triton release the operator deploys
# (nvcr.io/nvidia/tritonserver:24.10: CUDA 12.6.2, TensorRT 10.5.0); change them together.
# Build: docker build -f docker/builder-gpu.Dockerfile -t ghcr.io/kestrel-dev/kestrel-builder:VERSION-gpu .
FROM nvidia/cuda:12.6.2-cudnn-runtime-ubuntu24.04 AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python3.12 -m venv /opt/kestrel \
 && /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check \
      --index-url https://download.pytorch.org/whl/cu126 --extra-index-url https://pypi.org/simple \
      '.[engine]' 'tensorrt-cu12==10.5.0'

FROM nvidia/cuda:12.6.2-cudnn-runtime-ubuntu24.04
LABEL org.opencontainers.image.title="kestrel-builder" \
      org.opencontainers.image.description="Kestrel engine builder for NVIDIA GPU targets (TensorRT)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix="-gpu"
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/kestrel /opt/kestrel
ENV PATH=/opt/kestrel/bin:$PATH YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=/tmp/ultralytics \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["kestrel", "build"]
