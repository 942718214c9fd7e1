"""The `kestrel` program: `--version`, the same program installed as kubectl's plugin `kubectl-kestrel`, `render crd
-o json`, and a start-up that loads neither the Kubernetes nor the S3 client (the loader and the TLS proxy run it in
every Triton pod and never call the API)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tomllib

import pytest
import yaml

import kestrel
from kestrel import cli
from kestrel.api import crd

ROOT = pathlib.Path(__file__).parents[2]


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"kestrel {kestrel.__version__}\n"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == kestrel.__version__


def test_kubectl_kestrel_is_the_same_program_under_kubectls_name() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-kestrel"] == scripts["kestrel"] == "kestrel.cli:main"
    assert cli.program_name("/usr/local/bin/kubectl-kestrel") == "kubectl kestrel"
    assert cli.program_name("/work/.venv/bin/kestrel") == "kestrel"
    usage = cli.build_parser(cli.program_name("kubectl-kestrel")).format_usage()
    assert usage.startswith("usage: kubectl kestrel ")


def test_render_crd_as_json_is_the_same_object_as_the_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "crd", "-o", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert cli.main(["render", "crd"]) == 0
    assert as_json == yaml.safe_load(capsys.readouterr().out) == crd.render()
    assert cli.main(["render", "reference", "-o", "yaml"]) == 2
    assert "-o applies to crd" in capsys.readouterr().err


def test_starting_the_program_loads_neither_the_kubernetes_nor_the_s3_client() -> None:
    probe = "import sys, kestrel.cli; print(sorted({'kubernetes', 'minio', 'kopf'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
