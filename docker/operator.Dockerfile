# syntax=docker/dockerfile:1.7
# The operator (`kestrel run`): the package without its engine or serving extras, so no torch.
# Build from the repository root: docker build -f docker/operator.Dockerfile -t ghcr.io/kestrel-dev/kestrel-operator:VERSION .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip install --no-cache-dir --disable-pip-version-check --prefix=/install .

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="kestrel-operator" \
      org.opencontainers.image.description="Kestrel operator: ModelDeployment to a validated, secured Triton deployment" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.kestrel.image.tag-suffix=""
COPY --from=build /install /usr/local
# The chart runs it with a read-only root filesystem and a memory-backed /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["kestrel"]
CMD ["run"]
