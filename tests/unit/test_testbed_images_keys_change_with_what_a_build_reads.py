"""testbed/images.py rebuilds an image exactly when something its build reads changed, and reuses the tar otherwise."""

from __future__ import annotations

import pathlib
import subprocess

from testbed import images

DOCKERFILE = """\
ARG BASE=debian:bookworm-slim
FROM ${BASE} AS build
COPY pyproject.toml ./
COPY README.md \\
     ./
COPY operator/ operator/
FROM ${BASE}
COPY --from=build /opt/kestrel /opt/kestrel
COPY ["docker/tritonserver-cpu.sh", "/usr/local/bin/tritonserver"]
"""


def _key(**changes: object) -> str:
    parts: dict[str, object] = {
        "dockerfile": b"FROM x\n",
        "build_args": {"BASE": "b"},
        "base_digest": "0" * 64,
        "files": {"pyproject.toml": b"[project]\n", "operator/a.py": b"a = 1\n"},
    }
    parts.update(changes)
    return images.cache_key(**parts)  # type: ignore[arg-type]


def test_copied_sources_are_the_context_paths_not_other_stages() -> None:
    assert images.copied_sources(DOCKERFILE) == [
        "README.md",
        "docker/tritonserver-cpu.sh",
        "operator",
        "pyproject.toml",
    ]


def test_named_stages_are_found_to_be_tagged() -> None:
    # Tagged stages survive `docker image prune`: the dependencies' layers stay cached between code edits.
    assert images.stages(DOCKERFILE) == ["build"]
    for name, dockerfile in images.DOCKERFILES.items():
        assert "deps" in images.stages((images.ROOT / "docker" / dockerfile).read_text()), name


def test_the_real_dockerfiles_copy_what_they_build_from() -> None:
    for name, dockerfile in images.DOCKERFILES.items():
        sources = images.copied_sources((images.ROOT / "docker" / dockerfile).read_text())
        # The dependencies come from their lock, which `make lock` makes from pyproject.toml.
        assert any(s.startswith("docker/requirements/") for s in sources), name
        assert ("pyproject.toml" in sources) == (name != "kestrel-triton-cpu"), name
        # Triton serves copied model files, never the package: code edits do not rebuild it.
        assert ("operator" in sources) == (name != "kestrel-triton-cpu"), name


def test_the_key_is_stable_and_changes_with_each_input() -> None:
    same = _key()
    assert same == _key()
    changed = [
        _key(dockerfile=b"FROM y\n"),
        _key(build_args={"BASE": "c"}),
        _key(base_digest="1" * 64),
        _key(files={"pyproject.toml": b"[project]\n", "operator/a.py": b"a = 2\n"}),
        _key(files={"pyproject.toml": b"[project]\n", "operator/b.py": b"a = 1\n"}),
        _key(files={"pyproject.toml": b"[project]\n"}),
    ]
    assert len({same, *changed}) == len(changed) + 1


def test_parts_cannot_run_into_each_other() -> None:
    assert _key(files={"ab": b"c"}) != _key(files={"a": b"bc"})


def test_context_files_follow_git_untracked_included_ignored_left_out(tmp_path: pathlib.Path) -> None:
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / ".gitignore").write_text("*.egg-info/\n__pycache__/\n")
    package = tmp_path / "operator" / "kestrel"
    package.mkdir(parents=True)
    (package / "tracked.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (package / "new.py").write_text("y = 2\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "tracked.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "operator" / "kestrel.egg-info").mkdir()
    (tmp_path / "operator" / "kestrel.egg-info" / "PKG-INFO").write_text("x")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / ".dockerignore").write_text("*\n")

    files = images.context_files(["operator", "pyproject.toml"], root=tmp_path)

    assert sorted(files) == [
        ".dockerignore",
        "operator/kestrel/new.py",
        "operator/kestrel/tracked.py",
        "pyproject.toml",
    ]
    assert files["operator/kestrel/new.py"] == b"y = 2\n"
