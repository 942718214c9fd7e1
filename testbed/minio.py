"""A MinIO server for the engine store's s3:// path: loopback only, generated root credentials, data on tmpfs.

Usage: python -m testbed.minio [--bucket NAME]   (runs until interrupted; tests use `MinioServer` directly)

MinIO built from Go modules (see `build`) runs as a single drive in a fresh folder under /dev/shm; nothing it
writes survives `stop()`. The process gets its own process group, so `stop()` takes down anything it forked.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import secrets
import signal
import sys
import tempfile
import time

import minio  # the SDK (imports are absolute), the engine store's own S3 client

from testbed import build, components, servers
from testbed.ports import free_port

START_TIMEOUT = 90.0


class MinioError(RuntimeError):
    """MinIO did not start or become ready in time; the message ends with its log's last lines."""


@dataclasses.dataclass(frozen=True)
class Connection:
    """How a client reaches the server: what a mounted credentials Secret would hold."""

    endpoint: str
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    bucket: str
    region: str = "us-east-1"

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def write_secret_dir(self, folder: pathlib.Path) -> pathlib.Path:
        """Write the credentials as a mounted Secret would show them: one file per key."""
        folder.mkdir(parents=True, exist_ok=True)
        for key, value in self.environment().items():
            path = folder / key
            path.write_text(value)
            path.chmod(0o600)
        return folder


class MinioServer(servers.ServerProcess):
    """One MinIO process; `start()` returns once `/minio/health/ready` answers and the bucket exists."""

    name = "MinIO"

    def __init__(
        self, *, bucket: str = "engines", log_dir: pathlib.Path | None = None, listen: str = "127.0.0.1"
    ) -> None:
        self.bucket = bucket
        # 0.0.0.0 where pods must reach it (the real node's pods dial the node address); clients here use loopback.
        self.listen = listen
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # Random per server: nothing outside this process and its children knows them.
        self._access_key = "kestrel-" + secrets.token_hex(6)
        self._secret_key = secrets.token_urlsafe(30)
        shm = pathlib.Path("/dev/shm")
        root = pathlib.Path(tempfile.mkdtemp(prefix="kestrel-minio-", dir=shm if shm.is_dir() else None))
        super().__init__(root, (log_dir or root) / "minio.log")

    @property
    def connection(self) -> Connection:
        return Connection(self.endpoint, self._access_key, self._secret_key, self.bucket)

    def start(self) -> Connection:
        build.build(components.MINIO_SERVER)
        (self.root / "data").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self._access_key,
            "MINIO_ROOT_PASSWORD": self._secret_key,
            # No web console, no update checks, no phoning home: the test bed has no network and needs none.
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CALLHOME_ENABLE": "off",
        }
        argv = [
            str(components.MINIO_SERVER.binary("minio")),
            "server",
            f"--address={self.listen}:{self.port}",
            f"--console-address=127.0.0.1:{free_port()}",
            f"--certs-dir={self.root / 'certs'}",
            "--quiet",
            str(self.root / "data"),
        ]
        self.launch(argv, env)
        try:
            self.wait_ready(self.endpoint + "/minio/health/ready", START_TIMEOUT, MinioError)
            self._make_bucket()
        except BaseException:
            self.stop()
            raise
        return self.connection

    def _make_bucket(self) -> None:
        client = minio.Minio(
            f"127.0.0.1:{self.port}", access_key=self._access_key, secret_key=self._secret_key, secure=False
        )
        if not client.bucket_exists(self.bucket):
            client.make_bucket(self.bucket)

    def __enter__(self) -> Connection:
        return self.start()


def stop_pid(pid: int) -> None:
    """Stop a server started by another process (the test bed's `down`), by its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + servers.STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", default="engines")
    args = parser.parse_args(argv)
    with MinioServer(bucket=args.bucket) as connection:
        print(f"MinIO ready at {connection.endpoint}, bucket {connection.bucket}; Ctrl-C stops it", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
