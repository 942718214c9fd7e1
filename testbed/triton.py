"""Run the `tritonserver` that the `nvidia-pytriton` wheel ships: CPU only, Python backend only, on loopback.

One harness for the process kubelet, the tests and the demo. What it knows about this build of Triton (2.51):
- the wheel's binary and backends find their libraries through RPATH, with the wheel's `nvidia_pytriton.libs`
  on `LD_LIBRARY_PATH` as a fallback; the Python backend wants a folder holding `libtriton_python.so`, its utils
  module and the stub for *our* Python, which we build from symlinks (the stub's `$ORIGIN` RPATH resolves
  through them to the wheel);
- the stub embeds the first `python3` on `PATH` to find its packages, so the interpreter running us goes first;
- listeners need explicit ports (0 is refused);
- a stub that cannot start leaves the server "loading" forever and a `/dev/shm/triton_python_backend_shm_region_*`
  file behind: `start()` has a deadline, and `stop()` kills the process group and removes the regions that the
  server had mapped (read from `/proc/<pid>/maps`, so other Tritons' regions are never touched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

from testbed.ports import free_port

SITE_PACKAGES = pathlib.Path(sysconfig.get_paths()["purelib"])
WHEEL = SITE_PACKAGES / "pytriton" / "tritonserver"
LIBS = SITE_PACKAGES / "nvidia_pytriton.libs"
BINARY = WHEEL / "bin" / "tritonserver"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region_"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
# Flags that would make a CPU-only start noisy or slow: GPU metrics probe for DCGM, pinned memory for CUDA.
QUIET_CPU = ("--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0")
LOG_TAIL_LINES = 30


class TritonError(RuntimeError):
    """Triton did not start, or did not become ready in time; the message ends with its log's last lines."""


@dataclasses.dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> Ports:
        return cls(http=free_port(), grpc=free_port(), metrics=free_port())


def available() -> bool:
    return BINARY.is_file()


def backend_directory(root: pathlib.Path, python_version: str = PYTHON_VERSION) -> pathlib.Path:
    """A `--backend-directory` under `root` whose `python/` links the backend and the stub for `python_version`."""
    python = root / "python"
    python.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": WHEEL / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": WHEEL / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": WHEEL / "python_backend_stubs" / python_version / "triton_python_backend_stub",
    }
    for name, target in links.items():
        if not target.exists():
            raise TritonError(f"{target} is missing: is nvidia-pytriton installed in {SITE_PACKAGES}?")
        link = python / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return root


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: ours) with this interpreter's bin first on PATH and the wheel's libraries findable."""
    env = dict(os.environ if base is None else base)
    python_bin = str(pathlib.Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", "/usr/bin:/bin")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(LIBS)) if p)
    return env


def argv(
    model_repository: pathlib.Path | str,
    *,
    ports: Ports,
    backend_dir: pathlib.Path,
    models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line of a loopback, CPU-only server; `models` loads exactly those (explicit model control)."""
    args = [f"--model-repository={model_repository}", "--disable-auto-complete-config", *QUIET_CPU]
    if models:
        args += ["--model-control-mode=explicit", *(f"--load-model={m}" for m in models)]
    return translate([*args, *extra_args], ports=ports, backend_dir=backend_dir)


def _option(arg: str) -> str:
    return arg.split("=", 1)[0]


def listen_ports(args: Sequence[str]) -> dict[str, int]:
    """The ports a Triton command line asks for ({'http': 8000, ...}), Triton's defaults filled in."""
    ports = dict(DEFAULT_PORTS)
    for index, arg in enumerate(args):
        for protocol in ports:
            if _option(arg) == f"--{protocol}-port":
                value = arg.split("=", 1)[1] if "=" in arg else (args[index + 1] if index + 1 < len(args) else "")
                with contextlib.suppress(ValueError):
                    ports[protocol] = int(value)
    return ports


def translate(args: Sequence[str], *, ports: Ports, backend_dir: pathlib.Path) -> list[str]:
    """A container's `tritonserver` arguments made local: loopback listeners on `ports`, our backends, CPU quiet.

    Everything else (model control, TLS, restricted APIs, exit timeout) passes through unchanged; paths are
    the caller's business (the process kubelet rewrites mount paths before calling this).
    """
    forced = {
        "--http-address": "127.0.0.1",
        "--grpc-address": "127.0.0.1",
        "--metrics-address": "127.0.0.1",
        "--http-port": str(ports.http),
        "--grpc-port": str(ports.grpc),
        "--metrics-port": str(ports.metrics),
        "--backend-directory": str(backend_dir),
        "--allow-gpu-metrics": "false",
        "--pinned-memory-pool-byte-size": "0",
    }
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        name = _option(arg)
        if name in forced:
            # `--flag value` (getopt's other spelling) carries its value in the next argument.
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return [str(BINARY), *kept, *(f"{name}={value}" for name, value in forced.items())]


def shm_regions(pid: int) -> set[pathlib.Path]:
    """The Python backend's shared-memory regions that process `pid` has mapped (empty once it is gone)."""
    try:
        maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    found = set()
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if path.startswith(SHM_PREFIX):
            found.add(pathlib.Path(path.removesuffix(" (deleted)")))
    return found


def remove_regions(regions: Iterable[pathlib.Path]) -> None:
    for region in regions:
        region.unlink(missing_ok=True)


def log_tail(path: pathlib.Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return ""
    # Triton draws its model and option tables with box lines; they crowd out the lines that say what failed.
    text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip() and ln[:1] not in "+|"]
    return "\n".join(text[-lines:])


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status `url` answers with, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # only ever 127.0.0.1
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 0


class TritonServer:
    """One `tritonserver` process on loopback; a context manager that starts it and always stops it.

    >>> with TritonServer(repo, models=["add"]) as server:
    ...     server.wait_ready("add")
    ...     tritonclient.http.InferenceServerClient(server.urls["http_host"])
    """

    def __init__(
        self,
        model_repository: pathlib.Path | str,
        *,
        models: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ports: Ports | None = None,
        log_path: pathlib.Path | None = None,
    ) -> None:
        self.model_repository = pathlib.Path(model_repository)
        self.models = tuple(models)
        self.extra_args = tuple(extra_args)
        self.ports = ports or Ports.free()
        self._env = env
        # Named now, made by start(): a server that is never started leaves nothing behind.
        self._workdir = pathlib.Path(tempfile.gettempdir()) / f"kestrel-triton-{secrets.token_hex(6)}"
        self.log_path = log_path or self._workdir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._regions: set[pathlib.Path] = set()
        self.started_seconds: float | None = None

    @property
    def urls(self) -> dict[str, str]:
        """`http`/`metrics` are URLs; `http_host`/`grpc` are host:port as tritonclient wants them."""
        return {
            "http": f"http://127.0.0.1:{self.ports.http}",
            "http_host": f"127.0.0.1:{self.ports.http}",
            "grpc": f"127.0.0.1:{self.ports.grpc}",
            "metrics": f"http://127.0.0.1:{self.ports.metrics}/metrics",
        }

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def argv(self) -> list[str]:
        backends = backend_directory(self._workdir / "backends")
        return argv(
            self.model_repository,
            ports=self.ports,
            backend_dir=backends,
            models=self.models,
            extra_args=self.extra_args,
        )

    def start(self, timeout: float = 60.0) -> TritonServer:
        """Start and wait until the server (and every model it loads at start) is ready, or raise TritonError."""
        if self._process is not None:
            raise TritonError("already started")
        began = time.monotonic()
        self._workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment(self._env),
                cwd=self._workdir,
                start_new_session=True,  # its own process group: stop() reaches the stubs too
            )
        try:
            self._wait(f"{self.urls['http']}/v2/health/ready", timeout, began)
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - began
        return self

    def wait_ready(self, model: str, timeout: float = 60.0) -> None:
        self._wait(f"{self.urls['http']}/v2/models/{model}/ready", timeout, time.monotonic())

    def _wait(self, url: str, timeout: float, began: float) -> None:
        deadline = began + timeout
        while True:
            process = self._process
            if process is None:
                raise TritonError("not started")
            self._regions |= shm_regions(process.pid)
            if process.poll() is not None:
                raise TritonError(
                    f"tritonserver exited with code {process.returncode} before {url} was ready; "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if http_status(url) == 200:
                return
            if time.monotonic() >= deadline:
                raise TritonError(
                    f"tritonserver was not ready at {url} within {timeout:.0f}s (a Python stub that cannot start "
                    f"keeps a model loading forever); last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.2)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace`; remove its shm regions and scratch. Idempotent."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            self._regions |= shm_regions(process.pid)
            code = terminate(process, grace)
        remove_regions(self._regions)
        self._regions = set()
        # The log stays when the caller named its place; otherwise start()'s errors already quote its tail.
        shutil.rmtree(self._workdir, ignore_errors=True)
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def terminate(process: subprocess.Popen[bytes], grace: float) -> int:
    """Stop a process started with `start_new_session=True`, and everything in its group; return its exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    finally:
        # Children that outlive the leader (a stub, a shell's child) still hold the group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=10)
