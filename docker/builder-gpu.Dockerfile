# syntax=docker/dockerfile:1.7
# The GPU engine builder: everything of builder.Dockerfile plus CUDA torch and TensorRT, to build and profile
# TensorRT engines on the GPU product they will serve on. A TensorRT engine loads only in the TensorRT release
# that built it, so CUDA and TensorRT here are those of the Triton release the operator deploys
# (nvcr.io/nvidia/tritonserver:24.10: CUDA 12.6.2, TensorRT 10.5.0); change them together.
# Build: docker build -f docker/builder-gpu.Dockerfile -t ghcr.io/kestrel-dev/kestrel-builder:VERSION-gpu .
# The layout of the other images (a venv at /opt/kestrel, the dependencies in layers of their own) on CUDA's
# Ubuntu 24.04, whose python3 is 3.12. The test bed has no registry to pull this base from and no GPU: not built there.
ARG BASE=nvidia/cuda:12.6.2-cudnn-runtime-ubuntu24.04

FROM ${BASE} AS python
# Ubuntu replaces package versions with security updates, so a pinned version would stop building: the base
# image's digest is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/kestrel
WORKDIR /src

# The dependency list, read from pyproject.toml: the stages below are rebuilt only when the list itself changes.
FROM python AS requirements
COPY pyproject.toml ./
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(*p['dependencies'], *p['optional-dependencies']['engine'], sep='\n')" \
      > requirements.txt

FROM python AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
COPY --from=requirements /src/requirements.txt ./
RUN /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check \
      --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
      -r requirements.txt 'tensorrt-cu12==10.5.0'

# The package, installed under /staging: the image takes it as a layer of its own, on top of the dependencies'
# gigabytes, which code edits leave as they were.
FROM deps AS build
# pyproject.toml names README.md as the package's long description: an empty one, so that editing the README
# rebuilds no image.
COPY pyproject.toml ./
RUN touch README.md
COPY operator/ operator/
RUN /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --root /staging .

FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/kestrel /opt/kestrel
COPY --from=build /staging/ /
ENV PATH=/opt/kestrel/bin:$PATH YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR=/tmp/ultralytics \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="kestrel-builder" \
      org.opencontainers.image.description="Kestrel engine builder for NVIDIA GPU targets (TensorRT)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix="-gpu"
USER 65532:65532
ENTRYPOINT ["kestrel", "build"]
