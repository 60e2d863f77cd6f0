"""Pruned perplexity of true-sequential pruning in one pass (``sequential=layer``) against block mode, over
calibration draws (issue 31).

One calibration draw decides little: both modes prune on the same 32 windows, and a difference of a few percent
can come from which windows were drawn. So each of Wanda and SparseGPT, at 50% unstructured and 2:4, is pruned in
both modes on ``--draws`` draws (calibration seeds 0, 1, ...; seed 0 is prune_bench's), each from a fresh copy of
the embedded model, and evaluated on the same 16,384 tokens. Reported: every perplexity, the layer / block ratio of
each draw, and their geometric mean, which the goal reads (layer no worse than block). Time is not measured here
(prune_bench does), so everything runs in one process.

    .venv/bin/python bench/sequential_bench.py [--device cpu|cuda] [--threads 2] [--draws 3] [--quick]
"""

from __future__ import annotations

import copy
import math
import statistics

import harness

METHODS = ("wanda", "sparsegpt")
PATTERNS = ("unstructured", "2:4")
MODES = ("block", "layer")


def measure(sizes: dict, device: str, threads: int, draws: int) -> list[dict]:
    """Every (method, pattern, draw, mode)'s pruned perplexity."""
    from perp_engine.config import RunConfig
    from perp_engine.data.corpora import load_corpus
    from perp_engine.data.sampling import calibration_samples, eval_windows
    from perp_engine.evaluation.perplexity import perplexity
    from perp_engine.model.load import load_model
    from perp_engine.pruning.configured import prune_as_configured

    dev = harness.setup_torch(device, threads)
    base = RunConfig.create(calib_samples=sizes["calib_samples"], seqlen=sizes["seqlen"], device=device)
    dense, tokenizer = load_model(base.model, device=str(dev))
    corpus = load_corpus(base.dataset)
    windows = eval_windows(tokenizer, corpus.eval_text, base.seqlen, sizes["eval_tokens"])
    rows = []
    for draw in range(draws):
        calib = calibration_samples(tokenizer, corpus.calib_text, base.calib_samples, base.seqlen, draw)
        for method in METHODS:
            for pattern in PATTERNS:
                for mode in MODES:
                    model = copy.deepcopy(dense)
                    config = base.replace(method=method, pattern=pattern, sparsity=0.5, sequential=mode, seed=draw)
                    prune_as_configured(model, calib, config)
                    ppl = perplexity(model, windows, base.eval_batch_size)
                    rows.append({"method": method, "pattern": pattern, "draw": draw, "sequential": mode, "ppl": ppl})
                    print(f"draw {draw} {method} {pattern} {mode}: {ppl:.2f}", flush=True)
                    del model
    return rows


def report(rows: list[dict], draws: int) -> tuple[str, dict]:
    table, goals, summary = [], [], []
    ppl = {(r["method"], r["pattern"], r["draw"], r["sequential"]): r["ppl"] for r in rows}
    for method in METHODS:
        for pattern in PATTERNS:
            ratios = [ppl[method, pattern, d, "layer"] / ppl[method, pattern, d, "block"] for d in range(draws)]
            for d, ratio in enumerate(ratios):
                table.append([method, pattern, d, f"{ppl[method, pattern, d, 'block']:.2f}",
                              f"{ppl[method, pattern, d, 'layer']:.2f}", f"{100 * (ratio - 1):+.1f}%"])
            mean = math.exp(statistics.fmean(math.log(r) for r in ratios))
            better = sum(r < 1 for r in ratios)
            summary.append({"method": method, "pattern": pattern, "ratios": ratios, "geometric_mean": mean,
                            "draws_layer_better": better})
            goals.append(harness.goal_line(f"{method} {pattern}: pruned ppl, layer / block, geometric mean over "
                                           f"{draws} draws (layer lower in {better} of {draws})", mean, "<=", 1.0))
    text = "\n".join([
        "Pruned perplexity at 50% (unstructured and 2:4) of each calibration draw (seed), in block mode (statistics "
        "of the block as it is, the official default) and in layer mode (true-sequential, one pass per block); "
        "change = layer / block - 1. Each case prunes a fresh copy of the embedded model; perplexity on the same "
        "evaluation windows.", "",
        harness.markdown_table(["method", "pattern", "draw", "block ppl", "layer ppl", "change"], table), "",
        "Goals:", *[g["line"] for g in goals]])
    return text, {"cases": rows, "summary": summary, "goals": goals}


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], extra=[
        ("--draws", {"type": harness.positive_int, "default": 3, "help": "calibration draws (seeds 0, 1, ...)"})])
    sizes = ({"calib_samples": 4, "seqlen": 64, "eval_tokens": 512} if args.quick
             else {"calib_samples": 32, "seqlen": 256, "eval_tokens": 16384})
    draws = 1 if args.quick else args.draws
    facts = harness.machine_facts(args.device, args.threads)
    rows = measure(sizes, args.device, args.threads, draws)
    body, payload = report(rows, draws)
    harness.write_results("sequential_bench", args, facts, {**sizes, "draws": draws}, payload, body)


if __name__ == "__main__":
    main()
