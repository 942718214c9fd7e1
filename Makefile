# Kestrel developer entry points. `make demo` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup host testbed testbed-up testbed-down lint format crd test test-fast test-cluster test-faults reliability test-realnode demo clean images

setup: $(STAMP)

# Re-installs when pyproject.toml changes. uv resolves and installs the large wheels (torch) far faster than pip.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(VENV)/bin/uv pip install --python $(PY) -e '.[engine,serving,dev]'
	touch $@

# The Debian packages of the real node and the image builds (containerd, runc, CNI plugins, iptables, docker.io,
# debootstrap); installs only what is missing. Needs root, as the real node does.
host:
	$(PYTHON) -m testbed.host

# Builds kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok and helm from Go modules,
# once, into ~/.cache/kestrel/testbed/ (the first build takes a while; see README).
testbed: setup
	$(PY) -m testbed.build --real-node

testbed-up: testbed
	$(PY) -m testbed.cluster up

testbed-down: setup
	$(PY) -m testbed.cluster down

lint: setup
	$(VENV)/bin/ruff check operator tests testbed bench synthetic
	$(VENV)/bin/ruff format --check operator tests testbed bench synthetic
	$(VENV)/bin/mypy operator/kestrel testbed bench synthetic tests
	$(VENV)/bin/lint-imports
	$(PY) -m testbed.build actionlint
	$(ACTIONLINT) -no-color .github/workflows/*.yaml

format: setup
	$(VENV)/bin/ruff check --fix operator tests testbed bench synthetic
	$(VENV)/bin/ruff format operator tests testbed bench synthetic

# Regenerates crds/ (and the chart's copy) from the API models; unit tests fail when they drift.
crd: setup
	$(VENV)/bin/kestrel render crd > crds/modeldeployments.kestrel.dev.yaml
	cp crds/modeldeployments.kestrel.dev.yaml charts/kestrel/crds/

# Everything but the nightly suites: unit tests, the real API server suites, slow engine suites.
test: setup host testbed
	$(PY) -m pytest -m "not nightly" $(PYTEST_ARGS)

# Seconds: pure unit tests only, no control plane, no engine builds.
test-fast: setup
	$(PY) -m pytest -m "not cluster and not slow" $(PYTEST_ARGS)

test-cluster: setup testbed
	$(PY) -m pytest -m "cluster and not realnode" $(PYTEST_ARGS)

# The fault campaign (tests/faults/, also part of `make test` but for its nightly schema mutations): crash points,
# dropped watch events, stale reads, an unreachable API server, each run judged by the fault-free run, and the schema
# mutations; prints fault_cases=<n> converged=<n> bugs_fixed=<k>.
test-faults: setup testbed
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

# docs/reliability.md's table, from the campaign's last run (.testbed/faults/).
reliability: setup
	$(PY) -m tests.faults.report

# Kestrel's images as real pods on the real node (builds the images on first use; root).
test-realnode: setup host testbed
	$(PY) -m pytest -m realnode $(PYTEST_ARGS)

# From kubectl apply to detections from a real Triton on this machine (see testbed/demo.py); DEMO_ARGS=--keep keeps
# the test bed, the operator and the model running until Ctrl-C.
demo: setup host testbed
	$(PY) -m testbed.demo $(DEMO_ARGS)

# Kestrel's images (docker/*.Dockerfile) from a debootstrap-made Debian base, by a private dockerd, saved under
# ~/.cache/kestrel/images/ and rebuilt only when what they copy changes (see testbed/images.py). Needs root.
images: setup
	$(PY) -m testbed.images build

clean:
	rm -rf .testbed .pytest_cache .mypy_cache .ruff_cache

# --- Install artifacts: plain manifests, the API reference, Dockerfile lint (tests fail when they drift) ---
HELM = $(shell $(PY) -c "from testbed import components; print(components.HELM_CLI.binary('helm'))")
# The workflow linter `make lint` builds from Go modules; it runs shellcheck on `run:` scripts when shellcheck is on PATH.
ACTIONLINT = $(shell $(PY) -c "from testbed import components; print(components.ACTIONLINT.binary('actionlint'))")

.PHONY: deploy reference chart-readme dashboard plots docs-generated lint-docker lock

# deploy/kestrel.yaml: the chart rendered for `kubectl apply` (needs the test bed's helm: `make testbed`).
deploy: testbed
	HELM=$(HELM) deploy/render.sh > deploy/kestrel.yaml

# docker/requirements/*.txt: the images' pip installs, every distribution pinned with its hashes (pip-tools); run
# after changing a dependency in pyproject.toml (needs PyPI, about five minutes).
lock: setup
	$(PY) -m testbed.lock

# docs/reference.md: every spec field, generated from the API models.
reference: setup
	$(VENV)/bin/kestrel render reference > docs/reference.md

# charts/kestrel/README.md: every chart value, from the comments in values.yaml, and the upgrade and uninstall steps.
chart-readme: setup
	$(PY) -m testbed.chart_readme > charts/kestrel/README.md

dashboard: setup
	$(PY) -m testbed.dashboard > charts/kestrel/files/dashboard.json

# docs/img/*.svg: the pictures of docs/benchmarks.md, from the numbers its tables hold (bench/engine.py draws them too).
plots: setup
	$(PY) -m bench.plots

docs-generated: crd reference deploy chart-readme dashboard plots

lint-docker: setup
	$(VENV)/bin/hadolint docker/*.Dockerfile
