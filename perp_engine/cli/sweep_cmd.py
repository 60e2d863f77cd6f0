"""``perp sweep``: queue one run per point of a grid, from a YAML/JSON file and/or field flags.

Example: ``perp sweep --sparsity 0.3,0.5,0.7 --method magnitude,wanda --preset none,perp`` queues 12 runs.
With ``--executor ray`` the runs are Ray tasks and the command waits for them: it is their driver.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..config import RunConfig, field_values
from ..errors import PerpError
from ..jobs import Executor, JobStatus
from ..run.sweep import (
    MAX_POINTS,
    SweepSpec,
    checked_configs,
    describe_point,
    load_sweep_file,
    parse_values,
    queue_sweep,
    with_axes,
)
from .config_flags import HELP
from .executor_flags import add_executor_flags, executor_from_args
from .runs_cmd import add_store_flag, runs_table

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "sweep", help="queue a grid of runs (background workers execute them)",
        description="Queue one run per combination of the grid. Each field flag takes comma-separated values "
                    "(several values make a grid axis, one value applies to every run); '+' joins the items of "
                    "a list field, e.g. --train norms,norms+biases. Runs execute in background worker processes; "
                    "follow them with `perp runs --sweep N`.",
        epilog="Sweep file (YAML or JSON): {name: ..., base: {field: value}, grid: {field: [values]}}.",
    )
    parser.add_argument("file", nargs="?", help="sweep file (YAML, or JSON if it ends in .json); flags override it")
    fields = parser.add_argument_group("grid fields (RunConfig)")
    for name in FIELDS:
        fields.add_argument("--" + name.replace("_", "-"), dest="axes", action=AxisAction, metavar="V[,V...]",
                            help=HELP[name])
    parser.add_argument("--name", help="sweep name (default: the grid's fields and sizes)")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="local worker processes executing runs at once (default: 1)")
    parser.add_argument("--keep-models", action="store_true",
                        help="keep each run's final model for `perp export` (disk: one model per run); "
                             "without it, export recomputes the run")
    parser.add_argument("--recompute", action="store_true",
                        help="recompute everything, even what identical earlier runs or the artifact cache hold")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="queue the valid points and skip invalid combinations (default: queue nothing)")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS, metavar="N",
                        help=f"refuse grids larger than N points (default: {MAX_POINTS})")
    parser.add_argument("--dry-run", action="store_true", help="print the points, queue nothing")
    parser.add_argument("--wait", action="store_true", help="wait for the runs and print each as it finishes")
    parser.add_argument("--resume", action="store_true",
                        help="no grid: start workers for the runs left queued (after a reboot or a crash); with "
                             "--executor ray, submit them to Ray and wait for them")
    parser.add_argument("--json", action="store_true", help="print the sweep id and run ids as JSON")
    add_store_flag(parser)
    add_executor_flags(parser, local_help="detached worker processes on this machine (--parallel)")
    parser.set_defaults(func=run)


class AxisAction(argparse.Action):
    """Collects field flags as (field, text) in command-line order, so the grid's axes keep the user's order."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.axes = [*(namespace.axes or []), (option_string.lstrip("-").replace("-", "_"), values)]


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    texts: dict[str, list[str]] = {}
    for name, text in args.axes or []:
        texts.setdefault(name, []).append(text)
    axes = {name: parse_values(name, values) for name, values in texts.items()}
    spec = load_sweep_file(args.file) if args.file else None
    return with_axes(spec, axes, args.name or "")


def gives_remote_code(spec: SweepSpec | None) -> bool:
    """Whether this command line (its flags or the sweep file it names) sets trust_remote_code: then its runs, and
    with --resume the queued runs that set it, may execute the model's own code (see perp_engine.run.trust)."""
    if spec is None:
        return False
    values = [*([spec.base["trust_remote_code"]] if "trust_remote_code" in spec.base else []),
              *spec.grid.get("trust_remote_code", [])]
    return any(field_values({"trust_remote_code": value})["trust_remote_code"] for value in values)


def run(args: argparse.Namespace) -> int:
    if args.dry_run and not args.resume:
        spec = spec_from_args(args)
        configs, skipped = checked_configs(spec, skip_invalid=True, max_points=args.max_points)
        for point in spec.points():
            print(describe_point(point))
        print(f"{spec.size} points, {len(configs)} valid" + "".join(f"\nskip {describe_point(p)}: {why}" for p, why in skipped))
        return 0
    if args.executor != "local" and args.parallel != 1:
        raise PerpError("parallel", "--parallel sets local worker processes; Ray runs as many at once as the "
                                    "cluster's resources allow (--ray-cpus, --ray-gpus per run)")
    spec = spec_from_args(args) if args.axes or args.file or not args.resume else None
    executor = executor_from_args(args, max_parallel=args.parallel, trust_remote_code=gives_remote_code(spec))
    if args.resume:
        started = executor.ensure_workers()
        if not executor.detached:
            print(f"submitted {len(started)} queued runs to {executor.describe()}", flush=True)
            return wait_for(executor, started, quiet=args.json) if started else 0
        queued = len(executor.store.list_runs(status="queued"))
        print(f"{queued} runs queued; started {len(started)} worker(s)" + (f" (log: {executor.worker_log})" if started else ""))
        return 0
    sweep_id, run_ids, skipped = queue_sweep(spec, executor, executor.store, keep_model=args.keep_models,
                                             recompute=args.recompute, skip_invalid=args.skip_invalid,
                                             max_points=args.max_points)
    if args.json:
        print(json.dumps({"sweep_id": sweep_id, "run_ids": run_ids,
                          "skipped": [{"point": p, "reason": why} for p, why in skipped]}))
    else:
        for point, why in skipped:
            print(f"skipped {describe_point(point)}: {why}", file=sys.stderr)
        where = (f"{args.parallel} at a time" if executor.detached else
                 f"on {executor.describe()}; this command waits for them (Ctrl-C cancels them)")
        print(f"sweep {sweep_id} ({spec.name}): queued {len(run_ids)} runs ({run_ids[0]}-{run_ids[-1]}), "
              f"{where}. Follow: perp runs --sweep {sweep_id}   Cancel: perp cancel --sweep {sweep_id}", flush=True)
    if args.wait or not executor.detached:
        return wait_for(executor, run_ids, quiet=args.json)
    return 0


def wait_for(executor: Executor, run_ids: list[int], quiet: bool = False) -> int:
    """Print each run as it finishes, then the table of all. Ctrl-C stops waiting: the runs of a detached
    executor go on, the others are cancelled."""
    seen: dict[int, str] = {}

    def report(statuses: dict[int, JobStatus]) -> None:
        for run_id, status in statuses.items():
            if status.finished and seen.get(run_id) != status.status and not quiet:
                row = executor.store.get_run(run_id)
                detail = status.error if status.status != "done" else (
                    f"DIVERGED: {row.diverged}" if row.diverged else f"final ppl {row.final_ppl or row.pruned_ppl:.3f}")
                print(f"run {run_id} {status.status}: {detail}", flush=True)
            seen[run_id] = status.status

    try:
        executor.wait(run_ids, on_poll=report)
    except KeyboardInterrupt:
        if executor.detached:
            print("stopped waiting; the runs go on in the background (perp runs)", file=sys.stderr)
        else:
            executor.close()
            print("stopped; the unfinished runs were cancelled", file=sys.stderr)
        return 130
    rows = [executor.store.get_run(i) for i in run_ids]
    if not quiet:
        print(runs_table(rows))
    return 0 if all(r.status == "done" for r in rows) else 1
