# syntax=docker/dockerfile:1.7
# The loader (`kestrel load`), the Triton pod's init container: fetch, verify and decrypt an engine. The core package
# only, so no torch; the pod runs `kestrel load ...`, so `kestrel` is on PATH.
# Build from the repository root: docker build -f docker/loader.Dockerfile -t ghcr.io/kestrel-dev/kestrel-loader:VERSION .
# The base is Debian's own: its python3, with a venv at /opt/kestrel. The test bed passes its debootstrap-made copy
# of the same release (`--build-arg BASE=...`); operator.Dockerfile runs the same steps, so the two share their layers.
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

# The dependencies as locked (docker/requirements/core.txt, `make lock`): every distribution pinned with its
# hashes, wheels only, so the build takes exactly the locked files or stops. Only a change of the lock rebuilds this.
FROM python AS deps
COPY docker/requirements/core.txt ./requirements.txt
RUN /opt/kestrel/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: -r requirements.txt

# The venv the image runs: pip and setuptools stay behind, nothing installs at run time.
FROM deps AS venv
RUN /opt/kestrel/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

# The package, installed under /staging: the image takes it as a layer of its own, on top of the dependencies'
# layer, which code edits leave as it was.
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
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=venv /opt/kestrel /opt/kestrel
COPY --from=build /staging/ /
# The pod runs it with a read-only root filesystem and a memory-backed /tmp.
ENV PATH=/opt/kestrel/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="kestrel-loader" \
      org.opencontainers.image.description="Kestrel loader: fetches, verifies and decrypts an engine into Triton's model repository" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix=""
USER 65532:65532
ENTRYPOINT ["kestrel", "load"]
