"""Build Kestrel's container images with a private Docker daemon, cached by content, for the test bed's node.

Usage: python -m testbed.images build [NAME...] | import ADDRESS [--namespace NS] [NAME...] | sizes [NAME...]
       | paths [NAME...]  (the saved tars, for `kind load image-archive` or `docker load`)

No container registry is reachable here, so the base is made too: `debootstrap --variant=minbase bookworm` is
what the public `debian:bookworm-slim` is made of, and the Dockerfiles take their base as `ARG BASE`. Each
image is built by the classic builder (Debian's docker.io has no buildx) of a dockerd this module starts and
stops (its own sockets and data root, no iptables, no bridge), saved with `docker save` under a content key
(Dockerfile, build args, base, the files it copies), and a saved tar means no build; `import_into` hands the
tars to a containerd (`ctr images import`). The daemon's data root lives in the cache, so its layer cache
survives: editing operator/ reinstalls the package, not torch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

from testbed import components

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker"  # Debian's 20.10 client: /usr/local/bin/docker, when present, is another one
REGISTRY = "ghcr.io/kestrel-dev"
BASE_REF = "kestrel-testbed/debian:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA_BUNDLE = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
HOST_EXTRA_CAS = pathlib.Path("/usr/local/share/ca-certificates")
# Image name -> Dockerfile under docker/, in build order (the loader reuses the operator's layers).
DOCKERFILES = {
    "kestrel-operator": "operator.Dockerfile",
    "kestrel-loader": "loader.Dockerfile",
    "kestrel-triton-cpu": "triton-cpu.Dockerfile",
    "kestrel-builder": "builder.Dockerfile",
}
# Bumped when what goes into a key changes meaning, so no stale tar is taken for a fresh one.
KEY_FORMAT = "kestrel-images/1"
KEY_LABEL = "dev.kestrel.testbed.key"
# Each named stage is tagged here: pruning the replaced images then never drops the layer cache of current builds.
STAGE_REPOSITORY = "kestrel-testbed/stage"
COMPRESS_LIMIT = 2 * 1024**3
LOG_TAIL_LINES = 30
# The runtime mounts these; debootstrap's contents of them (device nodes) stay out of the base.
RUNTIME_OWNED = ("--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*")
# What debuerreotype removes to make Debian's `-slim` images (and keeps out of later installs via dpkg).
SLIM_DPKG_CONFIG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
# The public image's apt settings (debuerreotype's): no package caches or downloaded .debs left in any layer.
SLIM_APT_CONFIG = {
    "docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
        '/var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
        '/var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-gzip-indexes": 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n',
}
# The apt sources of the public image (its security and point-release updates), not debootstrap's one line.
DEBIAN_SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


class ImagesError(RuntimeError):
    """An image, the base or the private Docker daemon could not be made; the message says why."""


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # kestrel-loader
    ref: str  # ghcr.io/kestrel-dev/kestrel-loader:0.1.0
    tar: pathlib.Path  # `docker save` output, importable with `ctr images import`
    key: str  # sha256 hex of everything the build reads
    size: int  # bytes of the tar


def cache_dir() -> pathlib.Path:
    return components.cache_root().parent / "images"


def version() -> str:
    text = (ROOT / "operator" / "kestrel" / "__init__.py").read_text()
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, flags=re.MULTILINE)
    if not found:
        raise ImagesError("operator/kestrel/__init__.py sets no __version__")
    return found.group(1)


def ref(name: str) -> str:
    return f"{REGISTRY}/{name}:{version()}"


def _elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.0f} s"


# --- Content keys (pure) ---


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile's COPY and ADD instructions read (not those `--from` a stage)."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    sources: list[str] = []
    for line in joined.splitlines():
        words = line.split()
        if len(words) < 3 or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        if args and args[0].startswith("["):
            args = json.loads(" ".join(args))
        sources += [s.rstrip("/") or "." for s in args[:-1]]
    return sorted(set(sources))


def stages(dockerfile: str) -> list[str]:
    """The names of a Dockerfile's named stages (`FROM base AS name`), in order."""
    return re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, flags=re.MULTILINE | re.IGNORECASE)


def cache_key(dockerfile: bytes, build_args: Mapping[str, str], base_digest: str, files: Mapping[str, bytes]) -> str:
    """sha256 over everything a build reads; each part length-prefixed, so no two inputs can run together."""
    digest = hashlib.sha256()

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)

    part(KEY_FORMAT.encode())
    part(dockerfile)
    for name in sorted(build_args):
        part(f"{name}={build_args[name]}".encode())
    part(base_digest.encode())
    for path in sorted(files):
        part(path.encode())
        part(files[path])
    return digest.hexdigest()


def context_files(sources: Sequence[str], root: pathlib.Path = ROOT) -> dict[str, bytes]:
    """Each copied file's content by path: folders expand to their tracked and untracked, not ignored, files."""
    files: dict[str, bytes] = {}
    ignore = root / ".dockerignore"
    if ignore.is_file():
        files[".dockerignore"] = ignore.read_bytes()
    for source in sources:
        path = root / source
        if path.is_file():
            files[source] = path.read_bytes()
            continue
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z", source],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in sorted({n.decode() for n in listed if n}):
            if (root / name).is_file():  # a tracked file deleted in the work tree is not sent
                files[name] = (root / name).read_bytes()
    return files


def image_key(name: str, base_digest: str) -> str:
    dockerfile = ROOT / "docker" / DOCKERFILES[name]
    text = dockerfile.read_bytes()
    files = context_files(copied_sources(text.decode()))
    return cache_key(text, build_args(), base_digest, files)


def build_args() -> dict[str, str]:
    return {"BASE": BASE_REF}


def cached_tar(name: str, key: str) -> pathlib.Path:
    return cache_dir() / f"{name}-{key[:16]}.tar"


# --- The base: debootstrap, once ---


def base_tar() -> pathlib.Path:
    return cache_dir() / "debian-bookworm.tar"


def _slim(rootfs: pathlib.Path) -> None:
    """Remove what the `-slim` images leave out, and keep it out of later `apt-get install`s."""
    share = rootfs / "usr" / "share"
    for folder in ("groff", "info", "linda", "lintian/overrides", "locale", "man"):
        for child in (share / folder).glob("*"):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for path in sorted((share / "doc").glob("**/*"), reverse=True):
        keep = path.name == "copyright" and path.parent.parent == share / "doc"
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):  # still holds a copyright file
                path.rmdir()
        elif not keep:
            path.unlink()
    (rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "docker").write_text(SLIM_DPKG_CONFIG)
    for name, text in SLIM_APT_CONFIG.items():
        (rootfs / "etc" / "apt" / "apt.conf.d" / name).write_text(text)
    # debootstrap leaves the .debs it installed (some 50 MB) and apt's caches.
    lists, cache = rootfs / "var" / "lib" / "apt" / "lists", rootfs / "var" / "cache" / "apt"
    for apt in (lists, lists / "partial", cache, cache / "archives", cache / "archives" / "partial"):
        for child in apt.glob("*"):
            if child.is_file():
                child.unlink()


def _trust_host_cas(rootfs: pathlib.Path) -> None:
    """The host's CAs (the egress proxy's among them), so pip and apt inside builds reach their indexes."""
    shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    extra = rootfs / "usr" / "local" / "share" / "ca-certificates"
    extra.mkdir(parents=True, exist_ok=True)
    for cert in sorted(HOST_EXTRA_CAS.glob("*.crt")):
        shutil.copyfile(cert, extra / cert.name)


def ensure_base() -> tuple[pathlib.Path, str]:
    """The debootstrapped base as a tarball, and its sha256; made once (about 3 minutes), never rebuilt."""
    tar, digest_file = base_tar(), base_tar().with_suffix(".tar.sha256")
    if tar.is_file() and digest_file.is_file():
        return tar, digest_file.read_text().strip()
    _need_root("debootstrap")
    if shutil.which("debootstrap") is None:
        raise ImagesError("the base image is made with debootstrap: apt-get install debootstrap")
    cache_dir().mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"Making the base image with debootstrap (about 3 minutes) into {tar}", flush=True)
    with tempfile.TemporaryDirectory(prefix=".debootstrap-", dir=cache_dir()) as scratch:
        rootfs = pathlib.Path(scratch) / "rootfs"
        log = pathlib.Path(scratch) / "debootstrap.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    "bookworm",
                    str(rootfs),
                    "http://deb.debian.org/debian",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise ImagesError(f"debootstrap failed ({done.returncode}):\n{_tail(log)}")
        (rootfs / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
        (rootfs / "etc" / "apt" / "sources.list.d" / "debian.sources").write_text(DEBIAN_SOURCES)
        _slim(rootfs)
        _trust_host_cas(rootfs)
        partial = pathlib.Path(scratch) / "base.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), *RUNTIME_OWNED, "."],
            check=True,
        )
        digest = _sha256(partial)
        partial.rename(tar)
        digest_file.write_text(digest + "\n")
    print(f"Made the base image in {_elapsed(started)} ({tar.stat().st_size / 1e6:.0f} MB)", flush=True)
    return tar, digest


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ImagesError(f"{what} needs root: run as root, or use images already in {cache_dir()}")


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tail(path: pathlib.Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- The private Docker daemon ---


class Daemon:
    """A dockerd of our own: data root in the cache (its layer cache survives), sockets in a scratch folder.

    No iptables rules and no bridge, so the host's network is left as it was; builds use the host's network.
    """

    def __init__(self, data_root: pathlib.Path) -> None:
        self.data_root = data_root
        # A unix socket path must stay under 108 bytes: the scratch folder is short and in /tmp.
        self._scratch = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-dockerd-", dir="/tmp"))
        self.socket = self._scratch / "docker.sock"
        self.log_path = self.data_root.parent / "dockerd.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60.0) -> Daemon:
        """Start dockerd and wait until it answers `docker version`; on failure stop it and raise with its log."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        _need_root("a private dockerd")
        if shutil.which("dockerd") is None or not pathlib.Path(DOCKER).is_file():
            raise ImagesError(f"images are built by Debian's dockerd and {DOCKER}: apt-get install docker.io")
        self.data_root.mkdir(parents=True, exist_ok=True)
        config = self._scratch / "daemon.json"
        config.write_text("{}\n")  # never the host's /etc/docker/daemon.json
        command = [
            "dockerd",
            f"--config-file={config}",
            f"--data-root={self.data_root}",
            f"--exec-root={self._scratch / 'exec'}",
            f"--pidfile={self._scratch / 'dockerd.pid'}",
            f"--host={self.host}",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--storage-driver=overlay2",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise ImagesError(f"dockerd exited with code {code}; last lines of {self.log_path}:\n{self._tail()}")
            answered = subprocess.run([DOCKER, "-H", self.host, "version"], capture_output=True, check=False)
            if answered.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ImagesError(f"dockerd did not answer within {timeout:.0f} s; last lines:\n{self._tail()}")
            time.sleep(0.5)

    def _tail(self) -> str:
        return _tail(self.log_path)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM dockerd (it stops its own containerd), SIGKILL its group after `grace`; remove the scratch."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # dockerd leaves its default network namespace bind-mounted under the exec root.
        for mount in sorted(_mounts_under(self._scratch), reverse=True):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
        shutil.rmtree(self._scratch, ignore_errors=True)

    def docker(
        self,
        *args: str,
        stdin: IO[bytes] | None = None,
        output: int | IO[bytes] | None = subprocess.PIPE,
        cwd: pathlib.Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the docker client against this daemon; `output`: PIPE (captured), a file (both streams), None."""
        stderr = subprocess.PIPE if output == subprocess.PIPE else None if output is None else subprocess.STDOUT
        return subprocess.run(
            [DOCKER, "-H", self.host, *args],
            stdin=stdin,
            stdout=output,
            stderr=stderr,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            check=False,
        )

    def label(self, reference: str, label: str) -> str | None:
        fmt = "{{index .Config.Labels " + json.dumps(label) + "}}"
        done = self.docker("image", "inspect", "--format", fmt, reference)
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _mounts_under(folder: pathlib.Path) -> list[pathlib.Path]:
    mounts = [line.split()[4] for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines()]
    return [pathlib.Path(m) for m in mounts if pathlib.Path(m).is_relative_to(folder)]


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One builder at a time: two dockerds on one data root would corrupt it."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_base(daemon: Daemon, tar: pathlib.Path, digest: str) -> None:
    label = "dev.kestrel.testbed.base-digest"
    if daemon.label(BASE_REF, label) == digest:
        return
    started = time.monotonic()
    with tar.open("rb") as stream:
        done = daemon.docker(
            "import",
            "--change",
            f"LABEL {label}={digest}",
            "--change",
            'CMD ["bash"]',
            "-",
            BASE_REF,
            stdin=stream,
        )
    if done.returncode != 0:
        raise ImagesError(f"docker import of {tar} failed: {done.stderr.decode(errors='replace')}")
    print(f"Imported {BASE_REF} in {_elapsed(started)}", flush=True)


def _build(daemon: Daemon, name: str, key: str, *, verbose: bool) -> pathlib.Path:
    reference = ref(name)
    log = cache_dir() / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    dockerfile = f"docker/{DOCKERFILES[name]}"
    args = [arg for k, v in sorted(build_args().items()) for arg in ("--build-arg", f"{k}={v}")]
    common = ["build", "--network", "host", "--force-rm", "-f", dockerfile, *args]
    targets = [(["--label", f"{KEY_LABEL}={key}", "-t", reference], "")]
    # The named stages after the image, all from the layer cache by then: seconds each.
    targets += [
        (["--target", stage, "-t", f"{STAGE_REPOSITORY}:{name}-{stage}"], stage)
        for stage in stages((ROOT / dockerfile).read_text())
    ]
    print(f"Building {name} (log: {log})", flush=True)
    started = time.monotonic()
    with log.open("wb") as out:
        for extra, stage in targets:
            done = daemon.docker(
                *common, *extra, ".", env={"DOCKER_BUILDKIT": "0"}, cwd=ROOT, output=None if verbose else out
            )
            if done.returncode != 0:
                what = f"stage {stage} of {name}" if stage else name
                raise ImagesError(f"building {what} failed; last lines of {log}:\n{_tail(log)}")
    built = time.monotonic()
    tar = cached_tar(name, key)
    # The tars of this image's earlier content keys go first: no build will load them again, and the builder's is
    # 7.5 GB, which a disk that held both did not have room for ("no space left on device" in the save).
    for old in cache_dir().glob(f"{name}-*.tar"):
        if old != tar and re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{16}}\.tar", old.name):
            old.unlink()
    partial = tar.with_name(f".{tar.name}.partial")
    saved = daemon.docker("save", "-o", str(partial), reference)
    if saved.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ImagesError(f"docker save {reference} failed: {saved.stderr.decode(errors='replace')}")
    partial.rename(tar)
    size = tar.stat().st_size
    print(
        f"Built {name} in {built - started:.0f} s, saved in {_elapsed(built)} ({size / 1e6:.0f} MB: {tar})", flush=True
    )
    return tar


def ensure(names: Sequence[str] | None = None, *, verbose: bool = False) -> list[Image]:
    """The images `names` (default: all), each built and saved unless a tar with its content key is cached."""
    wanted = list(names) if names else list(DOCKERFILES)
    unknown = [n for n in wanted if n not in DOCKERFILES]
    if unknown:
        raise ImagesError(f"unknown images {unknown}; known: {', '.join(DOCKERFILES)}")
    with _locked():
        base, digest = ensure_base()
        keys = {name: image_key(name, digest) for name in wanted}
        missing = [name for name in wanted if not cached_tar(name, keys[name]).is_file()]
        if missing:
            with Daemon(cache_dir() / "docker") as daemon:
                _load_base(daemon, base, digest)
                for name in missing:
                    _build(daemon, name, keys[name], verbose=verbose)
                # Images that a newer build or base replaced: the layer cache keeps only what tags still use.
                daemon.docker("image", "prune", "--force")
        images = []
        for name in wanted:
            tar = cached_tar(name, keys[name])
            if name not in missing:
                print(f"Cached {name} ({tar})", flush=True)
            images.append(Image(name=name, ref=ref(name), tar=tar, key=keys[name], size=tar.stat().st_size))
        return images


# --- Into a containerd ---


def _imported_keys(address: str, namespace: str) -> dict[str, str]:
    """ref -> the content key each image was labelled with at import, as `ctr images ls` lists them."""
    done = subprocess.run(
        ["ctr", "--address", address, "-n", namespace, "images", "ls"], capture_output=True, check=False
    )
    if done.returncode != 0:
        raise ImagesError(f"ctr images ls at {address} failed: {done.stderr.decode(errors='replace')}")
    keys = {}
    for line in done.stdout.decode().splitlines()[1:]:
        words = line.split()
        labels = dict(label.split("=", 1) for label in words[-1].split(",") if "=" in label) if words else {}
        if words and KEY_LABEL in labels:
            keys[words[0]] = labels[KEY_LABEL]
    return keys


def import_into(address: str, images: Sequence[Image] | None = None, namespace: str = "k8s.io") -> None:
    """`ctr images import` each image (default: all, built if need be) into the containerd at `address`.

    An image already there under the same content key (a label set at import) is skipped.
    """
    if shutil.which("ctr") is None:
        raise ImagesError("importing needs containerd's ctr: apt-get install containerd")
    images = ensure() if images is None else images
    present = _imported_keys(address, namespace)
    for image in images:
        if present.get(image.ref) == image.key:
            print(f"Present {image.name} in {namespace} at {address}", flush=True)
            continue
        started = time.monotonic()
        ctr = ["ctr", "--address", address, "-n", namespace, "images"]
        done = subprocess.run([*ctr, "import", str(image.tar)], capture_output=True, check=False)
        if done.returncode != 0:
            raise ImagesError(f"ctr import of {image.tar} failed: {done.stderr.decode(errors='replace')}")
        subprocess.run([*ctr, "label", image.ref, f"{KEY_LABEL}={image.key}"], capture_output=True, check=True)
        print(f"Imported {image.name} into {namespace} at {address} in {_elapsed(started)}", flush=True)


# --- Sizes ---


def compressed_size(path: pathlib.Path, level: int = 6) -> int:
    """Bytes of `gzip -{level}` of a file, counted as it streams, never stored."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    total = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def sizes(names: Sequence[str] | None = None) -> list[tuple[Image, int, int | None]]:
    """(image, uncompressed bytes as `docker image inspect` reports them, gzip -6 bytes of its tar or None)."""
    images = ensure(names)
    uncompressed: dict[str, int] = {}
    with _locked(), Daemon(cache_dir() / "docker") as daemon:
        for image in images:
            if daemon.label(image.ref, KEY_LABEL) != image.key:
                daemon.docker("load", "-i", str(image.tar))
            done = daemon.docker("image", "inspect", "--format", "{{.Size}}", image.ref)
            if done.returncode != 0:
                raise ImagesError(f"docker image inspect {image.ref} failed: {done.stderr.decode(errors='replace')}")
            uncompressed[image.name] = int(done.stdout.decode().strip())
    return [
        (image, uncompressed[image.name], compressed_size(image.tar) if image.size <= COMPRESS_LIMIT else None)
        for image in images
    ]


def _mb(size: int | None) -> str:
    return "not measured (tar over 2 GB)" if size is None else f"{size / 1e6:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build (or find cached) images")
    build.add_argument("-v", "--verbose", action="store_true", help="show the builds' output")
    importing = commands.add_parser("import", help="import images into a containerd")
    importing.add_argument("address", help="containerd's socket")
    importing.add_argument("--namespace", default="k8s.io")
    size = commands.add_parser("sizes", help="each image's uncompressed and gzip -6 size")
    paths = commands.add_parser("paths", help="each image's saved tar (built first if needed), one per line")
    for sub in (build, importing, size, paths):
        sub.add_argument("names", nargs="*", help=f"images (default: all of {', '.join(DOCKERFILES)})")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the private dockerd is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.command == "build":
            ensure(args.names, verbose=args.verbose)
        elif args.command == "import":
            import_into(args.address, ensure(args.names), namespace=args.namespace)
        elif args.command == "paths":
            with contextlib.redirect_stdout(sys.stderr):  # the build's progress; stdout is the list
                images = ensure(args.names)
            print("\n".join(str(image.tar) for image in images))
        else:
            rows = sizes(args.names)
            print("| image | uncompressed | compressed (gzip -6 of `docker save`) |")
            print("|---|---:|---:|")
            for image, uncompressed, compressed in rows:
                print(f"| {image.ref} | {_mb(uncompressed)} | {_mb(compressed)} |")
    except ImagesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
