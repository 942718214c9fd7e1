"""The `kestrel` command line: one subcommand per job the operator, the build Job and the loader do, and the
commands people run against a cluster or a store (kestrel.commands). Installed as `kubectl-kestrel` too, so
`kubectl kestrel status NAME` is the same program."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pathlib
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import kestrel
from kestrel.api import crd
from kestrel.commands import canary, output, protoset, samples, status, upload

if TYPE_CHECKING:
    from kestrel.serving import tls_proxy

Command = Callable[[argparse.Namespace], int]


def _render(args: argparse.Namespace) -> int:
    if args.what == "crd":
        sys.stdout.write(crd.render_yaml() if args.output != "json" else output.dump(crd.render(), "json"))
    elif args.output != "text":
        print("kestrel render: -o applies to crd; the reference is Markdown", file=sys.stderr)
        return 2
    elif args.what == "reference":
        from kestrel.api import reference  # noqa: PLC0415 - only this subcommand needs it

        sys.stdout.write(reference.render())
    return 0


def _add_render(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("render", help="print generated artifacts")
    parser.add_argument(
        "what",
        choices=["crd", "reference"],
        help="crd: the ModelDeployment CustomResourceDefinition; reference: docs/reference.md, every field",
    )
    output.add_option(parser)  # crd: text and yaml are the YAML file as generated, json the same object
    parser.set_defaults(command=_render)


def _run(args: argparse.Namespace) -> int:
    from kestrel import allocator  # noqa: PLC0415

    arenas = allocator.limit_arenas()  # first: before any thread exists
    # Imported here: importing the handlers registers them with Kopf, which only `run` wants.
    import kopf  # noqa: PLC0415

    from kestrel import handlers, logs, operator_metrics  # noqa: PLC0415
    from kestrel import settings as operator_settings  # noqa: PLC0415
    from kestrel.commands import leadership  # noqa: PLC0415
    from kestrel.security import audit  # noqa: PLC0415

    # Read once, here: the start-up handler gets it as Kopf's memo and passes it on (handlers/lifecycle.py).
    configured = operator_settings.from_environment()
    namespaces, lease = configured.watch_namespaces, configured.leader_lease
    if args.metrics_port:
        operator_metrics.serve(args.metrics_port)
    kopf.configure(verbose=args.verbose)
    # Last line of defence: a record that looks like key material is kept, its text replaced by a notice.
    logs.use(configured.log_format, filters=[audit.RedactingFilter()])
    # Kopf reads its identity from POD_ID before it would ask the password database (see operator_identity).
    identity = operator_identity()
    os.environ["POD_ID"] = identity
    logging.getLogger("kestrel").info(arenas)
    # Replicas elect one leader on a Lease; it runs Kopf standalone (no Kopf peering), the others wait.
    election: contextlib.AbstractContextManager[object] = (
        leadership.leading(configured.settings.operator_namespace, lease, identity, args.health_port)
        if lease
        else contextlib.nullcontext()
    )
    with election:
        kopf.run(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None,
            registry=handlers.registry(),
            memo=configured,
        )
    return 0


def operator_identity(environ: Mapping[str, str] = os.environ) -> str:
    """Who this operator is to Kopf: POD_ID when set, else the host (the pod's name in a pod).

    Kopf's own default asks the password database for the user's name, which fails for a uid with no entry, as
    the chart's 65532 (or a random uid that OpenShift assigns) is in an image without one.
    """
    return environ.get("POD_ID") or f"kestrel@{socket.gethostname()}"


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("run", help="run the operator (configured by KESTREL_* environment variables)")
    parser.add_argument(
        "--health-port", type=int, default=8080, help="port of /healthz for the liveness probe; 0: none"
    )
    parser.add_argument("--metrics-port", type=int, default=9090, help="port of Prometheus /metrics; 0: none")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.set_defaults(command=_run)


def _build(args: argparse.Namespace) -> int:
    from kestrel.engine import command  # noqa: PLC0415 - the engine's heavy dependencies load only for this subcommand

    return command.run(
        args.spec,
        args.out,
        pvc_root=args.pvc_root,
        credentials_dir=args.credentials_dir,
        ca_file=args.ca_file,
        threads=args.threads,
    )


def _add_build(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("build", help="build, validate and profile an engine (what the build Job runs)")
    parser.add_argument("--spec", type=pathlib.Path, required=True, help="ModelDeployment YAML (object or spec)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    parser.add_argument("--pvc-root", type=pathlib.Path, help="where pvc://CLAIM/... is mounted (/mnt/pvc)")
    parser.add_argument("--credentials-dir", type=pathlib.Path, help="mounted credentials Secret for s3://")
    parser.add_argument("--ca-file", type=pathlib.Path, help="extra CA bundle for https:// and s3:// endpoints")
    parser.add_argument("--threads", type=int, help="CPU threads for inference (default: all)")
    parser.set_defaults(command=_build)


def _load(args: argparse.Namespace) -> int:
    from kestrel import loader  # noqa: PLC0415 - the store's S3 client loads only for the commands that use it

    return loader.load_command(
        args.source,
        args.target,
        kek_files=args.kek_files or [],
        kek_dir=args.kek_dir,
        verify_key_file=args.verify_key_file,
        require_encryption=args.require_encryption,
        expected_artifact_id=args.artifact_id,
        pvc_root=args.pvc_root,
        credentials_dir=args.credentials_dir,
        grant_file=args.store_grant,
        scratch_root=args.scratch_dir,
    )


def _add_load(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "load",
        help="fetch and verify an engine, decrypting it if encrypted, into a folder (the Triton pod's init container)",
        description="Exit codes: 0 loaded; 2 bad input; 3 integrity failure, nothing loaded; 4 store failure.",
    )
    parser.add_argument("--from", dest="source", required=True, help="engine URI: s3://BUCKET/PREFIX/NS/NAME/KEY")
    parser.add_argument("--to", dest="target", type=pathlib.Path, required=True, help="absent or empty folder")
    parser.add_argument(
        "--kek-file",
        dest="kek_files",
        type=pathlib.Path,
        action="append",
        help="key-encryption key (raw, hex or base64); repeat during a rotation, newest first; "
        "not needed for an engine that is not encrypted",
    )
    parser.add_argument(
        "--kek-dir",
        type=pathlib.Path,
        help="a mounted KEK Secret: its key 'kek' is the current KEK, other keys older ones (during a rotation)",
    )
    parser.add_argument(
        "--require-encryption",
        action="store_true",
        help="refuse an engine that is not encrypted, even if validly signed (set when the spec enables encryption)",
    )
    parser.add_argument(
        "--verify-key-file", "--verify-key", type=pathlib.Path, required=True, help="Ed25519 public key (PEM)"
    )
    parser.add_argument("--artifact-id", help="expected artifact id (default: NS/NAME/KEY from the URI)")
    parser.add_argument("--pvc-root", type=pathlib.Path, default=pathlib.Path("/mnt/pvc"), help="where pvc:// is")
    parser.add_argument(
        "--credentials-dir",
        "--store-credentials",
        type=pathlib.Path,
        help="mounted S3 credentials Secret for s3://",
    )
    parser.add_argument(
        "--store-grant", type=pathlib.Path, help="a store grant file for this engine (what the operator's pods get)"
    )
    parser.add_argument("--scratch-dir", type=pathlib.Path, help="where the ciphertext waits (default: TMPDIR)")
    parser.set_defaults(command=_load)


def _keys_rotate(args: argparse.Namespace) -> int:
    from kestrel import loader  # noqa: PLC0415 - as for load

    return loader.rotate_command(
        args.store,
        args.namespace,
        args.name,
        old_kek_file=args.old_kek_file,
        new_kek_file=args.new_kek_file,
        signing_key_file=args.signing_key_file,
        pvc_root=args.pvc_root,
        credentials_dir=args.credentials_dir,
    )


def _add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("keys", help="key management")
    actions = parser.add_subparsers(title="actions", required=True)
    rotate = actions.add_parser(
        "rotate",
        help="re-wrap every stored engine of a ModelDeployment under a new KEK (no re-encryption; idempotent)",
        description="Exit codes: 0 done; 2 bad input; 3 integrity failure; 4 store failure.",
    )
    rotate.add_argument("--store", required=True, help="engine store: s3://BUCKET/PREFIX or pvc://CLAIM/PREFIX")
    rotate.add_argument("--namespace", required=True)
    rotate.add_argument("--name", required=True, help="the ModelDeployment")
    rotate.add_argument("--old-kek-file", type=pathlib.Path, required=True)
    rotate.add_argument("--new-kek-file", type=pathlib.Path, required=True)
    rotate.add_argument(
        "--signing-key-file", type=pathlib.Path, required=True, help="Ed25519 private key (PEM) that re-signs"
    )
    rotate.add_argument("--pvc-root", type=pathlib.Path, default=pathlib.Path("/mnt/pvc"), help="where pvc:// is")
    rotate.add_argument("--credentials-dir", type=pathlib.Path, help="mounted S3 credentials Secret for s3://")
    rotate.set_defaults(command=_keys_rotate)


def _infer(args: argparse.Namespace) -> int:
    import os  # noqa: PLC0415

    from kestrel import infer  # noqa: PLC0415 - gRPC and OpenCV load only for this subcommand

    api_key = args.api_key_file.read_text().strip() if args.api_key_file else os.environ.get("KESTREL_API_KEY")
    endpoint = infer.Endpoint(
        address=args.endpoint,
        model=args.model,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        server_name=args.server_name,
        api_key=api_key or None,
    )
    try:
        images = [(str(path), infer.read_image(path)) for path in args.images]
        with infer.Client(endpoint, timeout=args.timeout) as client:
            if args.concurrency > 1:
                results = infer.detect_many(client, images, args.concurrency)
            else:
                results = [client.detect(image, name) for name, image in images]
    except infer.InferError as error:
        print(f"kestrel infer: {error}", file=sys.stderr)
        return 1
    for result in results:
        print("\n".join(infer.format_result(result)))
    latencies = [r.latency_ms for r in results]
    print(
        f"images={len(results)} detections={sum(len(r.detections) for r in results)} "
        f"p50_ms={infer.percentile(latencies, 50):.1f} p95_ms={infer.percentile(latencies, 95):.1f}"
    )
    return 0


def _add_infer(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "infer",
        help="send images to a served model over gRPC (TLS, API key) and print the boxes",
        description="The API key comes from --api-key-file or KESTREL_API_KEY, never from the command line.",
    )
    parser.add_argument("--endpoint", required=True, help="Triton gRPC address, host:port")
    parser.add_argument("--model", required=True, help="the model's name in Triton (the ModelDeployment's name)")
    parser.add_argument("--image", dest="images", type=pathlib.Path, action="append", required=True)
    parser.add_argument("--ca-file", type=pathlib.Path, help="CA that signed the server certificate (TLS)")
    parser.add_argument("--cert-file", type=pathlib.Path, help="client certificate (mutual TLS)")
    parser.add_argument("--key-file", type=pathlib.Path, help="client private key (mutual TLS)")
    parser.add_argument("--server-name", help="name to verify in the server certificate, e.g. the Service's DNS name")
    parser.add_argument("--api-key-file", type=pathlib.Path, help="file holding the API key")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (asyncio client)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.set_defaults(command=_infer)


def tls_proxy_config(args: argparse.Namespace) -> tls_proxy.Config:
    """The proxy's configuration from `kestrel tls-proxy` arguments; ValueError names what is wrong."""
    from kestrel.serving import tls_proxy  # noqa: PLC0415 - only this subcommand needs it

    if args.listen is None and args.health_listen is None:
        raise ValueError("give --listen, --health-listen or both")
    return tls_proxy.Config(
        target=tls_proxy.Address.parse(args.target),
        cert_file=args.cert,
        key_file=args.key,
        listen=tls_proxy.Address.parse(args.listen) if args.listen else None,
        health_listen=tls_proxy.Address.parse(args.health_listen) if args.health_listen else None,
        client_ca_file=args.client_ca,
    )


def _tls_proxy(args: argparse.Namespace) -> int:
    from kestrel.serving import tls_proxy  # noqa: PLC0415 - only this subcommand needs it

    try:
        config = tls_proxy_config(args)
    except ValueError as error:
        print(f"kestrel tls-proxy: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return tls_proxy.run(config)


def _add_tls_proxy(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "tls-proxy",
        help="the TLS front of a Triton pod: HTTPS (optionally mutual) relayed to Triton's local HTTP, "
        "and plain health answers for the kubelet",
        description="Exit codes: 0 stopped by a signal; 2 bad arguments, or a certificate or listener that failed.",
    )
    parser.add_argument("--listen", help="HTTPS listener, HOST:PORT (omit when clients speak only gRPC)")
    parser.add_argument("--health-listen", help="plain listener for Triton's liveness and readiness paths, HOST:PORT")
    parser.add_argument("--target", default="127.0.0.1:8000", help="Triton's HTTP listener, HOST:PORT")
    parser.add_argument("--cert", type=pathlib.Path, required=True, help="server certificate chain (PEM)")
    parser.add_argument("--key", type=pathlib.Path, required=True, help="server private key (PEM)")
    parser.add_argument(
        "--client-ca", type=pathlib.Path, help="require client certificates signed by this CA (PEM); only this CA"
    )
    parser.set_defaults(command=_tls_proxy)


def build_parser(prog: str = "kestrel") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {kestrel.__version__}")
    commands = parser.add_subparsers(title="commands", required=True)
    status.add_parser(commands)
    canary.add_parser(commands)
    upload.add_parser(commands)
    protoset.add_parser(commands)
    samples.add_parser(commands)
    _add_render(commands)
    _add_run(commands)
    _add_build(commands)
    _add_load(commands)
    _add_keys(commands)
    _add_infer(commands)
    _add_tls_proxy(commands)
    return parser


def program_name(argv0: str) -> str:
    """`kubectl kestrel` when run as kubectl's plugin (the `kubectl-kestrel` script), else `kestrel`."""
    return "kubectl kestrel" if pathlib.Path(argv0).name.startswith("kubectl-") else "kestrel"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(program_name(sys.argv[0])).parse_args(argv)
    command: Command = args.command
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
