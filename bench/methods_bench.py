"""The methods table (issue 29): every score x allocation x refinement at 50/60/70% unstructured and 2:4.

Scores magnitude, Wanda, SparseGPT and RIA (and RIA with its channel permutation at 2:4); allocation uniform or
OWL (unstructured only: OWL gives each block its own sparsity, which N:M fixes); refinement none or DSnoT. Each
case runs in a fresh process on the embedded model: the pipeline's prune stage
(:func:`perp_engine.pruning.configured.prune_as_configured`), timed and memory-metered, then the pruned
perplexity on the evaluation windows (untimed) and, with ``--zero-shot-limit``, the mean zero-shot accuracy over
the seven tasks at that many docs each (untimed). Time is a ratio to one dense calibration forward measured in
its own process just before the cases of the same sparsity target (``--rounds`` of each; medians), so a change
of the host's speed during the run moves both alike.

    .venv/bin/python bench/methods_bench.py [--only TEXT] [--rounds 1] [--zero-shot-limit 0] [--quick] [--redraw]

Besides the tables (``bench/results/methods_bench-<device>.md``) it draws the pruned perplexities
(``methods_bench-<device>.png``); ``--redraw`` rewrites both from the results file without measuring.
"""

from __future__ import annotations

import math
import statistics

import harness
from prune_bench import _setup, calib_forward_case

SCORES = ("magnitude", "wanda", "sparsegpt", "ria")
TARGETS = (("unstructured", 0.5), ("unstructured", 0.6), ("unstructured", 0.7), ("2:4", 0.5))


def cases() -> list[dict]:
    """Every combination the methods define, in table order."""
    out = []
    for pattern, sparsity in TARGETS:
        for method in SCORES:
            permutes = ("none", "lsa") if method == "ria" and pattern != "unstructured" else ("none",)
            for permute in permutes:
                for allocation in ("uniform", "owl") if pattern == "unstructured" else ("uniform",):
                    for refine in ("none", "dsnot"):
                        out.append({"method": method, "pattern": pattern, "sparsity": sparsity,
                                    "allocation": allocation, "refine": refine, "ria_permute": permute})
    return out


def label(case: dict) -> str:
    target = case["pattern"] if case["pattern"] != "unstructured" else f"{case['sparsity']:.0%}"
    name = case["method"] + (" + permutation" if case["ria_permute"] != "none" else "")
    extras = [x for x in (case["allocation"] == "owl" and "OWL", case["refine"] == "dsnot" and "DSnoT") if x]
    return f"{target} {name}" + (" + " + " + ".join(extras) if extras else "")


def method_case(sizes: dict, device: str, threads: int, case: dict, zero_shot_limit: int) -> dict:
    """The prune stage of one case (timed, metered), then its perplexity and, if asked, zero-shot mean."""
    from perp_engine.data.sampling import eval_windows
    from perp_engine.evaluation.perplexity import perplexity
    from perp_engine.evaluation.sparsity import model_sparsity
    from perp_engine.pruning.configured import prune_as_configured

    dev, model, tokenizer, corpus, calib, config = _setup(sizes, device, threads)
    config = config.replace(**{k: case[k] for k in ("method", "pattern", "sparsity", "allocation", "refine",
                                                     "ria_permute")})
    meter = harness.PeakMemory(dev)
    load = harness.load_average()
    meter.start()
    pruned, seconds = harness.timed(dev, lambda: prune_as_configured(model, calib, config))
    peak = meter.stop()
    windows = eval_windows(tokenizer, corpus.eval_text, config.seqlen, sizes["eval_tokens"])
    result = {**case, "seconds": seconds, "peak_mb": peak, "extra_mb": peak - meter.start_mb,
              "sparsity_measured": model_sparsity(model)["overall"], "block_sparsity": pruned.block_sparsity,
              "load_average": load, "pruned_ppl": perplexity(model, windows, config.eval_batch_size)}
    if zero_shot_limit:
        from perp_engine.config import ZERO_SHOT_TASKS
        from perp_engine.evaluation.zero_shot import zero_shot

        report = zero_shot(model, tokenizer, ZERO_SHOT_TASKS, limit=zero_shot_limit, seed=config.seed)
        result["zero_shot_mean"] = statistics.mean(s.value for s in report.scores)
    return result


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], rounds=1, extra=[
        ("--only", {"default": None, "help": "measure only the cases whose label contains this text; keep the rest"}),
        ("--zero-shot-limit", {"type": int, "default": 0, "help": "docs per zero-shot task (0: no zero-shot)"}),
        ("--redraw", {"action": "store_true", "help": "rewrite the tables and the chart from the results file"}),
    ])
    if args.redraw:
        saved = harness.read_results("methods_bench", args)
        body = report(saved["cases"], saved["calibration_forward"]["runs"], saved["sizes"])
        harness.write_results("methods_bench", args, saved["machine"], saved["sizes"],
                              {k: saved[k] for k in ("calibration_forward", "cases")}, body, keep_facts=True)
        chart(saved["cases"], harness.results_stem("methods_bench", args).with_suffix(".png"))
        return
    sizes = ({"calib_samples": 4, "seqlen": 64, "eval_tokens": 512} if args.quick
             else {"calib_samples": 32, "seqlen": 256, "eval_tokens": 16384})
    sizes["rounds"] = args.rounds
    common = (sizes, args.device, args.threads)
    facts = harness.machine_facts(args.device, args.threads)
    measured, bases, target = [], [], None
    for case in cases():
        if args.only and args.only not in label(case):
            continue
        if (case["pattern"], case["sparsity"]) != target:  # a new group: its own unit
            target = (case["pattern"], case["sparsity"])
            group = [harness.run_isolated(calib_forward_case, *common) for _ in range(args.rounds)]
            bases += group
            base = statistics.median(b["seconds"] for b in group)
            print(f"calibration forward {base:.2f} s (median of {len(group)})", flush=True)
        runs = [harness.run_isolated(method_case, *common, case, args.zero_shot_limit) for _ in range(args.rounds)]
        run = {**runs[0], "seconds": statistics.median(r["seconds"] for r in runs),
               "peak_mb": statistics.median(r["peak_mb"] for r in runs), "rounds": len(runs), "forward_seconds": base}
        run["time_ratio"] = run["seconds"] / base
        measured.append(harness.stamp(run, facts))
        print(f"  {label(run)}: ppl {run['pruned_ppl']:.2f}, {run['time_ratio']:.2f}x, peak {run['peak_mb']:.0f} MiB, "
              f"load {run['load_average']}", flush=True)
    kept = harness.cases_left_alone("methods_bench", args, label)
    order = [label(c) for c in cases()]
    every = sorted(kept + measured, key=lambda c: order.index(label(c)))
    body = report(every, bases, sizes)
    harness.write_results("methods_bench", args, facts, sizes, {"calibration_forward": {"runs": bases}, "cases": every},
                          body)
    chart(every, harness.results_stem("methods_bench", args).with_suffix(".png"))


VARIANTS = {("uniform", "none"): "uniform", ("owl", "none"): "OWL", ("uniform", "dsnot"): "DSnoT",
            ("owl", "dsnot"): "OWL + DSnoT"}


def chart(every: list[dict], path) -> None:
    """Pruned perplexity (log scale) per score, one panel per sparsity target, one bar per allocation x refinement."""
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    targets = [t for t in TARGETS if any((c["pattern"], c["sparsity"]) == t for c in every)]
    titles = [f"{s:.0%} unstructured" if p == "unstructured" else f"{p} ({s:.0%})" for p, s in targets]
    fig = make_subplots(rows=1, cols=len(targets), subplot_titles=titles, horizontal_spacing=0.05)
    colours = dict(zip(VARIANTS.values(), plotly.colors.qualitative.D3))
    for col, target in enumerate(targets, start=1):
        here = [c for c in every if (c["pattern"], c["sparsity"]) == target]
        for (allocation, refine), name in VARIANTS.items():
            bars = [c for c in here if (c["allocation"], c["refine"]) == (allocation, refine)]
            if not bars:
                continue
            scores = [c["method"] + (" + perm." if c["ria_permute"] != "none" else "") for c in bars]
            fig.add_trace(go.Bar(x=scores, y=[c["pruned_ppl"] for c in bars], name=name, legendgroup=name,
                                 marker_color=colours[name], showlegend=col == 1,
                                 hovertemplate="%{x}, " + name + ": %{y:.2f}<extra></extra>"), row=1, col=col)
    values = [c["pruned_ppl"] for c in every]
    ticks = [m * 10 ** e for e in range(int(math.log10(min(values))) - 1, int(math.log10(max(values))) + 2)
             for m in (1, 2, 5) if min(values) / 2 <= m * 10 ** e <= max(values) * 2]
    fig.update_yaxes(type="log", tickvals=ticks, ticktext=[_short(t) for t in ticks])
    fig.update_yaxes(title_text="pruned perplexity (log scale)", row=1, col=1)
    fig.update_layout(title="Pruned perplexity of SmolLM2-135M by score, allocation and refinement (lower is better)",
                      barmode="group", template="plotly_white", legend={"orientation": "h", "y": -0.15})
    import kaleido

    from perp_engine.reproduce.figures import find_browser

    # offline, as the paper's figures: kaleido with the local Chromium and no MathJax download
    kaleido.write_fig_from_object_sync([{"fig": fig.to_dict(), "path": path,
                                         "opts": {"format": "png", "width": 1400, "height": 520}}],
                                       kopts={"path": find_browser(), "mathjax": False})


def report(every: list[dict], bases: list[dict], sizes: dict) -> str:
    """The markdown: one table per sparsity target, rows by score, columns by allocation and refinement."""
    has_zero_shot = any("zero_shot_mean" in c for c in every)
    lines = [
        f"Pruned perplexity on wiki-embedded ({sizes['eval_tokens']:,} tokens in windows of {sizes['seqlen']}), "
        f"{sizes['calib_samples']} calibration windows of {sizes['seqlen']} tokens; time of the prune stage as a "
        f"ratio to one dense calibration forward measured just before the cases of its sparsity target (from "
        f"{min(b['seconds'] for b in bases):.2f} to {max(b['seconds'] for b in bases):.2f} s); peak memory of the "
        f"stage. Each case and each forward in its own process, {bases[0].get('memory_method', 'rss')} memory; one "
        f"measurement per case unless the rounds say otherwise (the host's speed moves up to 20%). Lower perplexity "
        f"is better.",
    ]
    loads = [c["load_average"][0] for c in every if c.get("load_average")]
    if loads:
        lines.append(f"1-minute load average at the start of a case: median {statistics.median(loads):.2f}, "
                     f"highest {max(loads):.2f}.")
    note = harness.measured_at_note(every, label)
    if note:
        lines += ["", note]
    lines += ["", "**Pruned perplexity, every target** (time vs forward and peak MiB per target below)", "",
              overview(every)]
    for pattern, sparsity in TARGETS:
        rows_here = [c for c in every if (c["pattern"], c["sparsity"]) == (pattern, sparsity)]
        if not rows_here:
            continue
        title = f"{sparsity:.0%} unstructured" if pattern == "unstructured" else f"{pattern} ({sparsity:.0%})"
        headers = ["score", "allocation", "refine", "pruned ppl", "time vs forward", "peak MiB"]
        headers += ["zero-shot mean"] if has_zero_shot else []
        rows = []
        for c in rows_here:
            name = c["method"] + (" + permutation" if c["ria_permute"] != "none" else "")
            row = [name, c["allocation"], c["refine"], f"{c['pruned_ppl']:.2f}", f"{c['time_ratio']:.2f}x",
                   f"{c['peak_mb']:.0f}"]
            if has_zero_shot:
                row.append(f"{c['zero_shot_mean']:.1%}" if "zero_shot_mean" in c else "-")
            rows.append(row)
        lines += ["", f"**{title}**", "", harness.markdown_table(headers, rows)]
    lines += ["", "What helps on this model (each step against the same score with everything else equal):",
              *verdicts(every)]
    return "\n".join(lines)


def overview(every: list[dict]) -> str:
    """One row per score x allocation x refinement, one perplexity column per sparsity target ("-" where the
    combination is not defined, e.g. OWL at 2:4), the lowest of each column in bold."""
    def variant(c):
        return (c["method"], c["ria_permute"], c["allocation"], c["refine"])

    targets = [t for t in TARGETS if any((c["pattern"], c["sparsity"]) == t for c in every)]
    ppl = {(variant(c), (c["pattern"], c["sparsity"])): c["pruned_ppl"] for c in every}
    best = {t: min(v for (_, at), v in ppl.items() if at == t) for t in targets}
    rows = []
    for v in dict.fromkeys(variant(c) for c in sorted(every, key=lambda c: SCORES.index(c["method"]))):
        method, permute, allocation, refine = v
        cells = []
        for t in targets:
            value = ppl.get((v, t))
            cells.append("-" if value is None else f"**{value:.2f}**" if value == best[t] else f"{value:.2f}")
        name = method + (f" ({permute})" if permute != "none" else "")
        rows.append([name, "OWL" if allocation == "owl" else "uniform", "DSnoT" if refine == "dsnot" else "-", *cells])
    titles = [f"{s:.0%}" if p == "unstructured" else p for p, s in targets]
    return harness.markdown_table(["score", "allocation", "refine", *titles], rows)


def _short(value: float) -> str:
    """A 1-2-5 tick: 50, 200, 5k, 100k."""
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def verdicts(every: list[dict]) -> list[str]:
    """For OWL, DSnoT and RIA's permutation: at how many targets they lowered perplexity, and by how much."""
    def key(c, **change):
        d = {**c, **change}
        return (d["method"], d["pattern"], d["sparsity"], d["allocation"], d["refine"], d["ria_permute"])

    ppl = {key(c): c["pruned_ppl"] for c in every}
    out = []
    for what, change, base_of in (("OWL", {"allocation": "owl"}, {"allocation": "uniform"}),
                                  ("DSnoT", {"refine": "dsnot"}, {"refine": "none"}),
                                  ("RIA's permutation (LSA)", {"ria_permute": "lsa"}, {"ria_permute": "none"})):
        pairs = [(c, ppl.get(key(c, **base_of))) for c in every if all(c[k] == v for k, v in change.items())]
        pairs = [(c, b) for c, b in pairs if b is not None]
        if not pairs:
            continue
        better = [(c, b) for c, b in pairs if c["pruned_ppl"] < b]
        changes = [c["pruned_ppl"] / b - 1 for c, b in pairs]
        best = min(pairs, key=lambda p: p[0]["pruned_ppl"] / p[1])
        worst = max(pairs, key=lambda p: p[0]["pruned_ppl"] / p[1])
        out.append(f"- {what}: lower perplexity in {len(better)} of {len(pairs)} comparisons, median change "
                   f"{statistics.median(changes):+.1%}; best {label(best[0])} ({best[1]:.2f} -> "
                   f"{best[0]['pruned_ppl']:.2f}), worst {label(worst[0])} ({worst[1]:.2f} -> "
                   f"{worst[0]['pruned_ppl']:.2f}).")
    return out


if __name__ == "__main__":
    main()
