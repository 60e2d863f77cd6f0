"""The ``perp`` command: one subcommand per module in COMMANDS, each exposing add_parser(subparsers).

Exit codes: 0 success, 1 a run that failed, 2 bad input or an unusable file (one line on stderr), 130 Ctrl-C,
141 when the reader of the output went away (``perp runs | head``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import PerpError
from ..resources.heap import reexec_tuned

COMMANDS = ("run_cmd", "estimate_cmd", "sweep_cmd", "runs_cmd", "cancel_cmd", "export_cmd", "store_cmd", "reproduce_cmd",
            "tasks_cmd")
EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (``perp run: error: ...``) instead of the usage block;
    ``--help`` still prints everything. Subcommand parsers inherit it."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="perp",
        description="PERP Lab: prune small LLMs and repair them with parameter-efficient retraining.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``argv`` None: the command line of this process (the ``perp`` command), which first starts over with the C
    heap settings of perp_engine.resources.heap where the C library needs them; a list: those arguments, in this process."""
    if argv is None:
        reexec_tuned()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, in this handler, not at interpreter exit
        return code
    except PerpError as err:
        print(f"perp: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("perp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader closed the pipe: say nothing more, and keep Python from complaining when it flushes stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
