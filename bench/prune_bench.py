"""Pruning cost against one dense calibration forward, evaluation throughput, pruned perplexity (issues 2, 10).

Every measurement runs in a fresh process on the embedded model: the dense forward over the calibration
samples (the unit), then each method x pattern x sequential mode's model-level stage exactly as the pipeline runs it
(perp_engine.pruning.configured.prune_as_configured: capture block 0's inputs unless the method is data-free, then
sequential pruning, ``block``: statistics then outputs per block, ``layer``: one true-sequential pass per block),
timed and memory-metered. This
repeats for ``--rounds`` rounds (3 by default); a case's ratio is taken against the forward of its own round,
and the medians are reported. The pruned perplexity is computed once per case, in the first round, untimed. A
last process times perp_engine.evaluation.perplexity.perplexity against a plain transformers loop over the same windows.

    .venv/bin/python bench/prune_bench.py [--device cpu|cuda] [--threads 2] [--rounds 3] [--quick]
"""

from __future__ import annotations

import math
import statistics

import harness

MODES = ("block", "layer")  # RunConfig.sequential: two passes per block, or one (true-sequential)
CASES = (*((("magnitude", pattern, 0.5, "block")) for pattern in ("unstructured", "2:4")),
         *((method, pattern, 0.5, mode) for method in ("wanda", "sparsegpt") for mode in MODES
           for pattern in ("unstructured", "2:4")))
GOALS = {  # pruning stage time / calibration forward time, at most (issue 10; issue 31 for the layer mode)
    ("wanda", "unstructured", "block"): 1.6,
    ("wanda", "2:4", "block"): 1.65,
    ("sparsegpt", "unstructured", "block"): 2.5,
    ("sparsegpt", "2:4", "block"): 2.5,
    ("wanda", "unstructured", "layer"): 1.0,
    ("wanda", "2:4", "layer"): 1.0,
    ("sparsegpt", "unstructured", "layer"): 1.8,
    ("sparsegpt", "2:4", "layer"): 1.8,
}
LAYER_SPEEDUP = 1.4  # block mode's time / layer mode's, at least, per method and pattern (issue 31)
NM_COST = 1.1  # SparseGPT 2:4's time / unstructured's, at most, in each mode (issue 31)


def _setup(sizes: dict, device: str, threads: int):
    """(device, model, calibration samples, config) in this process."""
    import torch

    from perp_engine.config import RunConfig
    from perp_engine.data.corpora import load_corpus
    from perp_engine.data.sampling import calibration_samples
    from perp_engine.model.load import load_model

    dev = harness.setup_torch(device, threads)
    config = RunConfig.create(calib_samples=sizes["calib_samples"], seqlen=sizes["seqlen"], device=device)
    model, tokenizer = load_model(config.model, device=str(dev))
    corpus = load_corpus(config.dataset)
    calib = calibration_samples(tokenizer, corpus.calib_text, config.calib_samples, config.seqlen, config.seed)
    with torch.no_grad():  # warm-up, identical in every case: first-call kernel selection and allocator growth
        model(input_ids=calib[:1, :32].to(dev))
    return dev, model, tokenizer, corpus, calib, config


def calib_forward_case(sizes: dict, device: str, threads: int) -> dict:
    """One dense forward over the calibration samples, in chunks of the pipeline's batch size."""
    import torch

    dev, model, _, _, calib, config = _setup(sizes, device, threads)
    meter = harness.PeakMemory(dev)

    def forward():
        with torch.no_grad():
            for start in range(0, calib.shape[0], config.batch_size):
                model(input_ids=calib[start : start + config.batch_size].to(dev))

    load = harness.load_average()
    meter.start()
    _, seconds = harness.timed(dev, forward)
    peak = meter.stop()
    return {"seconds": seconds, "peak_mb": peak, "start_mb": meter.start_mb, "memory_method": meter.method,
            "batch_size": config.batch_size, "load_average": load}


def prune_case(sizes: dict, device: str, threads: int, method: str, pattern: str, sparsity: float, sequential: str,
               with_ppl: bool) -> dict:
    """The pipeline's prune stage for one method and mode (timed, metered), then, if asked, the pruned perplexity
    (not timed)."""
    from perp_engine.data.sampling import eval_windows
    from perp_engine.evaluation.perplexity import perplexity
    from perp_engine.evaluation.sparsity import model_sparsity
    from perp_engine.pruning.configured import prune_as_configured

    dev, model, tokenizer, corpus, calib, config = _setup(sizes, device, threads)
    config = config.replace(method=method, pattern=pattern, sparsity=sparsity, sequential=sequential)
    meter = harness.PeakMemory(dev)

    def stage():
        prune_as_configured(model, calib, config)

    load = harness.load_average()
    meter.start()
    _, seconds = harness.timed(dev, stage)
    peak = meter.stop()
    result = {"seconds": seconds, "peak_mb": peak, "start_mb": meter.start_mb, "memory_method": meter.method,
              "sparsity": model_sparsity(model)["overall"], "load_average": load}
    if with_ppl:
        windows = eval_windows(tokenizer, corpus.eval_text, config.seqlen, sizes["eval_tokens"])
        result["pruned_ppl"] = perplexity(model, windows, config.eval_batch_size)
    return result


def throughput_case(sizes: dict, device: str, threads: int, repeats: int) -> dict:
    """tokens/s of evaluation.perplexity and of a plain transformers loss loop over the same windows, best of
    ``repeats`` interleaved runs each (the shared machine's noise hits both alike)."""
    import torch

    from perp_engine.data.sampling import eval_windows
    from perp_engine.evaluation.perplexity import perplexity

    dev, model, tokenizer, corpus, _, config = _setup(sizes, device, threads)
    windows = eval_windows(tokenizer, corpus.eval_text, config.seqlen, sizes["eval_tokens"])
    batch = config.eval_batch_size

    def plain() -> float:
        nll, count = 0.0, 0
        with torch.inference_mode():
            for start in range(0, windows.shape[0], batch):
                ids = windows[start : start + batch].to(dev)
                predicted = ids.shape[0] * (ids.shape[1] - 1)  # transformers shifts labels: seqlen - 1 per window
                nll += float(model(input_ids=ids, labels=ids).loss) * predicted
                count += predicted
        return math.exp(nll / count)

    ours, theirs = [], []
    for _ in range(repeats):
        ppl_ours, t = harness.timed(dev, lambda: perplexity(model, windows, batch))
        ours.append(t)
        ppl_plain, t = harness.timed(dev, plain)
        theirs.append(t)
    return {"tokens": windows.numel(), "windows": windows.shape[0], "batch_size": batch, "engine_seconds": ours,
            "plain_seconds": theirs, "engine_ppl": ppl_ours, "plain_ppl": ppl_plain}


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], rounds=3)
    sizes = ({"calib_samples": 4, "seqlen": 64, "eval_tokens": 512, "repeats": 1} if args.quick
             else {"calib_samples": 32, "seqlen": 256, "eval_tokens": 16384, "repeats": 3})
    sizes["rounds"] = args.rounds
    common = (sizes, args.device, args.threads)
    facts = harness.machine_facts(args.device, args.threads)
    bases: list[dict] = []
    runs: dict[tuple, list[dict]] = {case: [] for case in CASES}
    for round_index in range(args.rounds):
        base = harness.run_isolated(calib_forward_case, *common)
        bases.append(base)
        print(f"round {round_index + 1}: calibration forward {base['seconds']:.2f} s, load {base['load_average']}",
              flush=True)
        for case in CASES:
            run = harness.run_isolated(prune_case, *common, *case, round_index == 0)
            run["time_ratio"] = run["seconds"] / base["seconds"]
            runs[case].append(run)
            print(f"  {' '.join(map(str, case))}: {run['seconds']:.2f} s ({run['time_ratio']:.2f}x), peak {run['peak_mb']:.0f} MiB, "
                  f"load {run['load_average']}", flush=True)
    speed = harness.run_isolated(throughput_case, *common, sizes["repeats"])
    body, payload = _report(bases, runs, speed)
    harness.write_results("prune_bench", args, facts, sizes, payload, body)


def _median_case(case: tuple, case_runs: list[dict], base_extra: float) -> dict:
    """Medians over the rounds of one case; the ratio is the median of the per-round ratios."""
    method, pattern, sparsity, sequential = case
    extra = statistics.median(r["peak_mb"] - r["start_mb"] for r in case_runs)
    ratios = [r["time_ratio"] for r in case_runs]
    return {"method": method, "pattern": pattern, "sparsity_target": sparsity, "sequential": sequential,
            "runs": case_runs, "seconds": statistics.median(r["seconds"] for r in case_runs),
            "time_ratio": statistics.median(ratios), "time_ratio_range": [min(ratios), max(ratios)],
            "peak_mb": statistics.median(r["peak_mb"] for r in case_runs), "extra_mb": extra,
            "extra_ratio": extra / base_extra if base_extra > 0 else None,
            "sparsity": case_runs[0]["sparsity"], "pruned_ppl": case_runs[0]["pruned_ppl"]}


def _round_ratio(runs: dict[tuple, list[dict]], slow: tuple, fast: tuple) -> float:
    """The median over rounds of one case's time over another's, both measured in the same round."""
    return statistics.median(a["seconds"] / b["seconds"] for a, b in zip(runs[slow], runs[fast]))


def _mode_goals(runs: dict[tuple, list[dict]], by_case: dict[tuple, dict]) -> tuple[list[dict], list[str]]:
    """Issue 31's goals that compare cases: layer mode's speed-up over block mode and its perplexity (per method and
    pattern), and SparseGPT's N:M cost over unstructured in each mode; plus one line per comparison for the text."""
    goals, lines = [], []
    for method in ("wanda", "sparsegpt"):
        for pattern in ("unstructured", "2:4"):
            block, layer = (method, pattern, 0.5, "block"), (method, pattern, 0.5, "layer")
            goals.append(harness.goal_line(f"{method} {pattern}: block mode's time / layer mode's (same rounds)",
                                           _round_ratio(runs, block, layer), ">=", LAYER_SPEEDUP))
            before, after = by_case[block]["pruned_ppl"], by_case[layer]["pruned_ppl"]
            goals.append(harness.goal_line(f"{method} {pattern}: pruned ppl, layer mode / block mode", after / before,
                                           "<=", 1.0))
            lines.append(f"- {method} {pattern}: layer mode's pruned perplexity {after:.2f} vs block mode's "
                         f"{before:.2f} ({(after / before - 1) * 100:+.1f}%)")
    for mode in MODES:
        nm, plain = ("sparsegpt", "2:4", 0.5, mode), ("sparsegpt", "unstructured", 0.5, mode)
        goals.append(harness.goal_line(f"sparsegpt {mode} mode: 2:4 time / unstructured time (same rounds)",
                                       _round_ratio(runs, nm, plain), "<=", NM_COST))
    return goals, lines


def _report(bases: list[dict], runs: dict[tuple, list[dict]], speed: dict) -> tuple[str, dict]:
    base_seconds = statistics.median(b["seconds"] for b in bases)
    base_peak = statistics.median(b["peak_mb"] for b in bases)
    base_extra = statistics.median(b["peak_mb"] - b["start_mb"] for b in bases)
    rows = [["dense calibration forward", "-", "-", f"{base_seconds:.2f}", "1.00x", "-", f"{base_peak:.0f}",
             f"{base_extra:.0f}", "1.00x", "-"]]
    methods, goals, by_case = [], [], {}
    for case, case_runs in runs.items():
        median = by_case[case] = _median_case(case, case_runs, base_extra)
        methods.append(median)
        method, pattern, _, sequential = case
        low, high = median["time_ratio_range"]
        rows.append([method, pattern, sequential, f"{median['seconds']:.2f}", f"{median['time_ratio']:.2f}x",
                     f"{low:.2f}-{high:.2f}x", f"{median['peak_mb']:.0f}", f"{median['extra_mb']:.0f}",
                     f"{median['extra_ratio']:.2f}x" if median["extra_ratio"] is not None else "-",
                     f"{median['pruned_ppl']:.2f}"])
        if (method, pattern, sequential) in GOALS:
            goals.append(harness.goal_line(f"{method} {pattern} {sequential} time vs calibration forward",
                                           median["time_ratio"], "<=", GOALS[(method, pattern, sequential)]))
    mode_goals, ppl_lines = _mode_goals(runs, by_case)
    goals += mode_goals
    engine, plain = min(speed["engine_seconds"]), min(speed["plain_seconds"])
    engine_tps, plain_tps = speed["tokens"] / engine, speed["tokens"] / plain
    speed.update(engine_tokens_per_s=engine_tps, plain_tokens_per_s=plain_tps, ratio=engine_tps / plain_tps)
    goals.append(harness.goal_line("eval throughput, evaluation.perplexity vs plain transformers loop", engine_tps / plain_tps,
                                   ">=", 1.0))
    table = harness.markdown_table(
        ["stage", "pattern", "sequential", "seconds", "time vs forward", "range", "peak MiB", "extra MiB",
         "extra vs forward", "pruned ppl"], rows)
    magnitude = by_case[("magnitude", "unstructured", 0.5, "block")]["pruned_ppl"]
    sane = all(c["pruned_ppl"] < magnitude for c in methods if c["pattern"] == "unstructured" and c["method"] != "magnitude")
    loads = [b["load_average"] for b in bases] + [r["load_average"] for rs in runs.values() for r in rs]
    busiest = max((l[0] for l in loads if l), default=None)
    text = "\n".join([
        "Pruning stage = capture of block 0's inputs (skipped for magnitude) + sequential prune_model, on a fresh "
        f"model, as the pipeline runs it. 50% sparsity. Median of {len(bases)} rounds, each case and each forward in "
        "its own process; a case's time ratio is taken against the forward of its own round (range: lowest and "
        "highest of the rounds). Peak MiB: highest memory during the stage; extra MiB: that peak minus the memory "
        f"at the stage's start (the loaded model). Memory: {bases[0]['memory_method']}. Highest 1-minute load "
        f"average seen at the start of a measurement: {busiest}.",
        "",
        table,
        "",
        f"Eval throughput over {speed['windows']} windows ({speed['tokens']:,} tokens, batch {speed['batch_size']}, "
        f"best of {len(speed['engine_seconds'])}): evaluation.perplexity {engine_tps:,.0f} tokens/s "
        f"(ppl {speed['engine_ppl']:.3f}), plain `model(input_ids, labels=input_ids).loss` loop {plain_tps:,.0f} "
        f"tokens/s (ppl {speed['plain_ppl']:.3f}).",
        "",
        "Layer mode against block mode:",
        *ppl_lines,
        "",
        "Goals:",
        *[g["line"] for g in goals],
        f"- sanity, pruned ppl wanda and sparsegpt below magnitude at 50% unstructured: **{'yes' if sane else 'no'}**",
    ])
    payload = {"calibration_forward": {"seconds": base_seconds, "peak_mb": base_peak, "extra_mb": base_extra,
                                       "runs": bases},
               "methods": methods, "eval_throughput": speed, "goals": goals,
               "sanity_wanda_sparsegpt_below_magnitude": sane}
    return text, payload


if __name__ == "__main__":
    main()
