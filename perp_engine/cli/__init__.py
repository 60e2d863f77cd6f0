"""The ``perp`` command: one subcommand per module in COMMANDS, each exposing add_parser(subparsers)."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import PerpError

COMMANDS = ("run_cmd", "sweep_cmd", "runs_cmd", "cancel_cmd", "export_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perp",
        description="PERP Lab: prune small LLMs and repair them with parameter-efficient retraining.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PerpError as err:
        print(f"perp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
