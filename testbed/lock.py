"""The images' pip installs, locked: every distribution pinned, with the hashes of its files (pip-tools).

Usage: python -m testbed.lock   (`make lock`; needs PyPI; about five minutes)

Each image installs one lock from docker/requirements/ with `pip install --require-hashes --only-binary=:all:`,
so a build takes exactly the files that were locked, or stops: a changed upload on the index, a new release that
satisfies a range, or a dependency fetched from elsewhere fails the build instead of entering the image. The
package itself is built without build isolation from the `build` lock's setuptools and wheel. What each lock
holds is read from pyproject.toml (`SETS`), and tests/unit/test_images_dockerfiles_lint_and_match_the_chart.py
checks that every locked pin satisfies it: change a dependency there, then run this.

Locks are resolved on this machine (Linux x86_64, CPython 3.11, the images' Python). The GPU builder
(docker/builder-gpu.Dockerfile: Ubuntu's Python 3.12 and PyTorch's CUDA index, which is not reachable here) has
no lock yet.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import tomllib

from testbed import components

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCKS = ROOT / "docker" / "requirements"
PIP_TOOLS = "pip-tools==7.6.2"
# Runtimes of the engine extra that the CPU Triton image serves with (kestrel.serving.backends).
SERVED_RUNTIMES = ("onnxruntime", "openvino")


def sets(pyproject: pathlib.Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """Each lock's top-level requirements, from pyproject.toml."""
    document = tomllib.loads(pyproject.read_text())
    project = document["project"]
    core: list[str] = project["dependencies"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return {
        # kestrel-operator and kestrel-loader
        "core": core,
        "builder": [*core, *extras["engine"]],
        "triton-cpu": [*extras["serving"], *(r for r in extras["engine"] if r.startswith(SERVED_RUNTIMES))],
        # What builds the package itself in every image (pip install --no-build-isolation).
        "build": document["build-system"]["requires"],
    }


def _pip_tools() -> pathlib.Path:
    venv = components.cache_root() / "pip-tools"
    compile_ = venv / "bin" / "pip-compile"
    if not compile_.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", PIP_TOOLS], check=True)
    return compile_


def lock(name: str, requirements: list[str], compile_: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        source = pathlib.Path(scratch) / f"{name}.in"
        source.write_text("\n".join(requirements) + "\n")
        target = LOCKS / f"{name}.txt"
        command = [
            str(compile_),
            "--quiet",
            "--no-header",
            "--generate-hashes",
            "--allow-unsafe",  # pip and setuptools too, where something needs them: a lock leaves nothing out
            "--no-strip-extras",
            "--rebuild",
            "--no-emit-find-links",
            "--output-file",
            str(target),
            str(source),
        ]
        # PyPI alone: a local wheel folder that the machine's pip is pointed at must not enter a lock.
        environment = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
        subprocess.run(command, check=True, env=environment)
    body = target.read_text().replace(str(source), f"{name} (testbed/lock.py)")
    header = f"# {name}: locked by `make lock` (testbed/lock.py) from pyproject.toml; do not edit by hand.\n"
    target.write_text(header + body)


def main() -> int:
    LOCKS.mkdir(parents=True, exist_ok=True)
    compile_ = _pip_tools()
    for name, requirements in sets().items():
        print(f"Locking {name} ({len(requirements)} requirements)", flush=True)
        lock(name, requirements, compile_)
    return 0


if __name__ == "__main__":
    sys.exit(main())
