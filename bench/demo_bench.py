"""How long the Experiment page's first run takes (the Demo size), and how close its recorded estimate is.

The first run a new user launches: the Experiment form's defaults (Wanda 50% + perp-masklora at the Demo size,
app/forms.py) on the embedded model, run by ``run_pipeline`` as a worker runs it, with nothing reused (no artifact
cache) and the model and text already converted and tokenized (a warm-up process runs a shrunk run first). Each round is
a fresh process; the wall time of the whole run is compared with the estimate the run records as it starts.

    .venv/bin/python bench/demo_bench.py [--device cpu|cuda] [--threads 2] [--rounds 3] [--quick]
"""

from __future__ import annotations

import statistics
import time

import harness

GOAL_SECONDS = 90.0  # issue 30: a Demo prune + repair run in about 90 s on 2 CPU cores, caches warm


def demo_config(quick: bool):
    from app import forms

    config = forms.ExperimentForm().to_config()
    return config.replace(seqlen=32, eval_tokens=256, calib_samples=4, steps=2) if quick else config


def warm(quick: bool) -> None:
    """One shrunk run, so the measured rounds find the model converted and the text tokenized in the caches."""
    from perp_engine.run.pipeline import run_pipeline

    run_pipeline(demo_config(quick=True))


def case(quick: bool, device: str, threads: int) -> dict:
    from perp_engine.run.pipeline import run_pipeline

    harness.setup_torch(device, threads)
    config = demo_config(quick).replace(device=device)
    load = harness.load_average()
    start = time.perf_counter()
    result = run_pipeline(config)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "estimated": result.estimate.get("seconds"), "stages": result.stage_seconds,
            "dense_ppl": result.dense_ppl, "pruned_ppl": result.pruned_ppl, "final_ppl": result.final_ppl,
            "load_average": load, "config": config.to_dict()}


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], rounds=3)
    facts = harness.machine_facts(args.device, args.threads)
    harness.run_isolated(warm, args.quick)
    runs = [harness.run_isolated(case, args.quick, args.device, args.threads) for _ in range(args.rounds)]
    seconds = statistics.median(r["seconds"] for r in runs)
    rows = [[i + 1, f"{r['seconds']:.1f}", f"{r['estimated']:.0f}", f"{r['seconds'] / r['estimated']:.2f}x",
             f"{r['dense_ppl']:.2f}", f"{r['pruned_ppl']:.2f}", f"{r['final_ppl']:.2f}", r["load_average"]]
            for i, r in enumerate(runs)]
    goals = [harness.goal_line("Demo run, prune + repair, median wall time", seconds, "<=", GOAL_SECONDS, " s")]
    stages = ", ".join(f"{name} {s:.1f} s" for name, s in runs[0]["stages"].items())
    body = "\n".join([
        "The Experiment page's first run (its defaults: Wanda 50% + perp-masklora, Demo size) by run_pipeline in a "
        "fresh process per round, nothing reused, model and text cached by a warm-up process. Seconds: the whole "
        "run's wall time; estimated: what the run recorded as it started.", "",
        harness.markdown_table(["round", "seconds", "estimated (s)", "took / estimated", "dense ppl", "pruned ppl",
                                "final ppl", "load average"], rows), "",
        f"Stages of round 1: {stages}.", "",
        "Goals (issue 30):", *[g["line"] for g in goals]])
    harness.write_results("demo_bench", args, facts, {"rounds": args.rounds},
                          {"runs": runs, "median_seconds": seconds, "goals": goals}, body)


if __name__ == "__main__":
    main()
