"""``perp store check | recover``: find damage in the run store, salvage its readable runs into a new file."""

from __future__ import annotations

import argparse

from ..store import default_store_path
from ..store.salvage import check_store, recover_store
from .runs_cmd import add_store_flag


def add_parser(sub) -> None:
    parser = sub.add_parser("store", help="check or recover a damaged run store",
                            description="check: run SQLite's integrity check and decode every run (exit 0 when "
                                        "sound, 2 when damaged). recover: copy every readable row into a new store "
                                        "that takes the old one's place; the damaged file is kept beside it as "
                                        "<name>.damaged-<time>.")
    parser.add_argument("action", choices=("check", "recover"), help="check or recover")
    add_store_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.store or default_store_path()
    problems = check_store(path)
    if args.action == "check":
        if not problems:
            print(f"store {path}: no damage found")
            return 0
        print(f"store {path}: damaged; `perp store recover --store {path}` salvages the readable runs")
        print("\n".join(f"  {line}" for line in problems))
        return 2
    if not problems:
        print(f"store {path}: no damage found; nothing to recover")
        return 0
    recovered = recover_store(path)
    lost = {t: n for t, n in recovered.lost.items() if n}
    print(f"recovered {recovered.kept.get('runs', 0)} runs into {recovered.path}"
          + (f" ({', '.join(f'{n} {t} rows' for t, n in lost.items())} unreadable, left behind)" if lost else "")
          + f"; the damaged file is kept as {recovered.aside} (restart a running app so it opens the new file)")
    return 0
