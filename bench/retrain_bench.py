"""Retraining cost and recovery per preset: peak memory, seconds per step, trainable share, perplexity (issue 3).

Magnitude 50% on the embedded model, then each preset through perp_engine.pipeline.run_pipeline with the same
number of steps of batch 4, every run in a fresh process so its memory peak is its own. A first prune-only run
fills an artifact cache (dense perplexity, pruned weights) that the preset runs reuse, so every preset run
reaches its train stage by the same path.

    .venv/bin/python bench/retrain_bench.py [--device cpu|cuda] [--threads 2] [--quick] [--steps 50]
"""

from __future__ import annotations

import tempfile

import harness
from perp_engine.config import RunConfig

PRESETS = ("full-ft", "perp", "perp-masklora", "recon-masklora")
CHECKPOINTED = ("full-ft", "perp", "perp-masklora")  # run again with activation checkpointing
# perp and perp-masklora against full-ft with the same checkpointing (issues 3 and 10), and reconstruction's last
# block against its first (the cost of a block-step must not grow with depth)
GOALS = {"memory": 0.5, "masklora_memory": 0.65, "step_time": 0.75, "gap_closed": 0.80, "last_block": 1.2}


def pipeline_case(config_dict: dict, cache_dir: str, threads: int) -> dict:
    """run_pipeline on ``config_dict``: its train stage's peak memory (the engine's meter) and time.

    Also the steady-state time per progress unit of the train stage (a step when retraining, a block when
    reconstructing): the time between the first and the last unit's report over the units in between, so set-up
    before the first unit and the merge after the last are left out."""
    import time

    from perp_engine.pipeline import run_pipeline

    config = RunConfig.from_dict(config_dict)
    harness.setup_torch(config.device, threads)
    reached: dict[float, float] = {}  # progress fraction -> when it was first reported

    def progress(stage: str, fraction: float, message: str = "") -> None:
        if stage == "train" and fraction > 0.0:
            reached.setdefault(fraction, time.perf_counter())

    result = run_pipeline(config, progress, cache_dir=cache_dir)
    times = sorted(reached.values())
    return {
        "preset": config.preset, "checkpointing": config.grad_checkpointing, "dense_ppl": result.dense_ppl,
        "pruned_ppl": result.pruned_ppl, "final_ppl": result.final_ppl, "sparsity": result.sparsity,
        "timings": result.timings, "stage_memory_mb": result.stage_memory_mb,
        "steady_seconds_per_unit": (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None,
        "train_peak_mb": result.stage_memory_mb.get("train"), "memory_method": result.environment["memory_meter"],
        "block_train_seconds": [b.train_seconds for b in result.blocks],
        "trainable_params": result.trainable_params,
        "total_params": result.total_params, "trainable_fraction": result.trainable_fraction,
        "trainable_by_category": result.trainable_by_category, "blocks": len(result.blocks),
        "train_loss": result.train_loss, "reused": result.reused, "warnings": result.warnings, "notes": result.notes,
    }


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], steps=20)
    sizes = harness.training_sizes(args, steps=20)
    common = dict(method="magnitude", sparsity=0.5, device=args.device, **sizes)
    with tempfile.TemporaryDirectory(prefix="perp-bench-cache-") as cache_dir:
        pruned = harness.run_isolated(pipeline_case, RunConfig.create("none", **common).to_dict(), cache_dir, args.threads)
        print(f"dense ppl {pruned['dense_ppl']:.3f}, pruned ppl {pruned['pruned_ppl']:.3f}", flush=True)
        runs = []
        cases = [(p, False) for p in PRESETS] + [(p, True) for p in CHECKPOINTED]
        for preset, checkpointing in cases:
            config = RunConfig.create(preset, grad_checkpointing=checkpointing, **common)
            run = harness.run_isolated(pipeline_case, config.to_dict(), cache_dir, args.threads)
            run["lr"] = config.lr
            runs.append(run)
            print(f"{preset}{' (checkpointing)' if checkpointing else ''}: final ppl {run['final_ppl']:.3f}, "
                  f"train {run['timings']['train']:.1f} s, train peak {run['train_peak_mb']:.0f} MiB", flush=True)
    facts = harness.machine_facts(args.device, args.threads)
    body, payload = _report(pruned, runs, sizes["steps"])
    harness.write_results("retrain_bench", args, facts, sizes, payload, body)


def _report(pruned: dict, runs: list[dict], steps: int) -> tuple[str, dict]:
    dense, before = pruned["dense_ppl"], pruned["pruned_ppl"]
    rows = []
    for run in runs:
        recon = run["preset"].startswith("recon")
        unit_steps = steps * run["blocks"] if recon else steps
        run["seconds_per_step"] = run["timings"]["train"] / unit_steps
        steady = run["steady_seconds_per_unit"]
        run["steady_seconds_per_step"] = steady / steps if steady is not None and recon else steady
        run["gap_closed"] = harness.gap_closed(dense, before, run["final_ppl"])
        rows.append([run["preset"] + (" + checkpointing" if run["checkpointing"] else ""), f"{run['lr']:g}",
                     f"{run['train_peak_mb']:.0f}", f"{run['seconds_per_step']:.2f}" + (" per block-step" if recon else ""),
                     "-" if run["steady_seconds_per_step"] is None else f"{run['steady_seconds_per_step']:.2f}",
                     f"{run['trainable_params']:,} ({run['trainable_fraction']:.3%})", f"{run['final_ppl']:.2f}",
                     f"{run['gap_closed']:.1%}"])
    by = {(r["preset"], r["checkpointing"]): r for r in runs}
    goals = []
    for checkpointing in (False, True):
        full, perp, masklora = (by[(p, checkpointing)] for p in CHECKPOINTED)
        how = "with" if checkpointing else "without"
        goals += [
            harness.goal_line(f"perp train-stage peak memory vs full-ft, {how} checkpointing",
                              perp["train_peak_mb"] / full["train_peak_mb"], "<=", GOALS["memory"]),
            harness.goal_line(f"perp-masklora train-stage peak memory vs full-ft, {how} checkpointing",
                              masklora["train_peak_mb"] / full["train_peak_mb"], "<=", GOALS["masklora_memory"]),
        ]
    perp, full = by[("perp", False)], by[("full-ft", False)]
    goals += [
        harness.goal_line("perp seconds per step vs full-ft", perp["seconds_per_step"] / full["seconds_per_step"], "<=",
                          GOALS["step_time"]),
        harness.goal_line("perp log-ppl gap closed vs full-ft's", perp["gap_closed"] / full["gap_closed"], ">=",
                          GOALS["gap_closed"]),
    ]
    blocks = by[("recon-masklora", False)]["block_train_seconds"]
    goals.append(harness.goal_line("reconstruction: seconds of the last block's steps vs the first block's",
                                   blocks[-1] / blocks[0], "<=", GOALS["last_block"]))
    table = harness.markdown_table(["preset", "lr", "train peak MiB", "s / step", "steady s / step", "trainable",
                                    "final ppl", "gap closed"], rows)
    text = "\n".join([
        f"Magnitude 50% unstructured; dense ppl **{dense:.3f}**, pruned ppl **{before:.3f}**. {steps} steps of batch "
        "4 per preset (recon: per block). Train peak MiB: the train stage's peak (RunResult.stage_memory_mb: the whole "
        f"process, {runs[0]['memory_method']}), each run in a fresh process. s / step: train-stage time / steps; "
        "steady s / step: time between the first and the last step's report per step, without set-up and merge (recon: "
        "between the first and the last block's, per block-step, so each block's targets, attach and merge count). "
        "Gap closed: (log pruned - log final) / (log pruned - log dense). Reconstruction per block: "
        f"first block's steps {blocks[0]:.2f} s, last block's {blocks[-1]:.2f} s.",
        "",
        table,
        "",
        "Goals:",
        *[g["line"] for g in goals],
    ])
    payload = {"dense_ppl": dense, "pruned_ppl": before, "prune_run": pruned, "runs": runs,
               "goals": goals}
    return text, payload


if __name__ == "__main__":
    main()
