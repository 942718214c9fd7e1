# syntax=docker/dockerfile:1.7
# Triton for CPU targets (kestrel-triton-cpu): the `tritonserver` and Python backend that the nvidia-pytriton wheel
# ships (Triton 2.51, CPU only, Python backend only), and what Kestrel's served models import: numpy, ONNX Runtime
# and OpenVINO (kestrel.serving.backends; the model files import nothing of Kestrel itself, and no OpenCV).
# Build from the repository root: docker build -f docker/triton-cpu.Dockerfile -t ghcr.io/kestrel-dev/kestrel-triton-cpu:VERSION .
# The pod runs `tritonserver <args>`, as with NVIDIA's image: docker/tritonserver-cpu.sh, installed as
# `tritonserver`, adds the backend folder that this build of Triton does not find by itself.
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

# The serving extra (the wheel) and the engine extra's runtimes, as locked (docker/requirements/triton-cpu.txt,
# `make lock`, from the bounds pyproject.toml gives the builder, so an engine is served by the runtime release that
# validated it): every distribution pinned with its hashes, wheels only. Only a change of the lock rebuilds this.
FROM python AS deps
COPY docker/requirements/triton-cpu.txt ./requirements.txt
# The Python backend runs the stub found beside libtriton_python.so: the one built for this image's Python goes
# there, at the depth its RPATH ($ORIGIN/../../../../nvidia_pytriton.libs) expects. pip and setuptools stay behind.
RUN /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: -r requirements.txt \
 && triton=/opt/kestrel/lib/python3.11/site-packages/pytriton/tritonserver \
 && cp "$triton/python_backend_stubs/3.11/triton_python_backend_stub" "$triton/backends/python/" \
 && rm -r "$triton/python_backend_stubs" \
 && /opt/kestrel/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

FROM ${BASE}
# The stub embeds Python: it links Debian's libpython3.11.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libpython3.11 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/kestrel /opt/kestrel
COPY docker/tritonserver-cpu.sh /usr/local/bin/tritonserver
# The stub takes the first python3 on PATH for its packages: the venv's.
ENV PATH=/opt/kestrel/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="kestrel-triton-cpu" \
      org.opencontainers.image.description="NVIDIA Triton (Python backend) with ONNX Runtime and OpenVINO, for Kestrel's CPU targets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix=""
USER 65532:65532
ENTRYPOINT ["tritonserver"]
