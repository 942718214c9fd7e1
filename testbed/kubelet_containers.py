"""Containers as local processes: which program an image stands for, its command line, its probes, its end.

Image mapping (any registry, any tag): a repository named `kestrel`, `kestrel-builder` or `kestrel-loader` runs
the installed `kestrel` CLI; one whose name contains `tritonserver` runs the wheel's Triton through
`testbed.triton`; with `allow_python` (tests only) `python` runs this interpreter. Anything else is refused.

Networking is the host's, as with `hostNetwork: true`: a process listens where its arguments say. Triton is
the exception, because two Triton pods (a rolling update) would clash on 8000-8002: its listeners move to
free loopback ports, which the kubelet publishes on the pod (annotation `testbed.kestrel.dev/local-ports`)
and which its probes follow.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Literal

from testbed import triton
from testbed.kubelet_api import Api, Body
from testbed.kubelet_volumes import DEFAULT_TERMINATION_PATH, Mounts, PodLayout, RefusedError, environment, expand
from testbed.ports import free_port

Runtime = Literal["kestrel", "triton", "python"]
KESTREL_IMAGES = ("kestrel", "kestrel-builder", "kestrel-loader")
BIN = pathlib.Path(sys.executable).parent
MESSAGE_BYTES = 4096  # the kubelet's own cap on a termination message
LOG_FALLBACK_LINES = 80
LOG_FALLBACK_BYTES = 2048


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def repository_name(image: str) -> str:
    """`registry:5000/org/kestrel-builder:0.1@sha256:…` -> `kestrel-builder`."""
    path = image.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def runtime_of(image: str, *, allow_python: bool) -> Runtime:
    name = repository_name(image)
    if name in KESTREL_IMAGES:
        return "kestrel"
    if "tritonserver" in name or name == "kestrel-triton-cpu":
        return "triton"
    if allow_python and name == "python":
        return "python"
    known = "kestrel, kestrel-builder, kestrel-loader, kestrel-triton-cpu, *tritonserver*" + (
        ", python" if allow_python else ""
    )
    raise RefusedError(f"image {image!r} has no local program (the process kubelet runs: {known})")


@dataclasses.dataclass
class Launch:
    """Everything needed to start one container, already made local."""

    name: str
    runtime: Runtime
    argv: list[str]
    env: dict[str, str]
    cwd: pathlib.Path
    log: pathlib.Path
    termination: pathlib.Path
    fallback_to_logs: bool
    ports: dict[int, int]  # container port -> local port


def plan(
    api: Api,
    layout: PodLayout,
    container: Body,
    *,
    base_env: Mapping[str, str],
    allow_python: bool,
    pod_ports: dict[int, int] | None = None,
) -> Launch:
    """The local command for `container`; RefusedError for an unmapped image, VolumeError for a missing env source.

    `pod_ports` is the pod's map of container port -> local port, shared by its containers and filled here as
    listeners are moved to free local ports (Triton's, and the TLS proxy's and the Triton port it relays to).
    """
    pod_ports = {} if pod_ports is None else pod_ports
    runtime = runtime_of(container["image"], allow_python=allow_python)
    mounts = Mounts.of(layout, container)
    root = layout.container_root(container["name"])
    scratch = root / "tmp"
    scratch.mkdir(exist_ok=True)
    base = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(root), "TMPDIR": str(scratch)}
    base |= {"LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "HOSTNAME": layout.pod["metadata"]["name"], **base_env}
    env = environment(api, layout, container, mounts, base)
    default = {"kestrel": ["kestrel"], "triton": ["tritonserver"], "python": ["python3"]}[runtime]
    words = [*(container.get("command") or default), *(container.get("args") or [])]
    # Translate first, then expand: an expanded value is already local and must not be translated twice.
    words = [expand(mounts.translate(word), env) for word in words]
    ports = {p["containerPort"]: p["containerPort"] for p in container.get("ports") or []}
    program = pathlib.Path(words[0]).name
    if runtime == "kestrel":
        if program != "kestrel":
            raise RefusedError(f"container {container['name']!r}: a Kestrel image runs `kestrel`, not {words[0]!r}")
        argv = [str(BIN / "kestrel"), *words[1:]]
        if words[1:2] == ["tls-proxy"]:
            argv, proxied = _local_tls_proxy(argv, pod_ports)
            ports |= proxied
    elif runtime == "python":
        if not program.startswith("python"):
            raise RefusedError(f"container {container['name']!r}: the python image runs `python`, not {words[0]!r}")
        argv = [sys.executable, *words[1:]]
    else:
        if program != "tritonserver":
            raise RefusedError(
                f"container {container['name']!r}: the Triton image runs `tritonserver`, not {words[0]!r}"
            )
        listen = triton.listen_ports(words[1:])
        local = {protocol: pod_ports.setdefault(listen[protocol], free_port()) for protocol in listen}
        ports |= {listen[protocol]: local[protocol] for protocol in listen}
        backends = triton.backend_directory(layout.directory / "triton-backends")
        argv = triton.translate(words[1:], ports=triton.Ports(**local), backend_dir=backends)
        env = triton.environment(env)
    termination = mounts.path(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)
    termination.parent.mkdir(parents=True, exist_ok=True)
    termination.write_bytes(b"")
    return Launch(
        name=container["name"],
        runtime=runtime,
        argv=argv,
        env=env,
        cwd=mounts.path(container["workingDir"]) if container.get("workingDir") else root,
        log=layout.log(container["name"]),
        termination=termination,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        ports=ports,
    )


TLS_PROXY_ADDRESSES = ("--listen", "--health-listen", "--target")


def _local_tls_proxy(argv: list[str], pod_ports: dict[int, int]) -> tuple[list[str], dict[int, int]]:
    """`kestrel tls-proxy` on loopback: each HOST:PORT it listens on or relays to becomes 127.0.0.1 at the pod's
    local port for that container port, so two pods' proxies never collide and the relay reaches this pod's
    Triton (whose HTTP port is the same entry of the pod's map, whichever container is planned first)."""
    translated, listening = [], {}
    for arg in argv:
        name, sep, value = arg.partition("=")
        if sep and name in TLS_PROXY_ADDRESSES:
            port = int(value.rpartition(":")[2])
            local = pod_ports.setdefault(port, free_port())
            if name != "--target":
                listening[port] = local
            translated.append(f"{name}=127.0.0.1:{local}")
        else:
            translated.append(arg)
    return translated, listening


class Process:
    """One run of a container: a process group, its log, its Triton shm regions."""

    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        self.started_at = now()
        self.regions: set[pathlib.Path] = set()
        launch.cwd.mkdir(parents=True, exist_ok=True)
        with launch.log.open("ab") as log:
            self.popen = subprocess.Popen(
                launch.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=launch.env,
                cwd=launch.cwd,
                start_new_session=True,  # a process group per container: stopping it reaches its children
            )

    @property
    def container_id(self) -> str:
        return f"process://{self.popen.pid}"

    def poll(self) -> int | None:
        if self.launch.runtime == "triton":
            self.regions |= triton.shm_regions(self.popen.pid)
        code = self.popen.poll()
        if code is not None:
            self._cleanup()
        return code

    def stop(self, grace: float) -> int:
        if self.launch.runtime == "triton":
            self.regions |= triton.shm_regions(self.popen.pid)
        code = triton.terminate(self.popen, max(grace, 0.0))
        self._cleanup()
        return code

    def _cleanup(self) -> None:
        # A Python-backend stub killed with its server leaves its region behind; nobody else would remove it.
        triton.remove_regions(self.regions)
        self.regions = set()

    def message(self, code: int) -> str:
        """The termination message: the file's content, or with FallbackToLogsOnError the log's tail on error."""
        try:
            with self.launch.termination.open("rb") as file:
                text = file.read(MESSAGE_BYTES).decode(errors="replace")
        except OSError:
            text = ""
        if not text.strip() and code != 0 and self.launch.fallback_to_logs and self.launch.log.exists():
            lines = self.launch.log.read_bytes().decode(errors="replace").splitlines()[-LOG_FALLBACK_LINES:]
            text = "\n".join(lines)[-LOG_FALLBACK_BYTES:]
        return text


class Prober:
    """One probe of one container, with the kubelet's thresholds; `exec` and `grpc` probes are not supported."""

    def __init__(self, spec: Body | None, container: Body, ports: Mapping[int, int], *, initial: bool) -> None:
        self.spec = spec or {}
        self.defined = spec is not None
        self.named = {p["name"]: p["containerPort"] for p in container.get("ports") or [] if p.get("name")}
        self.ports = ports
        self.result = initial if self.defined else True
        self.failures = 0
        self.successes = 0
        self.next_at = time.monotonic() + float(self.spec.get("initialDelaySeconds", 0))

    @property
    def failed(self) -> bool:
        return self.defined and self.failures >= int(self.spec.get("failureThreshold", 3))

    def tick(self) -> None:
        if not self.defined or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + float(self.spec.get("periodSeconds", 10))
        if self.check():
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold", 1)):
                self.result = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failed:
                self.result = False

    def _port(self, port: Any) -> int:
        container_port = self.named.get(port, port) if isinstance(port, str) else port
        return self.ports.get(int(container_port), int(container_port))

    def check(self) -> bool:
        timeout = float(self.spec.get("timeoutSeconds", 1))
        if "httpGet" in self.spec:
            get = self.spec["httpGet"]
            url = f"http://127.0.0.1:{self._port(get['port'])}{get.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as answer:
                    return 200 <= int(answer.status) < 400
            except (urllib.error.URLError, OSError, ValueError):
                return False  # HTTPError (>= 400) is a URLError too
        if "tcpSocket" in self.spec:
            try:
                with socket.create_connection(("127.0.0.1", self._port(self.spec["tcpSocket"]["port"])), timeout):
                    return True
            except OSError:
                return False
        return False


def pre_stop(container: Body, ports: Mapping[int, int], budget: float) -> None:
    """Run a preStop hook within `budget` seconds: `sleep` and `httpGet` are honoured, `exec` is skipped."""
    hook = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in hook:
        time.sleep(min(float(hook["sleep"]["seconds"]), max(budget, 0.0)))
    elif "httpGet" in hook:
        Prober({**hook, "timeoutSeconds": max(min(budget, 5.0), 0.1)}, container, ports, initial=False).check()
