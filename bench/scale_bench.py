"""Peak memory and time of pruning and PERP retraining against model size (issue 11).

Random LLaMA models of SmolLM2-135M's, -360M's and -1.7B's shapes (bench/synthetic_models.py: no download), in
bfloat16 and float32 where the memory model says the case fits ``--max-gib`` (24 GiB, a consumer GPU's memory):

- Wanda and SparseGPT pruning at 50% on 4 calibration windows of 256 tokens: the pipeline's pruning work
  (capture of block 0's inputs, then sequential ``prune_model``), as prune_bench.py measures it;
- 3 steps of the ``perp`` preset (biases + norms + head LoRA) at batch 1 x 256 with gradient checkpointing: the
  pipeline's train stage (``repair``) after a magnitude pruning that is not measured.

Each case runs in a fresh process (harness.run_isolated): load the model, then meter (VmHWM reset at the start
on Linux, ``max_memory_allocated`` on CUDA) and time the work. The table puts each measured peak beside the
bytes of the weights and the memory model's prediction for the same work (perp_engine.resources.memory_model: the
stage's process, weights and held memory plus the transient of its pruning or training phase; the layer-error
measurement that follows pruning in a real run is not part of this work). Goals:

- pruning: peak - process baseline <= 1.3 x weight bytes + one block's working set (its weights, its
  calibration activations in and out, and SparseGPT's Hessians: ``in^2`` float32 per distinct input);
- perp: peak - process baseline <= 1.5 x weight bytes;
- every prediction within 25% of the measured peak.

"Process baseline" is the process's resident memory with torch, transformers and peft imported, before the
model is loaded (on CUDA: 0, the meter counts tensors only). The results file feeds a chart of peak memory
against model size (bench/results/scale_bench-<device>.png, plotly + kaleido).

    .venv/bin/python bench/scale_bench.py [--device cpu|cuda] [--threads 2] [--quick] [--only SUBSTRING]
                                          [--max-gib 24] [--repredict]
"""

from __future__ import annotations

import harness
import synthetic_models

MODELS = tuple(synthetic_models.SHAPES)
DTYPES = ("bfloat16", "float32")
WORKS = ("wanda", "sparsegpt", "perp")
SIZES = {"seqlen": 256, "calib_samples": 4, "batch_size": 1, "steps": 3, "eval_tokens": 256}
QUICK = {"models": ("smollm2-135m",), "dtypes": ("bfloat16",), "sizes": {**SIZES, "seqlen": 64, "steps": 1}}
GOALS = {"prune": 1.3, "perp": 1.5, "prediction": 0.25}


def case_config(model: str, dtype: str, work: str, device: str, sizes: dict):
    from perp_engine.config import RunConfig

    folder = str(synthetic_models.synthetic_model(model))
    common = {"model": folder, "dtype": dtype, "device": device, "offload": "none", **sizes}
    if work == "perp":
        return RunConfig.create("perp", method="magnitude", grad_checkpointing=True, **common)
    return RunConfig.create("none", method=work, sparsity=0.5, **common)


def work_case(config_dict: dict, threads: int) -> dict:
    """In a fresh process: load, then the metered and timed work (pruning, or magnitude pruning then repair)."""
    import peft  # noqa: F401  (imported before the baseline is read, as a run imports it)
    import transformers  # noqa: F401

    from perp_engine.config import RunConfig
    from perp_engine.data.corpora import load_corpus
    from perp_engine.data.sampling import calibration_samples
    from perp_engine.model.capture import capture_block_inputs
    from perp_engine.model.load import load_model
    from perp_engine.pruning.sequential import prune_model
    from perp_engine.repair.stage import repair
    from perp_engine.result import RunResult

    config = RunConfig.from_dict(config_dict)
    device = harness.setup_torch(config.device, threads)
    baseline = harness.rss_mb() if device.type == "cpu" else 0.0
    model, tokenizer = load_model(config.model, device=str(device), dtype=config.dtype)
    weights = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    corpus = load_corpus(config.dataset)
    calib = calibration_samples(tokenizer, corpus.calib_source, config.calib_samples, config.seqlen, config.seed)

    def prune():
        inputs = capture_block_inputs(model, calib, config.batch_size)
        prune_model(model, inputs, method=config.method, sparsity=config.sparsity, pattern=config.pattern,
                    blocksize=config.blocksize, percdamp=config.percdamp, seed=config.seed)

    if config.mode == "none":
        work = prune
    else:
        prune_model(model, None, method=config.method, sparsity=config.sparsity, seed=config.seed)

        def work():
            repair(model, tokenizer, config, corpus, calib, None, RunResult(config=config.to_dict()),
                   lambda *args: None, lambda line: None)

    meter = harness.PeakMemory(device)
    load = harness.load_average()
    meter.start()
    _, seconds = harness.timed(device, work)
    peak = meter.stop()
    return {"weights_mb": weights / harness.MIB, "baseline_mb": baseline, "start_mb": meter.start_mb, "peak_mb": peak,
            "seconds": seconds, "memory_method": meter.method, "load_average": load}


def predictions(config, device: str) -> dict:
    """The memory model's peak for the case's work, the whole run's predicted peak (to skip what does not fit),
    the goal's allowance for one block's working set and the parameter count."""
    from perp_engine.resources.memory_model import block_working_set, model_facts, predict_memory

    shape, report = model_facts(config)
    estimate = predict_memory(config, shape, report, device, "none")
    stage = estimate.stage("prune" if config.mode == "none" else "train")
    return {"predicted_mb": stage.device_bytes / harness.MIB, "run_peak_mb": estimate.peak_device / harness.MIB,
            "block_mb": block_working_set(config, shape) / harness.MIB, "params": shape.total_params}


def label(model: str, dtype: str, work: str) -> str:
    return f"{model} {dtype} {work}"


def score(case: dict) -> dict:
    """The case with its prediction error and its goal checks."""
    net = case["peak_mb"] - case["baseline_mb"]
    allowed = (GOALS["perp"] * case["weights_mb"] if case["work"] == "perp"
               else GOALS["prune"] * case["weights_mb"] + case["block_mb"])
    error = case["predicted_mb"] / case["peak_mb"] - 1
    return {**case, "net_mb": net, "allowed_mb": allowed, "memory_goal_met": net <= allowed,
            "error": error, "prediction_goal_met": abs(error) <= GOALS["prediction"]}


def report(cases: list[dict], device: str) -> tuple[str, dict]:
    cases = sorted(cases, key=lambda c: (MODELS.index(c["model"]), DTYPES.index(c["dtype"]), WORKS.index(c["work"])))
    rows = [[c["model"], c["dtype"], c["work"], f"{c['weights_mb']:,.0f}", f"{c['peak_mb']:,.0f}", f"{c['net_mb']:,.0f}",
             f"{c['net_mb'] / c['weights_mb']:.2f}x", f"{c['allowed_mb']:,.0f}", "met" if c["memory_goal_met"] else "not met",
             f"{c['predicted_mb']:,.0f}", f"{100 * c['error']:+.1f}%", f"{c['seconds']:.1f}"] for c in cases]
    memory_met = all(c["memory_goal_met"] for c in cases)
    worst = max(abs(c["error"]) for c in cases)
    goals = [
        {"goal": "pruning peak - baseline <= 1.3 x weights + one block's working set; perp peak - baseline <= 1.5 x "
                 "weights", "met": memory_met,
         "line": f"- pruning <= 1.3x weights + one block, perp <= 1.5x weights (peak - baseline), every case: "
                 f"**{'met' if memory_met else 'not met'}** ({sum(c['memory_goal_met'] for c in cases)} of {len(cases)})"},
        harness.goal_line("largest |predicted / measured - 1|", 100 * worst, "<=", 100 * GOALS["prediction"], "%"),
    ]
    baseline = ("process baseline: resident memory with torch, transformers and peft imported, before loading"
                if device == "cpu" else "on CUDA the meter counts tensors only (baseline 0)")
    text = "\n".join([
        f"Pruning: capture + sequential prune_model at 50% on {SIZES['calib_samples']} x {SIZES['seqlen']} calibration "
        f"tokens. perp: {SIZES['steps']} steps of batch {SIZES['batch_size']} x {SIZES['seqlen']} with gradient "
        f"checkpointing (repair, after an unmeasured magnitude pruning). Each case in a fresh process. Peak: "
        f"{cases[0]['memory_method']}; net = peak - {baseline}. Allowed: 1.3 x weights + one block's working set "
        "(pruning), 1.5 x weights (perp). Predicted: perp_engine.resources.memory_model for the same work.",
        "",
        harness.markdown_table(["model", "dtype", "work", "weights MiB", "peak MiB", "net MiB", "net / weights",
                                "allowed MiB", "memory goal", "predicted MiB", "error", "seconds"], rows),
        "",
        "Times were measured on a machine shared with other jobs (load averages in the facts above): they show "
        "scale, not speed." if device == "cpu" else "",
        "",
        harness.measured_at_note(cases, lambda c: label(c["model"], c["dtype"], c["work"])),
        "",
        "Goals:",
        *[g["line"] for g in goals],
    ])
    return text, {"cases": cases, "goals": goals}


def chart(cases: list[dict], path) -> None:
    """Peak memory against model size, measured (markers) and predicted (lines), one colour per dtype and work."""
    import plotly.colors
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = iter(plotly.colors.qualitative.D3)
    for dtype in DTYPES:
        for work in WORKS:
            colour = next(palette)
            points = sorted((c for c in cases if c["dtype"] == dtype and c["work"] == work), key=lambda c: c["weights_mb"])
            if not points:
                continue
            params = [c["params"] / 1e9 for c in points]
            name = f"{work}, {dtype}"
            fig.add_trace(go.Scatter(x=params, y=[c["peak_mb"] / 1024 for c in points], mode="markers",
                                     name=f"{name} measured", legendgroup=name, marker={"size": 10, "color": colour}))
            fig.add_trace(go.Scatter(x=params, y=[c["predicted_mb"] / 1024 for c in points], mode="lines",
                                     name=f"{name} predicted", legendgroup=name, line={"dash": "dot", "color": colour}))
    fig.update_layout(title="Peak memory against model size (random LLaMA models of the SmolLM2 shapes)",
                      xaxis={"title": "parameters (billions)", "type": "log"},
                      yaxis={"title": "peak memory (GiB)", "type": "log"}, width=900, height=520, template="plotly_white")
    fig.write_image(str(path))


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], extra=[
        ("--only", {"default": "", "help": "run only the cases whose label contains this text (the results file "
                                           "keeps the others)"}),
        ("--max-gib", {"type": float, "default": 24.0, "help": "skip cases the memory model says need more"}),
        ("--repredict", {"action": "store_true", "help": "recompute the predictions of the results file, run nothing"})])
    sizes = QUICK["sizes"] if args.quick else SIZES
    if args.repredict:
        saved = harness.read_results("scale_bench", args)
        cases = [score({**c, **predictions(case_config(c["model"], c["dtype"], c["work"], args.device, sizes), args.device)})
                 for c in saved["cases"]]
        facts = saved["machine"]
    else:
        facts = harness.machine_facts(args.device, args.threads)
        cases = harness.cases_left_alone("scale_bench", args, lambda c: label(c["model"], c["dtype"], c["work"]))
        for model in QUICK["models"] if args.quick else MODELS:
            for dtype in QUICK["dtypes"] if args.quick else DTYPES:
                for work in WORKS:
                    config = case_config(model, dtype, work, args.device, sizes)
                    predicted = predictions(config, args.device)
                    if args.only not in label(model, dtype, work) or predicted["run_peak_mb"] > args.max_gib * 1024:
                        continue
                    run = harness.run_isolated(work_case, config.to_dict(), args.threads)
                    case = harness.stamp(score({"model": model, "dtype": dtype, "work": work, "config": config.to_dict(),
                                                **run, **predicted}), facts)
                    cases.append(case)
                    print(f"{label(model, dtype, work)}: peak {case['peak_mb']:,.0f} MiB (net {case['net_mb']:,.0f}, "
                          f"weights {case['weights_mb']:,.0f}), predicted {case['predicted_mb']:,.0f} "
                          f"({100 * case['error']:+.1f}%), {case['seconds']:.1f} s", flush=True)
                    body, payload = report(cases, args.device)
                    harness.write_results("scale_bench", args, facts, sizes, payload, body, echo=False)
    body, payload = report(cases, args.device)
    harness.write_results("scale_bench", args, facts, sizes, payload, body, keep_facts=args.repredict)
    chart(cases, harness.results_stem("scale_bench", args).with_suffix(".png"))


if __name__ == "__main__":
    main()
