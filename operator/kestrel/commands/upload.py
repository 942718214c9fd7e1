"""`kestrel upload CHECKPOINT s3://bucket/key`: put a checkpoint where spec.model.source will point, and print that
source with the sha256 the build Job will verify.

The file is read once: each block is hashed as it goes into the upload, so the printed sha256 is that of exactly
the bytes the store received, even if the file changed while it was sent. Credentials are the AWS_* variables,
as the engine store reads them (AWS_ENDPOINT_URL for MinIO or another S3-compatible server, AWS_CA_BUNDLE).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import pydantic

from kestrel.api import spec
from kestrel.commands import output, transfer_progress

if TYPE_CHECKING:
    from kestrel.storage import s3

    Uploader = Callable[[str, s3.Readable, int, s3.Credentials], None]

# Blocks handed to the uploader: small enough that the progress line moves while a part fills.
BLOCK = 1 << 20
EXIT_BAD_INPUT = 2
ACCESS_HINT = (
    "Set spec.model.source.credentialsSecret to a Secret in the model's namespace with AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a store other than AWS S3) that may read this object."
)


class HashingReader:
    """A file as the uploader reads it, hashed and counted block by block."""

    def __init__(self, raw: BinaryIO, shown: transfer_progress.Progress) -> None:
        self._raw, self._shown = raw, shown
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(BLOCK if size < 0 else min(size, BLOCK))
        self.sha256.update(data)
        self._shown.advance(len(data))
        return data


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "upload",
        help="upload a checkpoint to S3 and print its spec.model.source (uri and sha256)",
        description="Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN, AWS_REGION, "
        "AWS_ENDPOINT_URL, AWS_CA_BUNDLE. Progress goes to stderr when it is a terminal. Exit codes: 0 uploaded; "
        "1 the store refused or failed; 2 bad input.",
    )
    parser.add_argument("checkpoint", type=pathlib.Path, help="the Ultralytics .pt file")
    parser.add_argument("uri", help="where to put it: s3://BUCKET/KEY")
    output.add_option(parser, formats=("yaml", "json"))
    parser.set_defaults(command=run)


def source(uri: str, sha256: str) -> dict[str, Any]:
    """The stanza to paste into a ModelDeployment, checked against the API's own model of it."""
    stanza = spec.SourceSpec(uri=uri, sha256=sha256).model_dump(by_alias=True, exclude_none=True)
    return {"spec": {"model": {"source": stanza}}}


def upload(
    checkpoint: pathlib.Path,
    uri: str,
    credentials: s3.Credentials,
    stderr: TextIO,
    put: Uploader | None = None,
) -> str:
    """Upload (by default with storage.s3), showing progress on `stderr`; the hex sha256 of what was sent."""
    if put is None:
        from kestrel.storage import s3  # noqa: PLC0415 - the S3 client loads only for the commands that use it

        put = s3.put_object
    with checkpoint.open("rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        shown = transfer_progress.Progress(f"Uploading {checkpoint.name}", size, stderr)
        reader = HashingReader(raw, shown)
        put(uri, reader, size, credentials)
        shown.finish()
    return reader.sha256.hexdigest()


def run(args: argparse.Namespace) -> int:
    from kestrel.storage import errors as storage_errors  # noqa: PLC0415 - as in `upload`
    from kestrel.storage import s3  # noqa: PLC0415

    where = "kestrel upload"
    try:
        source(args.uri, "0" * 64)  # the URI is one the spec accepts, before anything is sent
        s3.object_location(args.uri)
    except (pydantic.ValidationError, storage_errors.StoreConfigError) as error:
        print(f"{where}: {args.uri!r} cannot be a spec.model.source.uri: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.checkpoint.is_file():
        print(f"{where}: {args.checkpoint} is not a file", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        digest = upload(args.checkpoint, args.uri, s3.Credentials.load(None), sys.stderr)
    except storage_errors.StoreConfigError as error:
        print(f"{where}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except storage_errors.StorageError as error:
        print(f"{where}: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(output.dump(source(args.uri, digest), args.output))
    print(ACCESS_HINT, file=sys.stderr)
    return 0
