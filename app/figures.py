"""Plotly figures comparing runs, built from store rows. Plain functions: no Streamlit here.

Every builder returns a ``go.Figure`` whose traces carry the plotted values (and run ids in ``customdata``), so
tests check what a chart shows and pages only place it. Runs evaluated under different protocols (text, seqlen,
evaluation tokens, dtype) are never averaged together or drawn on one line: each protocol gets its own lines
and its own dense reference. Diverged runs are left out (the pages say which).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import hex_to_rgb

from perp_engine.evaluation.learning_curves import relative_block_curve
from perp_engine.palette import AFTER, BEFORE, DENSE, dense_label, method_symbol, run_color, series_color
from perp_engine.store import RunRow, split_ref

from .axes import log_percent_axis, reference_line, sparsity_axis, styled, value_axis
from .runs import (
    diverged,
    end_ppl,
    method_label,
    model_label,
    preset_of,
    protocol_label,
    pruning_label,
    retraining_label,
    run_label,
)

MANY_RUNS = 8  # per-run bars beyond this many runs show their values on hover only


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def charted(rows: Sequence[RunRow]) -> list[RunRow]:
    """The runs the charts draw: finished, with a perplexity, not diverged."""
    return [r for r in rows if r.status == "done" and end_ppl(r) is not None and not diverged(r)]


def prefixer(rows: Sequence[RunRow], *parts: Callable[[RunRow], str]):
    """A function naming a run by each of ``parts`` (its model, its evaluation protocol...) that differs between
    the rows, as ``"a · b · "`` (``""`` when the rows agree on every part)."""
    varying = [part for part in parts if len({part(r) for r in rows}) > 1]

    def prefix(row: RunRow) -> str:
        return "".join(f"{part(row)} · " for part in varying)
    return prefix


def group_prefix(rows: Sequence[RunRow]):
    """A function naming a run's model and perplexity protocol, each only when the rows hold several of them."""
    return prefixer(rows, lambda r: model_label(r.config.get("model", "")), lambda r: f"[{protocol_label(r.config)}]")


def series_style(row: RunRow, repaired: bool) -> dict:
    """The colour and marker symbol of a run's model on every chart (perp_engine.palette): the recipe's colour
    when ``repaired``, else the method's; the method's symbol."""
    return dict(color=series_color(row.config, preset_of(row.config), repaired),
                symbol=method_symbol(row.config.get("method", "magnitude")))


def span_of(xs: Sequence[float], pad: float) -> list[float]:
    """A reference line's x span: the x values drawn with ``pad`` more on each side (× and ÷ on a log axis)."""
    return [min(xs) / pad, max(xs) * pad] if pad > 1 else [min(xs) - pad, max(xs) + pad]


def dense_lines(fig: go.Figure, dense: Mapping[str, list[float]], span: list[float], percent: bool = False,
                errors: Mapping[str, float | None] | None = None) -> None:
    """Each protocol's dense model as a labelled dashed line (``dense 30.9``): the geometric mean of its runs'
    dense perplexities, or the mean accuracy when ``percent``, with its standard error (``errors``, by name) as
    error bars at both ends."""
    for name, levels in sorted(dense.items()):
        level = sum(levels) / len(levels) if percent else _geomean(levels)
        label = f"{name.removesuffix('dense')}{dense_label(level, percent)}"
        reference_line(fig, level, span, name, label, f"{name}: %{{y:{'.1%' if percent else '.2f'}}}",
                       error=(errors or {}).get(name))


def _pattern_suffix(config: dict) -> str:
    pattern = config.get("pattern", "unstructured")
    return "" if pattern == "unstructured" else f" {pattern}"


def _series(points: Sequence[tuple[float, float, str]]) -> tuple[list[float], list[float], list[list[str]]]:
    """Sorted x, the geometric mean of y per x, and the runs behind each point (``12``, ``g12``), in order."""
    by_x: dict[float, list[tuple[float, int]]] = defaultdict(list)
    for x, y, run_id in points:
        by_x[round(x, 6)].append((y, run_id))
    xs = sorted(by_x)
    runs = [sorted((i for _, i in by_x[x]), key=split_ref) for x in xs]
    return xs, [_geomean([y for y, _ in by_x[x]]) for x in xs], runs


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(f"#{i}" for i in ids)


def ppl_vs_sparsity(rows: Sequence[RunRow]) -> go.Figure:
    """Perplexity against sparsity: one solid line per pruning method and retraining recipe (the recipe's colour,
    the method's symbol), one dotted line per method for the pruned models before any retraining (the method's
    colour), and each model and protocol's dense perplexity as a labelled dashed line. Repeated settings (seeds)
    are averaged geometrically."""
    done = charted(rows)
    prefix = group_prefix(done)
    retrained: dict[str, list] = defaultdict(list)
    pruned: dict[str, list] = defaultdict(list)
    dense: dict[str, list] = defaultdict(list)
    style: dict[str, dict] = {}
    for r in done:
        cfg = r.config
        method = f"{prefix(r)}{method_label(cfg)}{_pattern_suffix(cfg)}"
        x = float(cfg.get("sparsity", 0.0))
        pruned[name := f"{method} · no retraining"].append((x, r.pruned_ppl, r.ref))
        style[name] = series_style(r, repaired=False)
        if r.final_ppl is not None:
            retrained[name := f"{method} · {retraining_label(cfg)}"].append((x, r.final_ppl, r.ref))
            style[name] = series_style(r, repaired=True)
        if r.dense_ppl is not None:
            dense[f"{prefix(r)}dense"].append(r.dense_ppl)
    fig = go.Figure()
    values, xs_all = [], []
    for dash, groups in (("dot", pruned), ("solid", retrained)):
        for name, points in sorted(groups.items()):
            xs, ys, ids = _series(points)
            values += ys
            xs_all += xs
            fig.add_trace(go.Scatter(
                x=xs, y=ys, customdata=[_ids(i) for i in ids], name=name, mode="lines+markers",
                line=dict(dash=dash, color=style[name]["color"]),
                marker=dict(symbol=style[name]["symbol"], size=9, color=style[name]["color"]),
                hovertemplate=f"{name}<br>sparsity %{{x:.0%}}<br>perplexity %{{y:.2f}}<br>runs %{{customdata}}<extra></extra>"))
    axis = sparsity_axis(xs_all)
    dense_lines(fig, dense, axis["range"])
    values += [_geomean(levels) for levels in dense.values()]
    fig.update_xaxes(**axis)
    fig.update_traces(cliponaxis=False)
    fig.update_yaxes(**value_axis(values))
    return styled(fig, "Perplexity vs sparsity", "sparsity (share of pruned weights)", "perplexity (lower is better)")


def ppl_vs_trainable(rows: Sequence[RunRow]) -> go.Figure:
    """The PERP picture: final perplexity against the percentage of parameters retrained (log x), one marker
    series per pruned model (method, sparsity, pattern; per model and protocol; the method's symbol), each marker
    in its recipe's colour and labelled by it, with that pruned model's perplexity before retraining (dotted, the
    method's colour) and the dense perplexity (dashed, labelled) as horizontal reference lines."""
    done = [r for r in charted(rows) if r.final_ppl is not None and (r.trainable_fraction or 0) > 0]
    prefix = group_prefix(done)
    groups: dict[str, list[RunRow]] = defaultdict(list)
    for r in done:
        groups[f"{prefix(r)}{pruning_label(r.config)}"].append(r)
    fig = go.Figure()
    span = span_of([100 * r.trainable_fraction for r in done], 1.5) if done else []
    dense: dict[str, list[float]] = defaultdict(list)
    values = []
    for name, runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: r.trainable_fraction)
        fig.add_trace(go.Scatter(
            x=[100 * r.trainable_fraction for r in runs], y=[r.final_ppl for r in runs],
            text=[retraining_label(r.config) for r in runs], customdata=[r.ref for r in runs],
            name=name, legendgroup=name, mode="markers+text", textposition="top center",
            marker=dict(size=11, color=[series_style(r, repaired=True)["color"] for r in runs],
                        symbol=series_style(runs[0], repaired=True)["symbol"]),
            hovertemplate="%{text}<br>trainable %{x:.3g}%<br>perplexity %{y:.2f}<br>run #%{customdata}<extra></extra>"))
        pruned = _geomean([r.pruned_ppl for r in runs])
        values += [pruned, *(r.final_ppl for r in runs)]
        fig.add_trace(go.Scatter(x=span, y=[pruned, pruned], name=f"{name} · before retraining", legendgroup=name,
                                 mode="lines", line=dict(dash="dot", color=series_style(runs[0], repaired=False)["color"]),
                                 hovertemplate=f"{name} pruned, not retrained: %{{y:.2f}}<extra></extra>"))
        for r in runs:
            if r.dense_ppl is not None:
                dense[f"{prefix(r)}dense"].append(r.dense_ppl)
    dense_lines(fig, dense, span)
    values += [_geomean(levels) for levels in dense.values()]
    if done:
        fig.update_xaxes(**log_percent_axis(*span))
    fig.update_yaxes(**value_axis(values))
    return styled(fig, "Perplexity vs trainable parameters", "trainable parameters (% of the model, log scale)",
                  "perplexity after retraining")


def ppl_bars(rows: Sequence[RunRow]) -> go.Figure:
    """Dense, pruned and retrained perplexity side by side for each finished run, labelled by its short id
    (``#12``; the run's full label on hover), each bar with its value when there are at most ``MANY_RUNS`` runs.
    A linear axis from 0 when the values are close, else a log axis from a decade below the smallest."""
    done = [r for r in charted(rows) if r.dense_ppl is not None]
    ids = [f"#{r.ref}" for r in done]
    labels = [run_label(r) for r in done]
    fig = go.Figure()
    values = []
    for name, ys, color in (("dense", [r.dense_ppl for r in done], DENSE),
                            ("pruned", [r.pruned_ppl for r in done], BEFORE),
                            ("retrained", [r.final_ppl for r in done], AFTER)):
        values += ys
        fig.add_trace(go.Bar(x=ids, y=ys, name=name, customdata=[r.ref for r in done], hovertext=labels,
                             marker_color=color, texttemplate="%{y:,.1f}" if len(done) <= MANY_RUNS else None,
                             textposition="outside", textangle=0, cliponaxis=False,
                             hovertemplate=f"%{{hovertext}}<br>{name}: %{{y:.2f}}<extra></extra>"))
    fig.update_yaxes(**value_axis(values, bars=True, log_from=10.0))
    fig.update_xaxes(tickangle=0, type="category")
    return styled(fig, "Dense, pruned and retrained perplexity per run", "run (hover a bar for its settings)",
                  "perplexity (lower is better)", barmode="group")


def log_value_axis(fig: go.Figure) -> dict:
    """A log y axis over every value the figure's traces draw, ticked by the one rule of every log axis."""
    return value_axis([y for t in fig.data for y in (t.y or ())], log_from=1.0) or dict(type="log")


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` steps (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def loss_curves(curves: Mapping[str, Sequence[float]], window: int = 1) -> go.Figure:
    """Training-loss curves overlaid, one per run label; ``window`` > 1 smooths them (trailing mean)."""
    fig = go.Figure()
    for name, values in curves.items():
        if not values:
            continue
        ys = smooth(list(values), window) if window > 1 else list(values)
        fig.add_trace(go.Scatter(x=list(range(1, len(ys) + 1)), y=ys, name=name, mode="lines",
                                 line=dict(color=curve_color(name)),
                                 hovertemplate=f"{name}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>"))
    suffix = f" (mean of {window} steps)" if window > 1 else ""
    return styled(fig, "Training loss" + suffix, "step", "loss")


def curve_color(label: str) -> str:
    """The colour of a run's curve, by the id its label starts with (``#12 ...`` or ``#g12 ...``, runs.run_label)."""
    return run_color(split_ref(label.split()[0])[1])


def learning_curves(curves: Mapping[str, Sequence[Mapping]], x: str = "step") -> go.Figure:
    """Held-out perplexity measured during retraining (``RunResult.curve``), one line per run label, against the
    optimizer step or the training seconds (``x``: "step" or "seconds"; the measurements' own time left out)."""
    fig = go.Figure()
    for name, points in curves.items():
        if not points:
            continue
        fig.add_trace(go.Scatter(x=[p[x] for p in points], y=[p["ppl"] for p in points], name=name,
                                 mode="lines+markers", line=dict(color=curve_color(name)),
                                 hovertemplate=f"{name}<br>{x} %{{x:.4g}}<br>perplexity %{{y:.2f}}<extra></extra>"))
    fig.update_yaxes(**log_value_axis(fig))
    title = "optimizer step" if x == "step" else "training seconds (curve points excluded)"
    return styled(fig, "Held-out perplexity during retraining", title, "perplexity (log scale)")


def block_learning_curves(curves: Mapping[str, Sequence[Sequence[Mapping]]]) -> go.Figure:
    """Reconstruction's curves, one line per run label: the mean over blocks of each block's held-out error
    relative to its error before training, against the step of each block's training."""
    fig = go.Figure()
    for name, blocks in curves.items():
        steps, means = relative_block_curve(blocks)
        if steps:
            fig.add_trace(go.Scatter(x=steps, y=means, name=name, mode="lines+markers", line=dict(color=curve_color(name)),
                                     hovertemplate=f"{name}<br>step %{{x}}<br>error / before %{{y:.3f}}<extra></extra>"))
    fig.add_hline(y=1.0, line_dash="dash", line_color=DENSE)
    return styled(fig, "Held-out block error during reconstruction", "optimizer step within each block",
                  "block error / before training (mean over blocks)")


def block_curves_of_run(blocks: Sequence[Mapping]) -> go.Figure:
    """One reconstruction's curves, one line per block (darker deeper): each block's held-out error by step."""
    fig = go.Figure()
    drawn = [b for b in blocks if b.get("curve")]
    for i, block in enumerate(drawn):
        shade = 0.25 + 0.75 * i / max(len(drawn) - 1, 1)
        fig.add_trace(go.Scatter(x=[p["step"] for p in block["curve"]], y=[p["error"] for p in block["curve"]],
                                 name=f"block {block['block']}", mode="lines",
                                 line=dict(color=f"rgba{(*hex_to_rgb(AFTER), round(shade, 2))}"),
                                 hovertemplate=f"block {block['block']}<br>step %{{x}}<br>error %{{y:.4g}}<extra></extra>"))
    fig.update_yaxes(**log_value_axis(fig))
    return styled(fig, "Each block's held-out error while it trains", "optimizer step within the block",
                  "relative error against the dense block (log scale)")
