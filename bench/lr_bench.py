"""Learning-rate sweep per retraining preset: for short CPU runs the learning rate matters more than anything else.

Magnitude 50% on the embedded model, 30 steps of 4 x 256 tokens, 10% warm-up then linear decay; final
perplexity for full-ft, perp (biases + norms + head LoRA) and perp-masklora over three learning rates each. All
runs go through perp_engine.run.pipeline.run_pipeline in this process with one artifact cache, so the dense
perplexity and the pruned weights are computed once and reused.

    .venv/bin/python bench/lr_bench.py [--device cpu|cuda] [--threads 2] [--quick] [--steps 30]
"""

from __future__ import annotations

import math
import tempfile

import harness

from perp_engine.config import RunConfig
from perp_engine.presets import PRESETS
from perp_engine.run.pipeline import run_pipeline

GRID = {
    "full-ft": (1e-4, 2e-4, 5e-4),
    "perp": (1e-3, 5e-3, 1e-2),
    "perp-masklora": (1e-3, 2e-3, 5e-3),
}


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], steps=30)
    sizes = {**harness.training_sizes(args, steps=30), "warmup_ratio": 0.1}
    harness.setup_torch(args.device, args.threads)
    runs = []
    with tempfile.TemporaryDirectory(prefix="perp-bench-cache-") as cache_dir:
        for preset, rates in GRID.items():
            for lr in rates:
                config = RunConfig.create(preset, method="magnitude", sparsity=0.5, lr=lr, device=args.device, **sizes)
                result = run_pipeline(config, cache_dir=cache_dir)
                runs.append({"preset": preset, "lr": lr, "dense_ppl": result.dense_ppl, "pruned_ppl": result.pruned_ppl,
                             "final_ppl": result.final_ppl, "train_seconds": result.timings.get("train"),
                             "train_loss": result.train_loss, "reused": result.reused, "warnings": result.warnings})
                print(f"{preset} lr {lr:g}: final ppl {result.final_ppl:.3f} "
                      f"(train {result.timings.get('train', 0):.1f} s, reused {', '.join(result.reused) or 'nothing'})",
                      flush=True)
    facts = harness.machine_facts(args.device, args.threads)
    body, payload = _report(runs, sizes["steps"])
    harness.write_results("lr_bench", args, facts, sizes, payload, body)


def _report(runs: list[dict], steps: int) -> tuple[str, dict]:
    dense, pruned = runs[0]["dense_ppl"], runs[0]["pruned_ppl"]
    best = {}
    for run in runs:
        run["gap_closed"] = harness.gap_closed(dense, pruned, run["final_ppl"])
        current = best.get(run["preset"])
        if math.isfinite(run["final_ppl"]) and (current is None or run["final_ppl"] < current["final_ppl"]):
            best[run["preset"]] = run
    rows = []
    for run in runs:
        default = PRESETS[run["preset"]]["lr"]
        marks = [m for m, on in (("best", best.get(run["preset"]) is run), ("preset default", run["lr"] == default)) if on]
        rows.append([run["preset"], f"{run['lr']:g}", f"{run['final_ppl']:.2f}", f"{run['gap_closed']:.1%}",
                     f"{run['train_seconds']:.0f}", ", ".join(marks)])
    agree = {p: best[p]["lr"] == PRESETS[p]["lr"] for p in best}
    text = "\n".join([
        f"Magnitude 50% unstructured; dense ppl **{dense:.3f}**, pruned ppl **{pruned:.3f}**. {steps} steps of "
        "batch 4, 10% warm-up then linear decay. Gap closed: (log pruned - log final) / (log pruned - log dense).",
        "",
        harness.markdown_table(["preset", "lr", "final ppl", "gap closed", "train s", "note"], rows),
        "",
        "Best measured learning rate equals the preset default: "
        + ", ".join(f"{p} {'yes' if ok else 'no'}" for p, ok in agree.items()) + ".",
    ])
    payload = {"dense_ppl": dense, "pruned_ppl": pruned, "runs": runs,
               "best_lr": {p: r["lr"] for p, r in best.items()}, "best_is_preset_default": agree}
    return text, payload


if __name__ == "__main__":
    main()
