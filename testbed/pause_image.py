"""The sandbox ("pause") image of the real node, written as a `docker save` archive without any image builder.

One layer holding the static `/pause` binary; containerd imports the archive (`ctr images import`) under the name
its CRI plugin uses as `sandbox_image`, so no pod ever needs a registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import tarfile
import tempfile

NAME = "registry.k8s.io/pause"
# The user upstream's pause image runs as (nobody's uid in the image's own terms).
USER = "65535:65535"


def _layer(binary: pathlib.Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        info = layer.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with binary.open("rb") as data:
            layer.addfile(info, data)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write(binary: pathlib.Path, archive_path: pathlib.Path, version: str) -> None:
    """Write the image `NAME:version` with `binary` as its entrypoint to `archive_path`."""
    layer = _layer(binary)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": USER},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": f"kestrel test bed: pause.c {version}, gcc -static"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [f"{NAME}:{version}"], "Layers": [layer_name]}])
    with tempfile.NamedTemporaryFile(dir=archive_path.parent, delete=False) as handle:
        staging = pathlib.Path(handle.name)
    try:
        with tarfile.open(staging, mode="w") as archive:
            _add(archive, config_name, config)
            _add(archive, layer_name, layer)
            _add(archive, "manifest.json", manifest.encode())
        staging.rename(archive_path)
    finally:
        staging.unlink(missing_ok=True)
