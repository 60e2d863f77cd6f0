"""``perp run``: one configuration end to end in this process (or as a Ray task it waits for, with
``--executor ray``), with a progress bar per stage.

The run is recorded in the run store (so ``perp runs``, ``perp export`` and the app see it, and ``perp cancel``
stops it) unless ``--no-store``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import PerpError
from ..progress import STAGES
from ..result import RunResult
from .config_flags import add_config_flags, config_from_args
from .executor_flags import add_executor_flags, check_executor_flags, executor_from_args

STAGE_LABELS = {
    "load": "load model",
    "data": "prepare data",
    "dense_eval": "dense ppl",
    "dense_zero_shot": "dense 0-shot",
    "prune": "prune",
    "pruned_eval": "pruned ppl",
    "pruned_zero_shot": "pruned 0-shot",
    "train": "repair",
    "final_eval": "final ppl",
    "final_zero_shot": "final 0-shot",
}


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "run", help="run one configuration end to end",
        description="Load, calibrate, prune, optionally retrain/reconstruct, and measure one configuration.",
    )
    add_config_flags(parser)
    parser.add_argument("--json", metavar="PATH", help="write the RunResult as JSON to PATH")
    parser.add_argument("--store", metavar="PATH", help="run store to record into (default: $PERP_STORE or ~/.cache/perp-lab/runs.sqlite)")
    parser.add_argument("--no-store", action="store_true", help="do not record the run; nothing is reused")
    parser.add_argument("--recompute", action="store_true",
                        help="recompute even if an identical run or cached dense ppl / pruned weights exist")
    parser.add_argument("--keep-model", action="store_true", help="keep the final model in the store for `perp export`")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only the summary")
    add_executor_flags(parser, local_help="in this process")
    parser.set_defaults(func=run)


class StageBars:
    """One tqdm bar per stage, on stderr; the engine reports fractions in [0, 1]."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.stage: str | None = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            position = STAGES.index(stage) + 1 if stage in STAGES else 0
            self.bar = tqdm(total=1000, desc=f"[{position}/{len(STAGES)}] {STAGE_LABELS.get(stage, stage):<11}",
                            bar_format="{desc} {percentage:3.0f}%|{bar:30}| {elapsed} {postfix}", file=sys.stderr)
        self.bar.n = int(1000 * min(max(fraction, 0.0), 1.0))
        if message:
            self.bar.set_postfix_str(message[:60], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet_libraries() -> None:
    """``--quiet``: transformers' own progress bars (loading and writing weights) stay off too. The CLI owns its
    process, so turning them off there for good is what the flag asks."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def summary(result: RunResult) -> str:
    from ..evaluation.recovery import recovery_text
    from ..model.parameters import recorded_trainable_text
    from ..resources.estimate import estimate_text
    from ..result import notices

    cfg = result.config
    lines = [
        f"model {cfg['model']}  method {cfg['method']}  sparsity {cfg['sparsity']} ({cfg['pattern']})  device {result.device}",
        f"dense ppl   {result.dense_ppl:10.3f}" + ("  (reused)" if "dense_ppl" in result.reused else ""),
        f"pruned ppl  {result.pruned_ppl:10.3f}  measured sparsity {result.sparsity:.4f}"
        + ("  (pruned weights reused)" if "pruned_model" in result.reused else ""),
    ]
    if result.diverged:
        lines.append(f"final ppl   DIVERGED    after {cfg['mode']}: {result.diverged}")
    elif result.final_ppl is not None:
        recovered = recovery_text(result.dense_ppl, result.pruned_ppl, result.final_ppl)
        lines.append(f"final ppl   {result.final_ppl:10.3f}  after {cfg['mode']}" + (f", {recovered}" if recovered else ""))
    record = result.to_dict()
    if trained := recorded_trainable_text(record):
        lines.append(f"trainable   {result.trainable_params:,}: {trained}")
    lines += error_summary(result)
    lines.append("timings " + "  ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
                 + f"  peak memory {result.peak_memory_mb:.0f} MB")
    if estimated := estimate_text(result.estimate, sum(result.stage_seconds.values()) or None):
        lines.append(estimated)
    lines += [f"{n.level}: {n.text}" for n in notices(record)]
    return "\n".join(lines)


def error_summary(result: RunResult) -> list[str]:
    """The two layer-wise errors in two lines: the median local error of the linears and the accumulated error
    (drift) of the last block's output, after pruning and after repair."""
    if not result.layers or not result.blocks:
        return []
    windows = result.measure_windows
    where = f"{windows.get('count')} held-out windows of {windows.get('seqlen')} tokens from {windows.get('source')}"

    def pair(before, after) -> str:
        return _ratio(before) + (f" -> {_ratio(after)} after {result.config['mode']}" if after is not None else "")

    last = result.blocks[-1]
    return [f"layer errors on {where}:",
            f"  local, median over {len(result.layers)} linears   "
            + pair(_median([r.recon_error for r in result.layers]), _median([r.recon_error_after for r in result.layers])),
            "  accumulated (drift), last block output  " + pair(last.drift_before, last.drift_after)]


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2] if known else None


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_executor_flags(args)
    if args.no_store and args.executor != "local":
        raise PerpError("no_store", f"--executor {args.executor} records runs in the store; drop --no-store")
    if args.json:
        check_output_path(args.json)
    from ..run.preflight import check_run  # torch loads here, not when `perp runs` imports this module

    check_run(config)  # before anything is recorded: a typo never leaves a failed run behind
    if args.quiet:
        quiet_libraries()
    bars = StageBars(enabled=not args.quiet)
    try:
        if args.no_store:
            from ..run.pipeline import run_pipeline

            result = run_pipeline(config, bars)
            run_id = None
        else:
            run_id, store = (run_elsewhere if args.executor != "local" else run_here)(args, config, bars)
            row = store.get_run(run_id)
            if row.status != "done":
                print(f"perp: run {run_id} {row.status}: {row.error or row.message}", file=sys.stderr)
                return 130 if row.status == "cancelled" else 1
            result = RunResult.from_dict(row.result)
    finally:
        bars.close()
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    print(summary(result))
    if run_id is not None:
        print(f"recorded as run {run_id} (perp runs {run_id}; perp export {run_id} DIR)")
    return 0


def run_here(args: argparse.Namespace, config, bars: StageBars):
    """Record the run and execute it in this process; returns (run id, store)."""
    from ..jobs.worker import execute_run
    from ..store import RunStore

    store = RunStore(args.store)
    run_id = store.create_run(config, keep_model=args.keep_model, recompute=args.recompute)
    store.start_run(run_id, os.getpid())
    # the config comes from this command line (flags, --config FILE): the remote code it allows is given explicitly
    execute_run(store, run_id, forward=bars, reraise=True, trust_remote_code=config.trust_remote_code)
    return run_id, store


def run_elsewhere(args: argparse.Namespace, config, bars: StageBars):
    """Submit the run to the chosen executor and follow it with the bars until it ends; Ctrl-C cancels it.
    Returns (run id, store)."""
    executor = executor_from_args(args, trust_remote_code=config.trust_remote_code)
    try:
        run_id = executor.submit(config, keep_model=args.keep_model, recompute=args.recompute)

        def follow(statuses):
            status = statuses[run_id]
            if status.stage:
                bars(status.stage, status.fraction, status.message)

        executor.wait([run_id], poll=0.25, on_poll=follow)
    finally:
        executor.close()
    return run_id, executor.store


def check_output_path(name: str) -> None:
    """PerpError("json") unless ``name`` can be a new or replaced file: checked before the run, not after it."""
    path = Path(name).expanduser()
    if path.is_dir():
        raise PerpError("json", f"{name} is a folder; give the path of a file to write the result to")
    if not path.parent.is_dir():
        raise PerpError("json", f"the folder {path.parent} does not exist; create it or give another path")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PerpError("json", f"{name} cannot be written here (no permission)")
