"""`kestrel samples download --from ENGINE_URI --to DIR`: the live samples a served engine sealed, opened.

The Triton pods seal each sample to the model's key-encryption key and hold only its public half
(`kestrel.serving.backends.sampling`); opening them takes the KEK itself, as `kestrel load` does (`--kek-file` or a
mounted KEK Secret with `--kek-dir`), and the store's credentials (the AWS_* variables, or `--credentials-dir`).
Each sample is written as `<name>.npz` (arrays `image`, `detections`, `meta`; load with `numpy.load`). A sample that
does not open (tampered, moved from another model's or revision's folder, sealed to another key) is named on stderr
and skipped; the exit code is then 3.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # imported when run: `kestrel --help` must not load the S3 client
    from kestrel.security import kms
    from kestrel.serving.backends import sampling
    from kestrel.storage import layout, store

EXIT_BAD_INPUT, EXIT_UNOPENED, EXIT_STORE = 2, 3, 4


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("samples", help="live samples of a served model (spec.monitoring.sampling)")
    actions = parser.add_subparsers(title="actions", required=True)
    download = actions.add_parser(
        "download",
        help="fetch and open the samples of one engine into a folder",
        description="Exit codes: 0 every sample opened; 2 bad input; 3 some samples did not open; 4 store failure.",
    )
    download.add_argument("--from", dest="source", required=True, help="engine URI: s3://BUCKET/PREFIX/NS/NAME/KEY")
    download.add_argument("--to", dest="target", type=pathlib.Path, required=True, help="folder for the .npz files")
    download.add_argument(
        "--kek-file", dest="kek_files", type=pathlib.Path, action="append", default=[], help="the KEK; repeatable"
    )
    download.add_argument("--kek-dir", type=pathlib.Path, help="a KEK Secret's files (key 'kek' and older keys)")
    download.add_argument("--pvc-root", type=pathlib.Path, default=pathlib.Path("/mnt/pvc"), help="where pvc:// is")
    download.add_argument("--credentials-dir", type=pathlib.Path, help="mounted S3 credentials Secret for s3://")
    download.set_defaults(command=run)


def opener(ring: kms.KeyRing) -> sampling.Unwrap:
    """The samples' unwrap, by the key ring: the same `envelope.unwrap` that opens engines."""
    from kestrel.security import envelope  # noqa: PLC0415 - see TYPE_CHECKING above

    def unwrap(kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        return envelope.unwrap(ring, envelope.WrappedKey(kek_id, wrapped), context)

    return unwrap


def download(
    engines: store.Store, ref: layout.EngineRef, ring: kms.KeyRing, target: pathlib.Path, stderr: TextIO
) -> tuple[int, int]:
    """Open every sample of `ref` into `target`; (opened, refused)."""
    from kestrel.api import errors as api_errors  # noqa: PLC0415 - see TYPE_CHECKING above
    from kestrel.serving.backends import sampling  # noqa: PLC0415
    from kestrel.storage import layout  # noqa: PLC0415

    target.mkdir(parents=True, exist_ok=True)
    unwrap, opened, refused = opener(ring), 0, 0
    for name in engines.list_files(ref, layout.SAMPLES_DIR):
        if not name.endswith(sampling.SUFFIX):
            continue
        relative = f"{layout.SAMPLES_DIR}/{name}"
        blob = engines.read_file(ref, relative, layout.MAX_SAMPLE_SIZE)
        try:
            plain = sampling.open_sealed(blob, f"{ref.path}/{relative}".encode(), unwrap)
            sampling.unpack(plain)  # a sample that opens but is no sample is refused too
        except (ValueError, api_errors.KestrelError) as error:
            print(f"kestrel samples: {name} did not open: {error}", file=stderr)
            refused += 1
            continue
        (target / (name.removesuffix(sampling.SUFFIX) + ".npz")).write_bytes(plain)
        opened += 1
    return opened, refused


def run(args: argparse.Namespace) -> int:
    from kestrel import storage  # noqa: PLC0415 - see TYPE_CHECKING above
    from kestrel.api import errors as api_errors  # noqa: PLC0415
    from kestrel.security import errors as security_errors  # noqa: PLC0415
    from kestrel.security import keyfiles, x25519  # noqa: PLC0415
    from kestrel.storage import errors as storage_errors  # noqa: PLC0415
    from kestrel.storage import layout  # noqa: PLC0415

    try:
        location, ref = layout.parse_engine_uri(args.source)
        keks = [keyfiles.read_kek(path) for path in args.kek_files]
        if args.kek_dir is not None:
            keks += keyfiles.read_kek_dir(args.kek_dir)
        if not keks:
            print(
                "kestrel samples: samples are sealed to the model's KEK: give --kek-file or --kek-dir", file=sys.stderr
            )
            return EXIT_BAD_INPUT
        engines = storage.open_store(location.uri, pvc_root=args.pvc_root, credentials_dir=args.credentials_dir)
        opened, refused = download(engines, ref, x25519.key_ring(keks), args.target, sys.stderr)
    except (storage_errors.StoreConfigError, security_errors.KeyMaterialError) as error:
        print(f"kestrel samples: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except api_errors.KestrelError as error:
        print(f"kestrel samples: {error}", file=sys.stderr)
        return EXIT_STORE
    print(f"kestrel samples: opened {opened} samples of engine {ref.key[:8]} into {args.target}", file=sys.stderr)
    return EXIT_UNOPENED if refused else 0
