"""The `kestrel` command line: one subcommand per job the operator, the build Job and the loader do."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from kestrel.api import crd

Command = Callable[[argparse.Namespace], int]


def _render(args: argparse.Namespace) -> int:
    if args.what == "crd":
        sys.stdout.write(crd.render_yaml())
    return 0


def _add_render(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("render", help="print generated artifacts")
    parser.add_argument("what", choices=["crd"], help="crd: the ModelDeployment CustomResourceDefinition")
    parser.set_defaults(command=_render)


def _run(args: argparse.Namespace) -> int:
    # Imported here: importing the handlers registers them with Kopf, which only `run` wants.
    import kopf  # noqa: PLC0415

    from kestrel import handlers  # noqa: PLC0415
    from kestrel.handlers import config  # noqa: PLC0415

    namespaces = config.from_environment().watch_namespaces
    kopf.configure(verbose=args.verbose)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None,
        registry=handlers.registry(),
    )
    return 0


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("run", help="run the operator (configured by KESTREL_* environment variables)")
    parser.add_argument(
        "--health-port", type=int, default=8080, help="port of /healthz for the liveness probe; 0: none"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.set_defaults(command=_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kestrel", description=__doc__)
    commands = parser.add_subparsers(title="commands", required=True)
    _add_render(commands)
    _add_run(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.command
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
