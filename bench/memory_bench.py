"""The memory model against measured stage peaks: every stage of whole pipeline runs (issue 11).

Each case is one ``run_pipeline`` in a fresh process (no artifact cache, so every stage does its work): the
pipeline's own meter gives each stage's peak (``RunResult.stage_memory_mb``: VmHWM reset per stage on Linux,
``max_memory_allocated`` on CUDA), and ``perp_engine.resources.memory_model.estimate_memory`` predicts the same stages
for the offload mode the run used. The table lists every stage with the predicted and measured peak and the
error; the goal is every stage within 25%, in each of two sets of cases:

- in-sample, the calibration set of the memory model's constants: the embedded model (SmolLM2-135M) in float32:
  prune-only Wanda and SparseGPT, perp with and without gradient checkpointing, perp-masklora with checkpointing,
  full-ft, recon-masklora (offload none); in bfloat16: full-ft, perp, prune-only Wanda and perp with checkpointing;
  those two with offload disk, and on a random LLaMA of SmolLM2-360M's shape in bfloat16
  (bench/synthetic_models.py). The 1.7B shape is the scale bench's (bench/scale_bench.py). Prune-only Wanda and
  SparseGPT in both sequential modes on 32 calibration windows (one pass per block keeps 8 chunks paused).
- hold-out: cases no constant was fitted to, marked ``hold-out`` in the results: random models of other families
  (OPT-125M's, GPT-2 small's and Qwen2-0.5B's shapes) and the embedded model at other batch sizes and lengths.

Each case is run and written to the results at once (with the load average when it ended), so an interrupted
bench keeps what it measured; ``--repredict`` recomputes the predictions of the results file without running
anything (after a change of the memory model).

    .venv/bin/python bench/memory_bench.py [--device cpu|cuda] [--threads 2] [--quick] [--only SUBSTRING]
"""

from __future__ import annotations

import harness
import synthetic_models

GOAL = 0.25  # largest relative error of a predicted stage peak
EMBEDDED = "smollm2-135m"
EMBEDDED_SIZES = {"seqlen": 256, "calib_samples": 8, "eval_tokens": 2048, "eval_batch_size": 4, "batch_size": 4,
                  "steps": 2}
SYNTHETIC_SIZES = {"seqlen": 256, "calib_samples": 4, "eval_tokens": 256, "eval_batch_size": 1, "batch_size": 1,
                   "steps": 3}
# the hold-out cases' sizes: other batch sizes, lengths and calibration counts than the in-sample cases'
HOLDOUT_SIZES = {"seqlen": 128, "calib_samples": 8, "eval_tokens": 1024, "eval_batch_size": 2, "batch_size": 8,
                 "steps": 2}
LONG_SIZES = {"seqlen": 512, "calib_samples": 4, "eval_tokens": 1024, "eval_batch_size": 1, "batch_size": 2,
              "steps": 2}
# one-pass pruning's cases: more calibration windows (8 chunks of 4), so that what the paused chunks keep shows
ONE_PASS_SIZES = {**EMBEDDED_SIZES, "calib_samples": 32}
IN_SAMPLE, HOLD_OUT = "in-sample", "hold-out"
QUICK_SIZES = {"seqlen": 64, "calib_samples": 4, "eval_tokens": 256, "eval_batch_size": 2, "batch_size": 2,
               "steps": 1}


def cases(quick: bool) -> list[dict]:
    """(model, preset, RunConfig fields, sizes, set) of every case; ``quick``: the embedded model's two prune-only
    cases."""
    sizes = QUICK_SIZES if quick else EMBEDDED_SIZES
    recipes = [("none", {"method": "wanda"}), ("none", {"method": "sparsegpt"}),
               ("perp", {}), ("perp", {"grad_checkpointing": True}), ("perp-masklora", {"grad_checkpointing": True}),
               ("full-ft", {}), ("recon-masklora", {})]
    out = [_case(EMBEDDED, p, {"dtype": "float32", **f}, sizes) for p, f in recipes]
    if quick:
        return out[:2]
    out += [_case(EMBEDDED, p, {"dtype": "bfloat16"}, sizes) for p in ("full-ft", "perp")]
    for preset, fields in (("none", {"method": "wanda"}), ("perp", {"grad_checkpointing": True})):
        out.append(_case(EMBEDDED, preset, {"dtype": "bfloat16", **fields}, sizes))
        out.append(_case(EMBEDDED, preset, {"dtype": "float32", "offload": "disk", **fields}, sizes))
        out.append(_case("smollm2-360m", preset, {"dtype": "bfloat16", **fields}, SYNTHETIC_SIZES))
    out += [_case(EMBEDDED, "none", {"dtype": "float32", "method": method, "sequential": mode}, ONE_PASS_SIZES)
            for method in ("wanda", "sparsegpt") for mode in ("block", "layer")]
    hold_out = [("opt-125m", "perp", {"dtype": "float32", "method": "sparsegpt"}, HOLDOUT_SIZES),
                ("opt-125m", "full-ft", {"dtype": "bfloat16"}, HOLDOUT_SIZES),
                ("gpt2-124m", "perp-masklora", {"dtype": "bfloat16", "grad_checkpointing": True}, HOLDOUT_SIZES),
                ("gpt2-124m", "full-ft", {"dtype": "float32"}, LONG_SIZES),
                ("qwen2-0.5b", "perp", {"dtype": "bfloat16", "method": "sparsegpt"}, SYNTHETIC_SIZES),
                (EMBEDDED, "perp", {"dtype": "bfloat16"}, LONG_SIZES),
                (EMBEDDED, "full-ft", {"dtype": "bfloat16", "grad_checkpointing": True}, HOLDOUT_SIZES)]
    return out + [_case(*c, kind=HOLD_OUT) for c in hold_out]


def _case(model: str, preset: str, fields: dict, sizes: dict, kind: str = IN_SAMPLE) -> dict:
    return {"model": model, "preset": preset, "fields": fields, "sizes": sizes, "set": kind}


def label(case: dict) -> str:
    fields = case["fields"]
    what = fields.get("method") if case["preset"] == "none" else case["preset"]
    if case["preset"] != "none" and "method" in fields:
        what += f" ({fields['method']})"
    ckpt = " ckpt" if fields.get("grad_checkpointing") else ""
    offload = f" offload {fields['offload']}" if "offload" in fields else ""
    sequential = f" sequential {fields['sequential']}" if "sequential" in fields else ""
    usual = EMBEDDED_SIZES if case["model"] == EMBEDDED else SYNTHETIC_SIZES
    sizes = (f" b{case['sizes']['batch_size']}x{case['sizes']['seqlen']}"
             if case["sizes"] not in (usual, QUICK_SIZES) else "")
    if case["sizes"] is ONE_PASS_SIZES:
        sizes += f" c{ONE_PASS_SIZES['calib_samples']}"
    return f"{case['model']} {fields['dtype']} {what}{ckpt}{offload}{sequential}{sizes}"


def selector(case_label: str, kind: str) -> str:
    """What ``--only`` looks in: the label and the set, e.g. ``smollm2-135m bfloat16 perp [in-sample]``."""
    return f"{case_label} [{kind}]"


def run_config(case: dict, device: str):
    from perp_engine.config import RunConfig

    model = case["model"] if case["model"] == EMBEDDED else str(synthetic_models.synthetic_model(case["model"]))
    return RunConfig.create(case["preset"], model=model, device=device, **{"offload": "none", **case["sizes"],
                                                                           **case["fields"]})


def pipeline_case(config_dict: dict, threads: int) -> dict:
    """run_pipeline in this (fresh) process: every stage's peak and time, and the process's memory with the
    libraries imported, before any model is loaded."""
    import peft  # noqa: F401  (imported before the baseline is read, as a run imports it)
    import transformers  # noqa: F401

    from perp_engine.config import RunConfig
    from perp_engine.run.pipeline import run_pipeline

    config = RunConfig.from_dict(config_dict)
    harness.setup_torch(config.device, threads)
    baseline = harness.rss_mb()
    result = run_pipeline(config)
    return {"stage_memory_mb": result.stage_memory_mb, "timings": result.timings, "baseline_mb": baseline,
            "offload": result.environment["offload"], "memory_meter": result.environment["memory_meter"]}


def predicted_mb(config, device: str, offload: str) -> dict[str, float]:
    from perp_engine.resources.memory_model import estimate_memory

    estimate = estimate_memory(config, offload=offload, device=device)
    return {s.stage: s.device_bytes / harness.MIB for s in estimate.stages}


def measure(case: dict, device: str, threads: int) -> dict:
    """One case run in its own process, with the memory model's prediction of each of its stages."""
    config = run_config(case, device)
    run = harness.run_isolated(pipeline_case, config.to_dict(), threads)
    return repredict({"case": label(case), "set": case["set"], "config": config.to_dict(), **run,
                      "load_average_at_end": harness.load_average()}, device)


def repredict(result: dict, device: str) -> dict:
    """``result`` with the memory model's prediction of every measured stage (made now)."""
    from perp_engine.config import RunConfig

    predicted = predicted_mb(RunConfig.from_dict(result["config"]), device, result["offload"])
    stages = [{"stage": s, "predicted_mb": round(predicted[s], 1), "measured_mb": m,
               "error": round(predicted[s] / m - 1, 4)} for s, m in result["stage_memory_mb"].items()]
    return {**result, "stages": stages}


def report(results: list[dict]) -> tuple[str, dict]:
    rows, worst = [], {IN_SAMPLE: 0.0, HOLD_OUT: 0.0}
    for r in results:
        for s in r["stages"]:
            worst[r["set"]] = max(worst[r["set"]], abs(s["error"]))
            rows.append([r["case"], r["set"], s["stage"], f"{s['predicted_mb']:,.0f}", f"{s['measured_mb']:,.0f}",
                         f"{100 * s['error']:+.1f}%"])
    goals = [harness.goal_line(f"largest |predicted / measured - 1| over every stage of the {kind} cases",
                               100 * worst[kind], "<=", 100 * GOAL, "%")
             for kind in (IN_SAMPLE, HOLD_OUT) if any(r["set"] == kind for r in results)]
    loads = [r["load_average_at_end"][0] for r in results if r.get("load_average_at_end")]
    load = f" 1-minute load average at the end of each case: {min(loads):.1f}-{max(loads):.1f}." if loads else ""
    text = "\n".join([
        "Every case is one run_pipeline (offload none unless the case says disk, no artifact cache) in a fresh "
        f"process; measured: the pipeline's stage peak ({results[0]['memory_meter']}); predicted: "
        "perp_engine.resources.memory_model for the same config. Error = predicted / measured - 1. Set: in-sample "
        "cases are the ones the model's constants were fitted to; hold-out cases (other families, other sizes) were "
        f"never used to fit anything.{load}", "",
        harness.markdown_table(["case", "set", "stage", "predicted MiB", "measured MiB", "error"], rows), "",
        harness.measured_at_note(results, lambda r: r["case"]), "", "Goals:", *[g["line"] for g in goals]])
    return text, {"cases": results, "goals": goals}


def main() -> None:
    parser_args = harness.parse_args(__doc__.splitlines()[0], extra=[
        ("--only", {"default": "", "help": "run only the cases whose label and set ('LABEL [in-sample]', 'LABEL "
                                          "[hold-out]') contain this text (the results file keeps the other cases "
                                          "it holds)"}),
        ("--repredict", {"action": "store_true", "help": "recompute the predictions of the results file, run nothing"})])
    args = parser_args
    sizes = {"embedded": EMBEDDED_SIZES, "synthetic": SYNTHETIC_SIZES, "hold-out": HOLDOUT_SIZES, "long": LONG_SIZES,
             "one-pass": ONE_PASS_SIZES}
    if args.repredict:
        saved = harness.read_results("memory_bench", args)
        results = [repredict(r, args.device) for r in saved["cases"]]
        body, payload = report(results)
        harness.write_results("memory_bench", args, saved["machine"], sizes, payload, body, keep_facts=True)
        return
    facts = harness.machine_facts(args.device, args.threads)
    results = harness.cases_left_alone("memory_bench", args, lambda r: selector(r["case"], r["set"]))
    for case in [c for c in cases(args.quick) if args.only in selector(label(c), c["set"])]:
        results.append(harness.stamp(measure(case, args.device, args.threads), facts))
        worst = max(results[-1]["stages"], key=lambda s: abs(s["error"]))
        print(f"{results[-1]['case']}: worst stage {worst['stage']} {100 * worst['error']:+.1f}%", flush=True)
        body, payload = report(results)
        harness.write_results("memory_bench", args, facts, sizes, payload, body, echo=False)
    print(body)


if __name__ == "__main__":
    main()
