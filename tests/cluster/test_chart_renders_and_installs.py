"""The Helm chart lints clean, renders, and its objects are accepted by the real API server."""

from __future__ import annotations

import pathlib
import subprocess

CHART = pathlib.Path(__file__).parents[2] / "charts" / "kestrel"


def helm(kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kube.bed.bin_dir / "helm"), *args], capture_output=True, text=True, check=False)


def test_helm_lint_is_clean(kube) -> None:
    linted = helm(kube, "lint", "--strict", str(CHART))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_rendered_chart_passes_server_side_dry_run(kube, namespace) -> None:
    rendered = helm(kube, "template", "kestrel", str(CHART), f"--namespace={namespace}")
    assert rendered.returncode == 0, rendered.stderr
    applied = kube.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        f"--namespace={namespace}",
        "-f",
        "-",
        stdin=rendered.stdout,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    for kind in ("serviceaccount", "clusterrole.rbac.authorization.k8s.io", "deployment.apps"):
        assert kind in applied.stdout


def test_operator_role_has_no_wildcards(kube) -> None:
    rendered = helm(kube, "template", "kestrel", str(CHART), "--show-only=templates/rbac.yaml")
    assert "'*'" not in rendered.stdout
    assert '"*"' not in rendered.stdout
    assert "- '*'" not in rendered.stdout and "[*]" not in rendered.stdout
