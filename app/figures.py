"""Plotly figures of runs, built from store rows and layer records. Plain functions: no Streamlit here.

Every builder returns a ``go.Figure`` whose traces carry the plotted values (and run ids in ``customdata``), so
tests check what a chart shows and pages only place it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from perp_engine.store import RunRow

from .runs import end_ppl, model_label, pruning_label, retraining_label, run_label

PALETTE = qualitative.Plotly
KIND_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
              "c_attn", "attn.c_proj", "c_fc", "mlp.c_proj", "fc1", "fc2", "out_proj", "dense")
PLAIN_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=10), legend=dict(title=None))


def _styled(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, *, log_x: bool = False,
            log_y: bool = False, **layout) -> go.Figure:
    """The common look: title, axis titles, optional log axes, plain template."""
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, **PLAIN_LAYOUT, **layout)
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _done(rows: Sequence[RunRow]) -> list[RunRow]:
    return [r for r in rows if r.status == "done" and end_ppl(r) is not None]


def _model_prefix(rows: Sequence[RunRow]):
    """Name traces with the model only when several models are on one chart."""
    several = len({r.config.get("model") for r in rows}) > 1
    return (lambda row: f"{model_label(row.config.get('model', ''))} · ") if several else (lambda row: "")


def _pattern_suffix(config: dict) -> str:
    pattern = config.get("pattern", "unstructured")
    return "" if pattern == "unstructured" else f" {pattern}"


def _series(points: Sequence[tuple[float, float, int]]) -> tuple[list[float], list[float], list[list[int]]]:
    """Sorted x, the geometric mean of y per x, and the run ids behind each point."""
    by_x: dict[float, list[tuple[float, int]]] = defaultdict(list)
    for x, y, run_id in points:
        by_x[round(x, 6)].append((y, run_id))
    xs = sorted(by_x)
    return xs, [_geomean([y for y, _ in by_x[x]]) for x in xs], [sorted(i for _, i in by_x[x]) for x in xs]


def ppl_vs_sparsity(rows: Sequence[RunRow]) -> go.Figure:
    """Perplexity against sparsity: one line per pruning method and retraining recipe, one per method for the
    pruned models before any retraining, and the dense model at sparsity 0. Log-scale y; repeated settings
    (seeds) are averaged geometrically."""
    done = _done(rows)
    prefix = _model_prefix(done)
    retrained: dict[str, list] = defaultdict(list)
    pruned: dict[str, list] = defaultdict(list)
    dense: dict[str, list] = defaultdict(list)
    for r in done:
        cfg = r.config
        method = f"{prefix(r)}{cfg.get('method')}{_pattern_suffix(cfg)}"
        x = float(cfg.get("sparsity", 0.0))
        pruned[f"{method} · no retraining"].append((x, r.pruned_ppl, r.id))
        if r.final_ppl is not None:
            retrained[f"{method} · {retraining_label(cfg)}"].append((x, r.final_ppl, r.id))
        if r.dense_ppl is not None:
            dense[f"{prefix(r)}dense"].append((0.0, r.dense_ppl, r.id))
    fig = go.Figure()
    for name, points in sorted(dense.items()):
        xs, ys, ids = _series(points)
        fig.add_trace(go.Scatter(x=xs, y=ys, customdata=ids, name=name, mode="markers",
                                 marker=dict(symbol="star", size=14, color="black"),
                                 hovertemplate="dense<br>perplexity %{y:.2f}<br>runs %{customdata}<extra></extra>"))
    for dash, groups in (("dot", pruned), ("solid", retrained)):
        for name, points in sorted(groups.items()):
            xs, ys, ids = _series(points)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, customdata=ids, name=name, mode="lines+markers", line=dict(dash=dash),
                hovertemplate=f"{name}<br>sparsity %{{x:.0%}}<br>perplexity %{{y:.2f}}<br>runs %{{customdata}}<extra></extra>"))
    fig.update_xaxes(tickformat=".0%")
    return _styled(fig, "Perplexity vs sparsity", "sparsity (share of pruned weights)",
                   "perplexity (log scale, lower is better)", log_y=True)


def ppl_vs_trainable(rows: Sequence[RunRow]) -> go.Figure:
    """The PERP picture: final perplexity against the percentage of parameters retrained (log x), one marker
    series per pruned model (method, sparsity, pattern), labelled by recipe, with that pruned model's perplexity
    before retraining and the dense perplexity as horizontal reference lines."""
    done = [r for r in _done(rows) if r.final_ppl is not None and (r.trainable_fraction or 0) > 0]
    prefix = _model_prefix(done)
    groups: dict[str, list[RunRow]] = defaultdict(list)
    for r in done:
        groups[f"{prefix(r)}{pruning_label(r.config)}"].append(r)
    fig = go.Figure()
    xs_all = [100 * r.trainable_fraction for r in done]
    span = [min(xs_all) / 1.5, max(xs_all) * 1.5] if done else []
    dense: dict[str, list[float]] = defaultdict(list)
    for i, (name, runs) in enumerate(sorted(groups.items())):
        color = PALETTE[i % len(PALETTE)]
        runs = sorted(runs, key=lambda r: r.trainable_fraction)
        fig.add_trace(go.Scatter(
            x=[100 * r.trainable_fraction for r in runs], y=[r.final_ppl for r in runs],
            text=[retraining_label(r.config) for r in runs], customdata=[r.id for r in runs],
            name=name, legendgroup=name, mode="markers+text", textposition="top center",
            marker=dict(size=11, color=color),
            hovertemplate="%{text}<br>trainable %{x:.3g}%<br>perplexity %{y:.2f}<br>run #%{customdata}<extra></extra>"))
        pruned = _geomean([r.pruned_ppl for r in runs])
        fig.add_trace(go.Scatter(x=span, y=[pruned, pruned], name=f"{name} · before retraining", legendgroup=name,
                                 mode="lines", line=dict(dash="dot", color=color),
                                 hovertemplate=f"{name} pruned, not retrained: %{{y:.2f}}<extra></extra>"))
        for r in runs:
            if r.dense_ppl is not None:
                dense[f"{prefix(r)}dense"].append(r.dense_ppl)
    for name, values in sorted(dense.items()):
        level = _geomean(values)
        fig.add_trace(go.Scatter(x=span, y=[level, level], name=name, mode="lines",
                                 line=dict(dash="dash", color="black"),
                                 hovertemplate=f"{name}: %{{y:.2f}}<extra></extra>"))
    if done:
        fig.update_xaxes(**_percent_ticks(*span))
    return _styled(fig, "Perplexity vs trainable parameters", "trainable parameters (% of the model, log scale)",
                   "perplexity after retraining (log scale)", log_x=True, log_y=True)


def _percent_ticks(low: float, high: float) -> dict:
    """Ticks at 1-2-5 steps between ``low`` and ``high`` (percent), labelled ``0.5%``, ``1%``, ``2%``..."""
    values = [m * 10.0 ** e for e in range(-4, 3) for m in (1, 2, 5) if low <= m * 10.0 ** e <= high]
    return dict(tickvals=values, ticktext=[f"{v:g}%" for v in values])


def ppl_bars(rows: Sequence[RunRow]) -> go.Figure:
    """Dense, pruned and retrained perplexity side by side for each finished run (log scale)."""
    done = [r for r in _done(rows) if r.dense_ppl is not None]
    labels = [run_label(r) for r in done]
    ids = [r.id for r in done]
    fig = go.Figure()
    for name, values, color in (("dense", [r.dense_ppl for r in done], "#6b7280"),
                                ("pruned", [r.pruned_ppl for r in done], "#ef4444"),
                                ("retrained", [r.final_ppl for r in done], "#2563eb")):
        fig.add_trace(go.Bar(x=labels, y=values, name=name, customdata=ids, marker_color=color,
                             hovertemplate=f"{name}: %{{y:.2f}}<br>run #%{{customdata}}<extra></extra>"))
    return _styled(fig, "Dense, pruned and retrained perplexity per run", y="perplexity (log scale)", log_y=True,
                   barmode="group")


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
                                 hovertemplate=f"{name}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>"))
    suffix = f" (mean of {window} steps)" if window > 1 else ""
    return _styled(fig, "Training loss" + suffix, "step", "loss")


# -- layers ---------------------------------------------------------------------------------------------------


def layer_columns(layers: Sequence[dict]) -> list[str]:
    """Column label of each layer record: its kind (q_proj, ..., down_proj), or the last two parts of its name
    when one block has two linears of the same kind (GPT-2's attn.c_proj and mlp.c_proj)."""
    seen: dict[tuple[int, str], int] = defaultdict(int)
    for rec in layers:
        seen[(rec["block"], rec["kind"])] += 1
    clash = {kind for (_, kind), n in seen.items() if n > 1}
    return [".".join(rec["name"].split(".")[-2:]) if rec["kind"] in clash else rec["kind"] for rec in layers]


def _order(columns: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(columns))
    known = [k for k in KIND_ORDER if k in unique]
    return known + [c for c in unique if c not in known]


def layer_matrix(layers: Sequence[dict], value: str) -> tuple[list[int], list[str], list[list[float | None]]]:
    """``(blocks, columns, z)`` with ``z[i][j]`` the ``value`` of block ``blocks[i]``'s linear ``columns[j]``."""
    labels = layer_columns(layers)
    columns = _order(labels)
    blocks = sorted({rec["block"] for rec in layers})
    row_of = {b: i for i, b in enumerate(blocks)}
    col_of = {c: j for j, c in enumerate(columns)}
    z: list[list[float | None]] = [[None] * len(columns) for _ in blocks]
    for rec, label in zip(layers, labels):
        z[row_of[rec["block"]]][col_of[label]] = rec.get(value)
    return blocks, columns, z


def _block_ticks(records_by_run: Mapping[str, Sequence[dict]], most: int = 10) -> dict:
    """Whole-number block ticks, ``most`` of them at most (records are layer or block records)."""
    n = 1 + max((rec["block"] for records in records_by_run.values() for rec in records), default=0)
    return dict(tickmode="linear", tick0=0, dtick=max(1, math.ceil(n / most)))


def _log10(z: list[list[float | None]]) -> list[list[float | None]]:
    return [[math.log10(v) if v is not None and v > 0 else None for v in row] for row in z]


def _short(column: str) -> str:
    return column.removesuffix("_proj")


def error_heatmaps(layers_by_run: Mapping[str, Sequence[dict]]) -> go.Figure:
    """Per-layer reconstruction error, block (rows) by linear type (columns), before and after retraining,
    one row of panels per run. Colour is log10 of the relative error on one shared scale; hover shows the value."""
    panels = []
    for label, layers in layers_by_run.items():
        panels.append((f"{label} · after pruning", layers, "recon_error"))
        if any(rec.get("recon_error_after") is not None for rec in layers):
            panels.append((f"{label} · after retraining", layers, "recon_error_after"))
    cols = 2 if len(panels) > 1 else 1
    rows = max(1, math.ceil(len(panels) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in panels] or None,
                        horizontal_spacing=0.08, vertical_spacing=0.12)
    for i, (title, layers, value) in enumerate(panels):
        blocks, columns, z = layer_matrix(layers, value)
        fig.add_trace(go.Heatmap(z=_log10(z), customdata=z, x=[_short(c) for c in columns], y=blocks, name=title,
                                 coloraxis="coloraxis",
                                 hovertemplate="block %{y} %{x}<br>relative error %{customdata:.3g}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title="Reconstruction error per layer (relative, log10 colour)", height=320 + 260 * rows,
                      coloraxis=dict(colorscale="Viridis", colorbar=dict(title="log10 error")), **PLAIN_LAYOUT)
    fig.update_yaxes(title_text="block", autorange="reversed", **_block_ticks(layers_by_run))
    return fig


def sparsity_heatmaps(layers_by_run: Mapping[str, Sequence[dict]]) -> go.Figure:
    """Per-layer sparsity (share of zero weights), block by linear type, one panel per run."""
    labels = list(layers_by_run)
    fig = make_subplots(rows=1, cols=max(1, len(labels)), subplot_titles=labels or None, horizontal_spacing=0.08)
    for i, label in enumerate(labels):
        blocks, columns, z = layer_matrix(layers_by_run[label], "sparsity")
        fig.add_trace(go.Heatmap(z=z, x=[_short(c) for c in columns], y=blocks, name=label, coloraxis="coloraxis",
                                 hovertemplate="block %{y} %{x}<br>sparsity %{z:.2%}<extra></extra>"),
                      row=1, col=i + 1)
    fig.update_layout(title="Sparsity per layer", height=560,
                      coloraxis=dict(colorscale="Blues", cmin=0, cmax=1, colorbar=dict(title="sparsity", tickformat=".0%")),
                      **PLAIN_LAYOUT)
    fig.update_yaxes(title_text="block", autorange="reversed", **_block_ticks(layers_by_run))
    return fig


def layer_lines(layers_by_run: Mapping[str, Sequence[dict]], value: str = "recon_error") -> go.Figure:
    """One small chart per linear type, block on x. ``value="recon_error"``: error after pruning (solid) and
    after retraining (dashed), log y; ``value="sparsity"``: the sparsity of each layer."""
    all_columns = _order([c for layers in layers_by_run.values() for c in layer_columns(layers)])
    cols = min(4, max(1, len(all_columns)))
    rows = max(1, math.ceil(len(all_columns) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_short(c) for c in all_columns] or None,
                        shared_yaxes=True, vertical_spacing=0.12)
    series = ((("recon_error", "after pruning", "solid"), ("recon_error_after", "after retraining", "dash"))
              if value == "recon_error" else ((value, value, "solid"),))
    for r, (label, layers) in enumerate(layers_by_run.items()):
        color = PALETTE[r % len(PALETTE)]
        labels = layer_columns(layers)
        for j, column in enumerate(all_columns):
            recs = sorted((rec for rec, lab in zip(layers, labels) if lab == column), key=lambda rec: rec["block"])
            for key, what, dash in series:
                ys = [rec.get(key) for rec in recs]
                if all(y is None for y in ys):
                    continue
                name = f"{label} · {what}" if len(series) > 1 else label
                fig.add_trace(go.Scatter(
                    x=[rec["block"] for rec in recs], y=ys, name=name, legendgroup=name, showlegend=j == 0,
                    mode="lines+markers", line=dict(color=color, dash=dash), meta=column,
                    hovertemplate=f"{name}<br>{_short(column)} block %{{x}}<br>{what} %{{y:.3g}}<extra></extra>"),
                    row=j // cols + 1, col=j % cols + 1)
    title = "Reconstruction error by block" if value == "recon_error" else "Sparsity by block"
    fig.update_layout(title=title, height=260 + 220 * rows, **PLAIN_LAYOUT)
    fig.update_xaxes(**_block_ticks(layers_by_run, most=5))
    fig.update_xaxes(title_text="block", row=rows)
    if value == "recon_error":
        fig.update_yaxes(type="log")
    else:
        fig.update_yaxes(tickformat=".0%")
    return fig


def block_losses(blocks_by_run: Mapping[str, Sequence[dict]]) -> go.Figure:
    """Relative error of each whole block's output against the dense block: after pruning (solid) and after
    retraining (dashed), one colour per run, log y."""
    fig = go.Figure()
    for r, (label, blocks) in enumerate(blocks_by_run.items()):
        color = PALETTE[r % len(PALETTE)]
        for key, what, dash in (("loss_before", "after pruning", "solid"), ("loss_after", "after retraining", "dash")):
            ys = [b.get(key) for b in blocks]
            if all(y is None for y in ys):
                continue
            fig.add_trace(go.Scatter(x=[b["block"] for b in blocks], y=ys, name=f"{label} · {what}", mode="lines+markers",
                                     line=dict(color=color, dash=dash)))
    fig.update_xaxes(**_block_ticks(blocks_by_run))
    return _styled(fig, "Block output error vs the dense model", "block", "relative error (log scale)", log_y=True)
