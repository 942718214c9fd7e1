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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kestrel", description=__doc__)
    commands = parser.add_subparsers(title="commands", required=True)
    _add_render(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.command
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
