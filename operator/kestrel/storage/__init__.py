"""The engine store: where built engines live between the build Job, the operator's cache and `kestrel load`.

Modules, one concept each:

- `layout`: store URIs (`s3://bucket/prefix`, `pvc://claim/prefix`), `EngineRef`, and the names below them.
- `store`: the `Store` protocol and what its implementations share (artifact walking, garbage selection).
- `s3`: `S3Store` on AWS S3, GCS's S3 API or MinIO.
- `connection`: what signs for it: `Credentials` (keys from a mounted Secret or the environment), else `Ambient`.
- `identity`: the credential chain `Ambient` signs with (IRSA's web identity, an ECS or EC2 role), kept fresh.
- `pvc`: `PvcStore` on a mounted volume.
- `errors`: `StorageError` and its subclasses, under `kestrel.api.errors.EngineError`.

Never imports the Kubernetes client: the operator passes in what it read from the API.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

from kestrel.storage import layout, pvc, s3, store


def open_store(
    uri: str,
    *,
    pvc_root: pathlib.Path = pvc.DEFAULT_MOUNT_ROOT,
    credentials_dir: pathlib.Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> store.Store:
    """The store at `uri`; s3:// reads keys from `credentials_dir` or `environ`, else signs with the ambient
    identity (its first request says what to set when there is none); pvc:// uses `pvc_root`."""
    location = layout.parse_store_uri(uri)
    if location.scheme == "pvc":
        return pvc.PvcStore(location, pvc_root)
    return s3.S3Store(location, s3.load(credentials_dir, environ))
