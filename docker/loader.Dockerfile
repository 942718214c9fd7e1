# syntax=docker/dockerfile:1.7
# The loader (`kestrel load`), the Triton pod's init container: fetch, verify and decrypt an engine.
# Distroless: no shell, no package manager; the same Python minor version as the build stage (3.11).
# Build from the repository root: docker build -f docker/loader.Dockerfile -t ghcr.io/kestrel-dev/kestrel-loader:VERSION .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip install --no-cache-dir --disable-pip-version-check --target=/app .

FROM gcr.io/distroless/python3-debian12:nonroot
LABEL org.opencontainers.image.title="kestrel-loader" \
      org.opencontainers.image.description="Kestrel loader: fetches, verifies and decrypts an engine into Triton's model repository" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix=""
COPY --from=build /app /app
ENV PYTHONPATH=/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["python3", "-m", "kestrel.cli", "load"]
