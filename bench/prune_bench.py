"""Pruning cost against one dense calibration forward, evaluation throughput, pruned perplexity (issue 2).

Every case runs in a fresh process on the embedded model: the dense forward over the calibration samples (the
unit), then each pruning method's model-level stage exactly as the pipeline runs it (capture block 0's inputs
unless the method is data-free, then sequential prune_model), each timed and memory-metered, followed by the
pruned perplexity (not timed). A last process times perp_engine.metrics.perplexity against a plain transformers
loop over the same evaluation windows.

    .venv/bin/python bench/prune_bench.py [--device cpu|cuda] [--threads 2] [--quick]
"""

from __future__ import annotations

import math

import harness

CASES = (  # (method, pattern, sparsity)
    ("magnitude", "unstructured", 0.5),
    ("wanda", "unstructured", 0.5),
    ("sparsegpt", "unstructured", 0.5),
    ("wanda", "2:4", 0.5),
    ("sparsegpt", "2:4", 0.5),
)
GOALS = {"wanda": 2.2, "sparsegpt": 2.5}  # pruning stage time / calibration forward time, at most


def _setup(sizes: dict, device: str, threads: int):
    """(device, model, calibration samples, config) in this process."""
    import torch

    from perp_engine.config import RunConfig
    from perp_engine.data import calibration_samples, load_corpus
    from perp_engine.models import load_model

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

    meter.start()
    _, seconds = harness.timed(dev, forward)
    peak = meter.stop()
    return {"seconds": seconds, "peak_mb": peak, "start_mb": meter.start_mb, "memory_method": meter.method,
            "batch_size": config.batch_size}


def prune_case(sizes: dict, device: str, threads: int, method: str, pattern: str, sparsity: float) -> dict:
    """The pipeline's prune stage for one method (timed, metered), then the pruned perplexity (not timed)."""
    from perp_engine.calibrate import capture_block_inputs
    from perp_engine.data import eval_windows
    from perp_engine.metrics import model_sparsity, perplexity
    from perp_engine.sequential import DATA_FREE_METHODS, prune_model

    dev, model, tokenizer, corpus, calib, config = _setup(sizes, device, threads)
    config = config.replace(method=method, pattern=pattern, sparsity=sparsity)
    meter = harness.PeakMemory(dev)

    def stage():
        inputs = None
        if config.method not in DATA_FREE_METHODS:
            inputs = capture_block_inputs(model, calib, config.batch_size)
        prune_model(model, inputs, method=config.method, sparsity=config.sparsity, pattern=config.pattern,
                    blocksize=config.blocksize, percdamp=config.percdamp, seed=config.seed)

    meter.start()
    _, seconds = harness.timed(dev, stage)
    peak = meter.stop()
    windows = eval_windows(tokenizer, corpus.eval_text, config.seqlen, sizes["eval_tokens"])
    return {"seconds": seconds, "peak_mb": peak, "start_mb": meter.start_mb, "memory_method": meter.method,
            "sparsity": model_sparsity(model)["overall"],
            "pruned_ppl": perplexity(model, windows, config.eval_batch_size)}


def throughput_case(sizes: dict, device: str, threads: int, repeats: int) -> dict:
    """tokens/s of metrics.perplexity and of a plain transformers loss loop over the same windows, best of
    ``repeats`` interleaved runs each (the shared machine's noise hits both alike)."""
    import torch

    from perp_engine.data import eval_windows
    from perp_engine.metrics import perplexity

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
    args = harness.parse_args(__doc__.splitlines()[0])
    sizes = ({"calib_samples": 4, "seqlen": 64, "eval_tokens": 512, "repeats": 1} if args.quick
             else {"calib_samples": 32, "seqlen": 256, "eval_tokens": 16384, "repeats": 2})
    common = (sizes, args.device, args.threads)
    base = harness.run_isolated(calib_forward_case, *common)
    print(f"calibration forward: {base['seconds']:.2f} s, peak {base['peak_mb']:.0f} MiB", flush=True)
    methods = []
    for method, pattern, sparsity in CASES:
        case = harness.run_isolated(prune_case, *common, method, pattern, sparsity)
        case.update(method=method, pattern=pattern, sparsity_target=sparsity)
        methods.append(case)
        print(f"{method} {pattern}: {case['seconds']:.2f} s, peak {case['peak_mb']:.0f} MiB, "
              f"ppl {case['pruned_ppl']:.2f}", flush=True)
    speed = harness.run_isolated(throughput_case, *common, sizes["repeats"])
    facts = harness.machine_facts(args.device, args.threads)
    body, payload = _report(base, methods, speed)
    harness.write_results("prune_bench", args, facts, sizes, payload, body)


def _report(base: dict, methods: list[dict], speed: dict) -> tuple[str, dict]:
    base_extra = base["peak_mb"] - base["start_mb"]
    rows = [["dense calibration forward", "-", f"{base['seconds']:.2f}", "1.00x", f"{base['peak_mb']:.0f}",
             f"{base_extra:.0f}", "1.00x", "-"]]
    goals = []
    for case in methods:
        ratio = case["seconds"] / base["seconds"]
        extra = case["peak_mb"] - case["start_mb"]
        case.update(time_ratio=ratio, extra_mb=extra, extra_ratio=extra / base_extra if base_extra > 0 else None)
        rows.append([case["method"], case["pattern"], f"{case['seconds']:.2f}", f"{ratio:.2f}x", f"{case['peak_mb']:.0f}",
                     f"{extra:.0f}", f"{case['extra_ratio']:.2f}x" if case["extra_ratio"] is not None else "-",
                     f"{case['pruned_ppl']:.2f}"])
        if case["method"] in GOALS:
            goals.append(harness.goal_line(f"{case['method']} {case['pattern']} time vs calibration forward", ratio, "<=",
                                           GOALS[case["method"]]))
    engine, plain = min(speed["engine_seconds"]), min(speed["plain_seconds"])
    engine_tps, plain_tps = speed["tokens"] / engine, speed["tokens"] / plain
    speed.update(engine_tokens_per_s=engine_tps, plain_tokens_per_s=plain_tps, ratio=engine_tps / plain_tps)
    goals.append(harness.goal_line("eval throughput, metrics.perplexity vs plain transformers loop", engine_tps / plain_tps,
                                   ">=", 1.0))
    table = harness.markdown_table(
        ["stage", "pattern", "seconds", "time vs forward", "peak MiB", "extra MiB", "extra vs forward", "pruned ppl"], rows)
    by_method = {(c["method"], c["pattern"]): c["pruned_ppl"] for c in methods}
    sane = all(by_method[(m, "unstructured")] < by_method[("magnitude", "unstructured")] for m in ("wanda", "sparsegpt"))
    text = "\n".join([
        "Pruning stage = capture of block 0's inputs (skipped for magnitude) + sequential prune_model, on a fresh "
        "model, as the pipeline runs it. 50% sparsity. Peak MiB: highest memory during the stage; extra MiB: that "
        f"peak minus the memory at the stage's start (the loaded model). Memory: {base['memory_method']}, each case "
        "in a fresh process.",
        "",
        table,
        "",
        f"Eval throughput over {speed['windows']} windows ({speed['tokens']:,} tokens, batch {speed['batch_size']}, "
        f"best of {len(speed['engine_seconds'])}): metrics.perplexity {engine_tps:,.0f} tokens/s "
        f"(ppl {speed['engine_ppl']:.3f}), plain `model(input_ids, labels=input_ids).loss` loop {plain_tps:,.0f} "
        f"tokens/s (ppl {speed['plain_ppl']:.3f}).",
        "",
        "Goals:",
        *[g["line"] for g in goals],
        f"- sanity, pruned ppl wanda and sparsegpt below magnitude at 50% unstructured: **{'yes' if sane else 'no'}**",
    ])
    payload = {"calibration_forward": base, "methods": methods, "eval_throughput": speed, "goals": goals,
               "sanity_wanda_sparsegpt_below_magnitude": sane}
    return text, payload


if __name__ == "__main__":
    main()
