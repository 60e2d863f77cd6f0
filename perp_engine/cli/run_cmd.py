"""``perp run``: one configuration end to end, with a progress bar per stage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..pipeline import run_pipeline
from ..progress import STAGES
from ..result import RunResult
from .config_flags import add_config_flags, config_from_args

STAGE_LABELS = {
    "load": "load model",
    "data": "prepare data",
    "dense_eval": "dense ppl",
    "prune": "prune",
    "pruned_eval": "pruned ppl",
    "train": "repair",
    "final_eval": "final ppl",
}


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "run", help="run one configuration end to end",
        description="Load, calibrate, prune, optionally retrain/reconstruct, and measure one configuration.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_flags(parser)
    parser.add_argument("--json", metavar="PATH", help="write the RunResult as JSON to PATH")
    parser.add_argument("--save-model", metavar="DIR", help="save the final model (safetensors + masks) to DIR")
    parser.add_argument("--cache-dir", metavar="DIR", help="reuse dense perplexity / pruned weights of identical settings from DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only the summary")
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


def summary(result: RunResult) -> str:
    cfg = result.config
    lines = [
        f"model {cfg['model']}  method {cfg['method']}  sparsity {cfg['sparsity']} ({cfg['pattern']})  device {result.device}",
        f"dense ppl   {result.dense_ppl:10.3f}" + ("  (reused)" if "dense_ppl" in result.reused else ""),
        f"pruned ppl  {result.pruned_ppl:10.3f}  measured sparsity {result.sparsity:.4f}",
    ]
    if result.final_ppl is not None:
        lines.append(f"final ppl   {result.final_ppl:10.3f}  after {cfg['mode']} "
                     f"({result.trainable_params:,} trainable = {result.trainable_fraction:.4%} of {result.total_params:,})")
    lines.append("timings " + "  ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
                 + f"  peak memory {result.peak_memory_mb:.0f} MB")
    lines += [f"warning: {w}" for w in result.warnings] + [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    bars = StageBars(enabled=not args.quiet)
    try:
        result = run_pipeline(config, bars, cache_dir=args.cache_dir, output_dir=args.save_model)
    finally:
        bars.close()
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
    print(summary(result))
    return 0
