"""Build the test bed's upstream binaries from Go modules, once, into the cache.

Usage: python -m testbed.build [--force]

A component counts as built only when all its binaries exist: each build goes to a temporary folder
first and is renamed into place, so an interrupted build never looks cached.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from testbed import components, pause_image


def _go(args: list[str], *, cwd: pathlib.Path | None = None, env: dict[str, str] | None = None) -> None:
    merged = {**os.environ, "CGO_ENABLED": "0", **(env or {})}
    print("+ go " + " ".join(args), flush=True)
    subprocess.run(["go", *args], cwd=cwd, env=merged, check=True)


def _kube_ldflags() -> str:
    version = components.KUBERNETES
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    build_date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return " ".join(
        [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
            "-s -w",
        ]
    )


def _build_kube(out: pathlib.Path) -> None:
    packages = [f"k8s.io/kubernetes/cmd/{b}" for b in components.KUBE.binaries]
    _go(
        ["build", "-trimpath", "-ldflags", _kube_ldflags(), "-o", str(out) + "/", *packages],
        cwd=components.GO_DIR / "kube",
    )


def _build_etcd(out: pathlib.Path) -> None:
    _go(
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"],
        cwd=components.GO_DIR / "etcd",
    )


def _build_kwok(out: pathlib.Path) -> None:
    module = f"sigs.k8s.io/kwok@{components.KWOK}"
    ldflags = f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={components.KWOK}"
    _go(
        ["install", "-trimpath", "-ldflags", ldflags, f"sigs.k8s.io/kwok/cmd/kwok@{components.KWOK}"],
        env={"GOBIN": str(out)},
    )
    # kwok's stage definitions (how fake nodes and pods move through their lifecycle) ship as YAML in
    # its module; keep a copy beside the binary so a cleaned module cache does not break the test bed.
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    stages = pathlib.Path(modcache) / module / "kustomize" / "stage"
    shutil.copytree(stages, out.parent / "stages")


def _build_helm(out: pathlib.Path) -> None:
    pkg = "helm.sh/helm/v3/internal/version"
    kube = [
        f"-X helm.sh/helm/v3/pkg/{where}.k8sVersion{part}={value}"
        for where in ("chartutil", "lint/rules")
        for part, value in (("Major", "1"), ("Minor", components.HELM_KUBE_MINOR))
    ]
    ldflags = " ".join([f"-s -w -X {pkg}.version={components.HELM} -X {pkg}.gitTreeState=clean", *kube])
    _go(
        ["install", "-trimpath", "-ldflags", ldflags, f"helm.sh/helm/v3/cmd/helm@{components.HELM}"],
        env={"GOBIN": str(out)},
    )


def _build_minio(out: pathlib.Path) -> None:
    # The flags of upstream's `make build` (buildscripts/gen-ldflags.go), with the pinned commit's date and hash
    # taken from its pseudo-version, so `minio --version` names what was built.
    _, stamp, commit = components.MINIO.split("-")
    date = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}Z"
    pkg = "github.com/minio/minio/cmd"
    ldflags = " ".join(
        [
            "-s -w",
            f"-X {pkg}.Version={date}",
            f"-X {pkg}.CopyrightYear={stamp[:4]}",
            f"-X {pkg}.ReleaseTag=DEVELOPMENT.{date.replace(':', '-')}",
            f"-X {pkg}.CommitID={commit}",
            f"-X {pkg}.ShortCommitID={commit}",
        ]
    )
    _go(
        ["install", "-tags", "kqueue", "-trimpath", "-ldflags", ldflags, f"github.com/minio/minio@{components.MINIO}"],
        env={"GOBIN": str(out)},
    )


def _build_kube_node(out: pathlib.Path) -> None:
    packages = [f"k8s.io/kubernetes/cmd/{b}" for b in components.KUBE_NODE.binaries]
    _go(
        ["build", "-trimpath", "-ldflags", _kube_ldflags(), "-o", str(out) + "/", *packages],
        cwd=components.GO_DIR / "kube",
    )


def _build_coredns(out: pathlib.Path) -> None:
    # testbed/go/coredns: upstream's coremain with only the plugins the real node's Corefile uses.
    ldflags = f"-s -w -X github.com/coredns/coredns/coremain.GitCommit={components.COREDNS}"
    _go(["build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "coredns"), "."], cwd=components.GO_DIR / "coredns")


def _build_crictl(out: pathlib.Path) -> None:
    ldflags = f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={components.CRI_TOOLS}"
    _go(
        ["install", "-trimpath", "-ldflags", ldflags, f"sigs.k8s.io/cri-tools/cmd/crictl@{components.CRI_TOOLS}"],
        env={"GOBIN": str(out)},
    )


def _build_pause(out: pathlib.Path) -> None:
    # The kubernetes module ships the sandbox program's source; upstream's Makefile compiles it the same way.
    source = _module_dir(f"k8s.io/kubernetes@{components.KUBERNETES}") / "build" / "pause" / "linux" / "pause.c"
    subprocess.run(
        [
            "gcc",
            "-Os",
            "-Wall",
            "-Werror",
            "-static",
            f"-DVERSION={components.PAUSE}",
            "-o",
            str(out / "pause"),
            source,
        ],
        check=True,
    )
    subprocess.run(["strip", str(out / "pause")], check=True)
    pause_image.write(out / "pause", out / "pause.tar", components.PAUSE)


def _build_actionlint(out: pathlib.Path) -> None:
    pkg = "github.com/rhysd/actionlint"
    ldflags = f"-s -w -X {pkg}.version={components.ACTIONLINT.version}"
    _go(
        ["install", "-trimpath", "-ldflags", ldflags, f"{pkg}/cmd/actionlint@{components.ACTIONLINT.version}"],
        env={"GOBIN": str(out)},
    )


def _build_from_prometheus(out: pathlib.Path, command: str, tags: str) -> None:
    """One command of the Prometheus module at the pinned version, with only the service discovery `tags` keep."""
    pkg = "github.com/prometheus/prometheus"
    _go(
        [
            "install",
            "-trimpath",
            "-tags",
            tags,
            "-ldflags",
            "-s -w",
            f"{pkg}/cmd/{command}@{components.PROMETHEUS_VERSION}",
        ],
        env={"GOBIN": str(out)},
    )


def _build_promtool(out: pathlib.Path) -> None:
    # Without service discovery (rules are all it checks here): half the build time, a third less binary.
    _build_from_prometheus(out, "promtool", "remove_all_sd")


def _build_prometheus(out: pathlib.Path) -> None:
    # Kubernetes service discovery is the only one the test bed uses (pods, as a PodMonitor's scrape does).
    _build_from_prometheus(out, "prometheus", "remove_all_sd,enable_kubernetes_sd")


def _build_grpcurl(out: pathlib.Path) -> None:
    pkg = "github.com/fullstorydev/grpcurl"
    _go(
        ["install", "-trimpath", "-ldflags", "-s -w", f"{pkg}/cmd/grpcurl@{components.GRPCURL.version}"],
        env={"GOBIN": str(out)},
    )


def _module_dir(module: str) -> pathlib.Path:
    done = subprocess.run(
        ["go", "mod", "download", "-json", module], capture_output=True, text=True, check=True, cwd=components.GO_DIR
    )
    return pathlib.Path(json.loads(done.stdout)["Dir"])


BUILDERS = {
    components.KUBE.name: _build_kube,
    components.ETCD_SERVER.name: _build_etcd,
    components.KWOK_CONTROLLER.name: _build_kwok,
    components.HELM_CLI.name: _build_helm,
    components.MINIO_SERVER.name: _build_minio,
    components.KUBE_NODE.name: _build_kube_node,
    components.COREDNS_SERVER.name: _build_coredns,
    components.CRICTL.name: _build_crictl,
    components.PAUSE_IMAGE.name: _build_pause,
    components.ACTIONLINT.name: _build_actionlint,
    components.PROMTOOL.name: _build_promtool,
    components.PROMETHEUS.name: _build_prometheus,
    components.GRPCURL.name: _build_grpcurl,
}


def build(component: components.Component, *, force: bool = False) -> bool:
    """Build one component unless cached; return True when it was built now."""
    if component.is_built() and not force:
        print(f"Cached {component.name} {component.version} at {component.home}", flush=True)
        return False
    component.home.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{component.name}-", dir=component.home.parent))
    started = time.monotonic()
    try:
        (staging / "bin").mkdir()
        BUILDERS[component.name](staging / "bin")
        if component.home.exists():
            shutil.rmtree(component.home)
        staging.rename(component.home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"Built {component.name} {component.version} in {time.monotonic() - started:.0f}s", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--real-node", action="store_true", help="also the real node's components")
    parser.add_argument("names", nargs="*", help="components to build (default: all)")
    args = parser.parse_args(argv)
    every = (*components.ALL, *components.REAL_NODE, *components.MONITORING)
    default = every if args.real_node else components.ALL
    # Lint tools are built only by name (`make lint`).
    named = (*every, *components.LINT)
    wanted = [c for c in named if c.name in args.names] if args.names else list(default)
    if shutil.which("go") is None:
        print("The test bed is built from Go modules: install Go (1.24 or newer) first.", file=sys.stderr)
        return 2
    for component in wanted:
        build(component, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
