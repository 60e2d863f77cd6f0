"""``perp export``: write a finished run's model (HF format, safetensors), masks, config and model card."""

from __future__ import annotations

import argparse
import sys

from ..run.export import export_run
from ..run.trust import TRUST_FLAG
from .run_cmd import StageBars, quiet_libraries
from .runs_cmd import add_store_flag, store_from_args


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "export", help="export a run's pruned model in Hugging Face format",
        description="Write the run's final model (safetensors, loadable with transformers), masks.safetensors, "
                    "perp_config.json, perp_run.json and a README.md model card to DIR. A model kept with the run "
                    "is copied; otherwise the run is recomputed from its config and seed.",
    )
    parser.add_argument("id", help="run id (see perp runs)")
    parser.add_argument("dir", help="destination folder (created; must be empty unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty DIR, replacing files of the same names")
    parser.add_argument("--quiet", action="store_true", help="no progress bars when the run is recomputed")
    parser.add_argument(TRUST_FLAG, dest="trust_remote_code", action="store_true",
                        help="recompute a run whose stored config sets trust_remote_code (runs the model's own "
                             "code; refused without this flag)")
    add_store_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    if args.quiet:
        quiet_libraries()
    bars = StageBars(enabled=not args.quiet)
    try:
        exported = export_run(store, args.id, args.dir, force=args.force, trust_remote_code=args.trust_remote_code,
                              progress=bars, log=None if args.quiet else (lambda line: print(line, file=sys.stderr)))
    finally:
        bars.close()
    how = "copied the model kept with the run" if exported.source == "kept" else "recomputed the run from its config"
    ppl = f"perplexity {exported.ppl:.4f}, " if exported.ppl is not None else ""
    print(f"exported run {args.id} to {exported.path} ({how}): {ppl}sparsity {exported.sparsity:.4%}")
    if exported.mismatch:
        print(f"warning: {exported.mismatch}", file=sys.stderr)
    return 0
