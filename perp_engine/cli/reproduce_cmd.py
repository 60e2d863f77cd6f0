"""``perp reproduce``: the fixed set of runs that tests PERP's three claims, through the run store and an
executor, then DIR/report.md, DIR/report.json and the figures (HTML, and PNG when a Chrome/Chromium is found).

Runs that finished before are taken from the store, so a second invocation recomputes nothing and one after a
crash resumes. ``--quick`` runs the same set on a tiny random model in about a minute (what the tests run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..config import ZERO_SHOT_LIMIT, ZERO_SHOT_MODELS
from ..errors import PerpError
from ..jobs import Executor, JobStatus
from .config_flags import HELP, zero_shot_limit
from .executor_flags import add_executor_flags, check_executor_flags, executor_from_args
from .runs_cmd import add_store_flag

DEFAULT_OUT = "perp-paper"
QUICK_PARALLEL = 2


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "reproduce", help="run the set of runs that tests the PERP paper's three claims, then write the report",
        description="Queue the fixed set of runs that tests PERP's three claims on the embedded model "
                    "(perp_engine/reproduce/runset.py; --dry-run lists them with the cost-model estimate), wait for "
                    "them, and write DIR/report.md, DIR/report.json and the figures. Finished runs are reused from "
                    "the store, so running it again recomputes nothing and resumes an interrupted set.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="the same set on a tiny random LLaMA built under $PERP_HOME/reproduce (about a minute; "
                             "the numbers mean nothing: it checks the machinery)")
    parser.add_argument("--out", metavar="DIR",
                        help=f"folder for the report and figures (default: {DEFAULT_OUT}, {DEFAULT_OUT}-quick with "
                             "--quick); `--out docs/paper` makes the report the app's Paper page and the README ship")
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="local worker processes executing runs at once (default: 1, each using every core; "
                             f"{QUICK_PARALLEL} with --quick, whose tiny runs are bound by per-run overhead, each worker "
                             "then getting its share of the cores)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the runs, their sizes and the cost-model estimate; queue nothing")
    parser.add_argument("--zero-shot", metavar="TASKS",
                        help=f"{HELP['zero_shot']}, or none; the runs of claims 1 and 2 score them and the report gets "
                             "a zero-shot table per claim (default: paper, 50 docs per task, as the shipped set; none "
                             "with --quick)")
    parser.add_argument("--zero-shot-limit", type=zero_shot_limit, metavar="N",
                        help="with --zero-shot: docs per zero-shot task, a subset drawn with the set's seed (0); 'all' "
                             f"or 0 for every doc of the split (default: {ZERO_SHOT_LIMIT})")
    parser.add_argument("--zero-shot-on", metavar="MODELS",
                        help=f"with --zero-shot: {HELP['zero_shot_on']} (default: {','.join(ZERO_SHOT_MODELS)})")
    add_store_flag(parser)
    add_executor_flags(parser, local_help="detached worker processes on this machine (--parallel)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..reproduce import (
        assemble,
        breakdowns,
        latest_rows,
        paper_set,
        queue_set,
        quick_set,
        set_seconds,
        write_report,
    )
    from ..run.preflight import Preflight  # torch and transformers load here, not when `perp --help` runs

    out = Path(args.out or (f"{DEFAULT_OUT}-quick" if args.quick else DEFAULT_OUT))
    if out.exists() and not out.is_dir():
        raise PerpError("out", f"{out} is a file; give a folder for the report")
    if args.parallel is not None and args.parallel < 1:
        raise PerpError("parallel", f"{args.parallel} is not allowed; use an integer >= 1")
    if args.executor != "local" and args.parallel is not None:
        raise PerpError("parallel", "--parallel sets local worker processes; Ray runs as many at once as the "
                                    "cluster's resources allow (--ray-cpus, --ray-gpus per run)")
    check_executor_flags(args)
    zero_shot = None if args.zero_shot is None else {} if args.zero_shot == "none" else {
        "zero_shot": args.zero_shot, "zero_shot_limit": args.zero_shot_limit, "zero_shot_on": args.zero_shot_on}
    if zero_shot is None and (args.zero_shot_limit is not None or args.zero_shot_on):
        raise PerpError("zero_shot", "--zero-shot-limit and --zero-shot-on need --zero-shot TASKS")
    if args.dry_run:
        runset = quick_set(zero_shot=zero_shot) if args.quick else paper_set(zero_shot=zero_shot)
        stages = breakdowns(runset)
        for planned in runset.runs:
            print(f"{planned.key:<36} claims {','.join(map(str, planned.claims)):<5} "
                  f"{sum(stages[planned.key].values()) / 60:5.1f} min alone")
        print(f"{len(runset.runs)} runs, sizes {runset.sizes}; cost-model estimate of the whole set: "
              f"{set_seconds(runset, stages) / 60:.0f} min (shared dense and pruned models counted once)")
        return 0
    started = time.monotonic()
    executor = executor_from_args(args, max_parallel=args.parallel or (QUICK_PARALLEL if args.quick else 1))
    try:
        runset = quick_set(zero_shot=zero_shot) if args.quick else paper_set(zero_shot=zero_shot)
        stages = breakdowns(runset)
        queued = queue_set(runset, executor, executor.store, check=Preflight().check)
        print(f"{len(runset.runs)} runs: {len(queued.reused)} finished before (reused from the store), "
              f"{len(queued.waiting)} already queued or running, {len(queued.submitted)} submitted"
              + (f" as sweep {queued.sweep_id} (perp runs --sweep {queued.sweep_id}); cost-model estimate "
                 f"{set_seconds(runset, stages, queued.submitted) / 60:.0f} min" if queued.submitted else "") + ".",
              flush=True)
        code = follow(executor, queued.run_ids)
    finally:
        executor.close()
    if code == 130:
        return code
    rows = latest_rows(executor.store, runset)
    report = write_report(assemble(runset, rows, estimate_seconds=set_seconds(runset, stages),
                                   wall_seconds=time.monotonic() - started, command=_command(args)), out)
    for claim in report["claims"]:
        print(f"Claim {claim['number']} ({claim['title']}): {claim['verdict']['status']}. {claim['verdict']['text']}")
    if report["png_note"]:
        print(f"note: {report['png_note']}")
    print(f"wrote {out / 'report.md'}, {out / 'report.json'} and {len(report['figures'])} figures")
    return 0 if all(r is not None and r.status == "done" for r in rows.values()) else 1


def follow(executor: Executor, run_ids: dict[str, int]) -> int:
    """Wait for the runs with a bar of how many finished and what runs now; a line per run that ends other
    than done. Ctrl-C stops waiting (local runs go on; Ray runs are cancelled): 130."""
    keys = {run_id: key for key, run_id in run_ids.items()}
    reported: set[int] = set()
    bar = tqdm(total=len(keys), desc="runs", unit="run", file=sys.stderr, bar_format="{desc} {n}/{total} |{bar:30}| "
               "{elapsed} {postfix}")

    def update(statuses: dict[int, JobStatus]) -> None:
        finished = [i for i, s in statuses.items() if s.finished]
        for run_id in finished:
            if run_id not in reported and statuses[run_id].status != "done":
                bar.write(f"run {run_id} ({keys[run_id]}) {statuses[run_id].status}: {statuses[run_id].error}")
            reported.add(run_id)
        running = [(i, s) for i, s in statuses.items() if s.status == "running"]
        bar.n = len(finished)
        bar.set_postfix_str("; ".join(f"{keys[i]}: {s.stage or 'starting'} {100 * s.fraction:.0f}%"
                                      for i, s in running)[:80], refresh=False)
        bar.refresh()

    try:
        executor.wait(keys, on_poll=update, poll=1.0)
    except KeyboardInterrupt:
        bar.close()
        print("stopped waiting; " + ("the runs go on in the background: run the same command again to wait for them "
                                     "and write the report" if executor.detached else "the unfinished runs were cancelled"),
              file=sys.stderr)
        return 130
    bar.close()
    return 0


def _command(args: argparse.Namespace) -> str:
    parts = ["perp reproduce"] + (["--quick"] if args.quick else []) + (["--out", args.out] if args.out else [])
    if args.zero_shot is not None:
        parts += ["--zero-shot", args.zero_shot]
        if args.zero_shot_limit is not None:
            parts += ["--zero-shot-limit", str(args.zero_shot_limit or "all")]
        if args.zero_shot_on:
            parts += ["--zero-shot-on", args.zero_shot_on]
    return " ".join(parts + (["--executor", args.executor] if args.executor != "local" else []))
