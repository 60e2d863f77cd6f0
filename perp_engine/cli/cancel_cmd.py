"""``perp cancel``: cancel queued or running runs (a running run stops within seconds, marked cancelled).

It works through the store whatever executes the run: a worker sees the cancel flag itself, a Ray driver turns
it into ``ray.cancel`` of the run's task."""

from __future__ import annotations

import argparse

from ..errors import PerpError
from ..jobs import LocalExecutor
from .runs_cmd import add_store_flag

WAIT_S = 60.0


def add_parser(sub) -> None:
    parser = sub.add_parser("cancel", help="cancel runs",
                            description="Cancel runs: a queued run is cancelled at once, a running one stops within "
                                        "seconds; finished runs are left as they are.")
    parser.add_argument("ids", nargs="*", metavar="ID", help="run ids (see perp runs)")
    parser.add_argument("--sweep", type=int, metavar="N", help="cancel every unfinished run of sweep N")
    parser.add_argument("--wait", action="store_true", help=f"wait (up to {WAIT_S:.0f} s) until running runs have stopped")
    add_store_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    executor = LocalExecutor(args.store)
    ids = list(args.ids)
    if args.sweep is not None:
        ids += [r.id for r in executor.store.sweep_runs(args.sweep) if not r.finished]
    if not ids and args.sweep is None:
        raise PerpError("id", "give run ids to cancel (perp runs lists them) or --sweep N")
    rows = [executor.store.get_run(i) for i in ids]  # every id checked before anything is cancelled
    stopping = []
    for row in rows:
        if row.finished:
            print(f"run {row.id}: already {row.status}, nothing to cancel")
            continue
        status = executor.cancel(row.id)
        if status.finished:
            print(f"run {row.id}: {status.status}")
        else:
            stopping.append(row.id)
            print(f"run {row.id}: cancel requested; it stops within seconds")
    if args.wait and stopping:
        for run_id, status in executor.wait(stopping, timeout=WAIT_S).items():
            print(f"run {run_id}: {status.status}")
    if args.sweep is not None and not ids:
        print(f"sweep {args.sweep}: every run had already finished")
    return 0
