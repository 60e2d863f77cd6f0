"""Plotly figures of one linear layer seen up close (the Inside a layer page). Plain functions: no Streamlit here.

Heatmaps show a crop of the (out, in) weight with its real row and column indices on the axes. Every trace
carries the plotted values, and hovering names the quantity, the row, the column and a rounded value. Sized to
be read on a 1280 x 720 projector; kept and pruned weights are Okabe-Ito blue and orange, told apart under
every common colour-vision deficiency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from perp_engine.inspect_layer import DSNOT, INSPECT_METHODS, AdapterOutcome, ErrorCurves, LayerInspection
from perp_engine.model.sparsity import kept_positions
from perp_engine.palette import method_color

CROP = 64
KEPT, PRUNED = "#0072B2", "#E69F00"
METHOD_COLORS = {**{m: method_color(m) for m in INSPECT_METHODS if m != DSNOT},  # the colours of every chart
                 DSNOT: method_color("wanda", refine="dsnot")}
LABELS = {"magnitude": "Magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT", "ria": "RIA", DSNOT: "Wanda + DSnoT",
          "lora": "LoRA", "masklora": "MaskLoRA"}
NUMBER_WORDS = {5: "five"}  # "all five keep"
SPLIT = "#9ca3af"  # weights some methods keep and others prune
LAYOUT = dict(template="plotly_white", font=dict(size=15), margin=dict(l=10, r=10, t=80, b=10))
SCORES = "Viridis"
COLOUR_QUANTILE = 0.99


@dataclass(frozen=True)
class Crop:
    """A window of an (out, in) matrix: rows ``row`` to ``row + rows - 1``, columns ``col`` to ``col + cols - 1``."""

    row: int
    col: int
    rows: int
    cols: int

    @property
    def y(self) -> list[int]:
        return list(range(self.row, self.row + self.rows))

    @property
    def x(self) -> list[int]:
        return list(range(self.col, self.col + self.cols))

    def take(self, matrix: torch.Tensor) -> torch.Tensor:
        return matrix[self.row: self.row + self.rows, self.col: self.col + self.cols]

    def values(self, matrix: torch.Tensor) -> list[list[float]]:
        return self.take(matrix).tolist()


def crop_at(shape: tuple[int, int], row: int, col: int, size: int = CROP) -> Crop:
    """The ``size`` x ``size`` window starting at (row, col), shrunk to the matrix and moved inside it."""
    rows, cols = min(size, shape[0]), min(size, shape[1])
    return Crop(row=min(max(0, row), shape[0] - rows), col=min(max(0, col), shape[1] - cols), rows=rows, cols=cols)


def _where(crop: Crop) -> str:
    return f"rows {crop.row}–{crop.row + crop.rows - 1}, columns {crop.col}–{crop.col + crop.cols - 1}"


def _matrix_axes(fig: go.Figure, panels: int, title_size: int = 15) -> go.Figure:
    """Matrix orientation (row 0 on top), square cells, axis titles on every panel; panel titles in
    ``title_size``."""
    for i in range(1, panels + 1):
        fig.update_yaxes(autorange="reversed", scaleanchor="x" if i == 1 else f"x{i}", constrain="domain",
                         title_text="output row" if i == 1 else None, row=1, col=i)
        fig.update_xaxes(constrain="domain", title_text="input column", row=1, col=i)
    fig.update_annotations(font_size=title_size)
    return fig


def _two_colour(zero_label: str, one_label: str, show: bool) -> dict:
    """A two-colour scale for 0/1 cells with a legend-like colour bar."""
    return dict(zmin=0, zmax=1, showscale=show, colorscale=[[0, PRUNED], [0.5, PRUNED], [0.5, KEPT], [1, KEPT]],
                colorbar=dict(tickvals=[0.25, 0.75], ticktext=[zero_label, one_label], len=0.5, thickness=18))


def _colour_top(values: torch.Tensor) -> float:
    """The top of a colour scale: the 99th percentile, so that one outlier does not paint the rest dark."""
    return float(values.float().flatten().quantile(COLOUR_QUANTILE)) or float(values.max()) or 1.0


SCORE_PANELS = (  # (title, hover name, colour bar title): what each ranking method looks at
    ("|W|: what magnitude ranks", "|W|", "|W|"),
    ("|W| · ‖x‖: what Wanda ranks", "Wanda score |W| · ‖x‖", "Wanda"),
    ("relative |W| · ‖x‖^a: what RIA ranks", "RIA score (|W|/column sum + |W|/row sum) · ‖x‖^a", "RIA"),
)


def score_heatmaps(ins: LayerInspection, crop: Crop) -> go.Figure:
    """|W|, Wanda's score |W|·‖x‖ and RIA's score on the crop, each with its own colour bar (viridis) capped at the
    crop's 99th percentile; hover gives the exact values (and Wanda's factors)."""
    n, gap = len(SCORE_PANELS), 0.14  # room for each colour bar between the panels
    fig = make_subplots(rows=1, cols=n, horizontal_spacing=gap, subplot_titles=[title for title, _, _ in SCORE_PANELS])
    weight = crop.values(ins.weight.abs())
    norms = crop.take(ins.input_norm.unsqueeze(0).expand_as(ins.weight)).tolist()
    factors = dict(customdata=[[[w, n] for w, n in zip(wr, nr)] for wr, nr in zip(weight, norms)],
                   hovertemplate=" = %{customdata[0]:.4f} × %{customdata[1]:.3f}")  # Wanda's score, factored
    axes = {}
    for i, ((_, name, bar), matrix) in enumerate(zip(SCORE_PANELS, (ins.weight.abs(), ins.wanda_score, ins.ria_score))):
        axis = "coloraxis" if i == 0 else f"coloraxis{i + 1}"
        extra = factors if i == 1 else {}
        fig.add_trace(go.Heatmap(
            z=crop.values(matrix), x=crop.x, y=crop.y, name=name, coloraxis=axis, customdata=extra.get("customdata"),
            hovertemplate=f"{name}<br>row %{{y}}, column %{{x}}<br>%{{z:.4g}}{extra.get('hovertemplate', '')}"
                          "<extra></extra>"), row=1, col=i + 1)
        right = (i + 1) * (1 - gap * (n - 1)) / n + i * gap  # the panel's right edge: its colour bar beside it
        axes[axis] = dict(colorscale=SCORES, cmin=0, cmax=_colour_top(crop.take(matrix)),
                          colorbar=dict(title=bar, x=right, len=0.8, thickness=14))
    fig.update_layout(title=f"Weight size and the scores that rank it ({_where(crop)}; colours capped at the 99th "
                            "percentile)", height=440, **LAYOUT, **axes)
    return _matrix_axes(fig, n)


def mask_heatmaps(ins: LayerInspection, crop: Crop) -> go.Figure:
    """Each method's mask on the crop, kept in blue and pruned in orange, side by side; the titles say each one's
    kept share there."""
    titles = [f"{LABELS[m]}: keeps {float(crop.take(ins.masks[m]).float().mean()):.0%}" for m in INSPECT_METHODS]
    fig = make_subplots(rows=1, cols=len(INSPECT_METHODS), subplot_titles=titles, horizontal_spacing=0.03)
    weight = crop.values(ins.weight)
    for i, method in enumerate(INSPECT_METHODS):
        mask = crop.take(ins.masks[method])
        fig.add_trace(go.Heatmap(
            z=mask.int().tolist(), x=crop.x, y=crop.y, name=LABELS[method], customdata=weight,
            text=[["kept" if v else "pruned" for v in row] for row in mask.tolist()],
            hovertemplate=f"{LABELS[method]} mask<br>row %{{y}}, column %{{x}}<br>%{{text}} · W = %{{customdata:.4f}}<extra></extra>",
            **_two_colour("pruned", "kept", show=i == len(INSPECT_METHODS) - 1)), row=1, col=i + 1)
    title = f"Which weights each method keeps at {_setting(ins)} ({_where(crop)})"
    fig.update_layout(title=title, height=360, **LAYOUT)
    return _matrix_axes(fig, len(INSPECT_METHODS), title_size=13)


def dsnot_swaps(ins: LayerInspection) -> int:
    """How many pruned weights DSnoT regrew (each swap regrows one and prunes one kept weight of Wanda's mask)."""
    return int((ins.masks[DSNOT] & ~ins.masks["wanda"]).sum())


def _setting(ins: LayerInspection) -> str:
    return f"{ins.sparsity:.0%} sparsity" + ("" if ins.pattern == "unstructured" else f", {ins.pattern}")


def agreement_rows(ins: LayerInspection) -> list[tuple[str, int]]:
    """Who keeps each weight, as (label, weights) rows from "all keep" to "all prune": kept by all but one method
    and by one method alone, one row per method; kept by some other number, one row per number."""
    n = len(INSPECT_METHODS)
    word = NUMBER_WORDS.get(n, str(n))
    rows = []
    for k in range(n, -1, -1):
        combos = [c for c in ins.agreement if len(c) == k]
        if k in (0, n):
            rows.append((f"all {word} {'keep' if k else 'prune'}", sum(ins.agreement[c] for c in combos)))
        elif k == n - 1:
            rows += [(f"all but {LABELS[m]} keep", ins.agreement[tuple(x for x in INSPECT_METHODS if x != m)])
                     for m in INSPECT_METHODS]
        elif k == 1:
            rows += [(f"only {LABELS[m]} keeps", ins.agreement[(m,)]) for m in INSPECT_METHODS]
        else:
            rows.append((f"kept by {k} of {word}", sum(ins.agreement[c] for c in combos)))
    return rows


def jaccard_heatmap(ins: LayerInspection) -> go.Figure:
    """The Jaccard overlap of the kept sets, method by method (1 on the diagonal), the value in each cell."""
    labels = [LABELS[m] for m in INSPECT_METHODS]
    z = [[ins.overlap[a][b] for b in INSPECT_METHODS] for a in INSPECT_METHODS]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, name="Jaccard", zmin=0, zmax=1, colorscale="Blues",
                               showscale=False, texttemplate="%{z:.2f}", textfont=dict(size=16),
                               hovertemplate="kept by %{y} and by %{x}<br>Jaccard overlap %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Overlap of the kept weights (Jaccard)", height=480, **LAYOUT)
    return fig


def agreement_bars(ins: LayerInspection) -> go.Figure:
    """How many weights which methods keep (agreement_rows), as a share of the whole matrix: blue where all keep,
    orange where all prune, grey where they disagree."""
    rows = agreement_rows(ins)
    total = sum(ins.agreement.values())
    shares = [count / total for _, count in rows]
    last = len(rows) - 1
    colours = [KEPT if i == 0 else PRUNED if i == last else SPLIT for i in range(len(rows))]
    fig = go.Figure(go.Bar(
        y=[label for label, _ in rows], x=shares, orientation="h", name="weights", marker_color=colours,
        customdata=[count for _, count in rows], text=[f"{v:.1%}" for v in shares], textposition="outside",
        cliponaxis=False, hovertemplate="%{y}<br>%{customdata:,} weights (%{x:.1%})<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickformat=".0%", title_text="share of the layer's weights", range=[0, 1.2 * max(shares)])
    fig.update_layout(title=f"Who keeps each weight ({_setting(ins)}, whole matrix)", height=480, **LAYOUT)
    return fig


def local_error_bars(ins: LayerInspection) -> go.Figure:
    """Each method's local output error on held-out inputs, one bar per method, the value written on it."""
    values = [ins.local_error[m] for m in INSPECT_METHODS]
    fig = go.Figure(go.Bar(
        x=[LABELS[m] for m in INSPECT_METHODS], y=values, marker_color=[METHOD_COLORS[m] for m in INSPECT_METHODS],
        text=[f"{v:.3g}" for v in values], textposition="outside", cliponaxis=False, name="local error",
        hovertemplate="%{x}<br>local error %{y:.4g} (%{y:.2%} of the output's energy)<extra></extra>"))
    fig.update_layout(title=f"Local error at {_setting(ins)}", height=440,
                      yaxis_title="‖WX − W′X‖² / ‖WX‖², held-out X", showlegend=False, **LAYOUT)
    return fig


def error_curve_figure(curves: ErrorCurves, ins: LayerInspection | None = None) -> go.Figure:
    """Local error against sparsity, one line per method (unstructured); stars mark the current setting."""
    fig = go.Figure()
    for method in INSPECT_METHODS:
        fig.add_trace(go.Scatter(
            x=list(curves.sparsities), y=list(curves.errors[method]), name=LABELS[method], mode="lines+markers",
            line=dict(color=METHOD_COLORS[method], width=3), marker=dict(size=8),
            hovertemplate=f"{LABELS[method]}<br>sparsity %{{x:.0%}}<br>local error %{{y:.4g}}<extra></extra>"))
    if ins is not None:
        fig.add_trace(go.Scatter(
            x=[ins.sparsity] * len(INSPECT_METHODS), y=[ins.local_error[m] for m in INSPECT_METHODS],
            name=f"now: {_setting(ins)}", mode="markers", text=[LABELS[m] for m in INSPECT_METHODS],
            marker=dict(symbol="star", size=18, color=[METHOD_COLORS[m] for m in INSPECT_METHODS],
                        line=dict(color="black", width=1)),
            hovertemplate="%{text} now<br>sparsity %{x:.0%}<br>local error %{y:.4g}<extra></extra>"))
    fig.update_xaxes(tickformat=".0%", dtick=0.1, title_text="sparsity of this layer (unstructured)")
    fig.update_layout(title="Local error as the layer is pruned harder", height=440,
                      yaxis_title="local error on held-out text", legend=dict(title=None), **LAYOUT)
    return fig


def update_heatmap(ins: LayerInspection, crop: Crop) -> go.Figure:
    """SparseGPT's W' − W on the weights it keeps, a diverging scale centred at 0; pruned cells are left blank."""
    kept = crop.take(ins.masks["sparsegpt"])
    update = crop.take(ins.sparsegpt_update)
    z = [[u if k else None for u, k in zip(ur, kr)] for ur, kr in zip(update.tolist(), kept.tolist())]
    before, after = crop.values(ins.weight), crop.values(ins.weights["sparsegpt"])
    limit = float(update.abs().max()) or 1.0
    fig = make_subplots(rows=1, cols=1)
    fig.add_trace(go.Heatmap(
        z=z, x=crop.x, y=crop.y, name="W′ − W", colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit,
        customdata=[[[b, a] for b, a in zip(br, ar)] for br, ar in zip(before, after)], hoverongaps=False,
        colorbar=dict(title="W′ − W", len=0.8),
        hovertemplate="SparseGPT update W′ − W<br>row %{y}, column %{x}<br>%{z:+.4f}: "
                      "W %{customdata[0]:.4f} → %{customdata[1]:.4f}<extra></extra>"))
    fig.update_layout(title=f"How SparseGPT moves the weights it keeps ({_where(crop)}; blank = pruned)", height=560,
                      **LAYOUT)
    return _matrix_axes(fig, 1)


def adapter_zero_maps(start: torch.Tensor, method: str, outcomes: Mapping[str, AdapterOutcome], crop: Crop) -> go.Figure:
    """Zero (orange) and non-zero (blue) weights on the crop: the pruned weight, then each adapter after merging."""
    panels = [(f"pruned by {LABELS[method]}", start)]
    panels += [(f"{LABELS[kind]} merged", out.merged) for kind, out in outcomes.items()]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.05)
    for i, (what, weight) in enumerate(panels):
        values = crop.take(weight)
        fig.add_trace(go.Heatmap(
            z=kept_positions(values).int().tolist(), x=crop.x, y=crop.y, name=what, customdata=values.tolist(),
            hovertemplate=f"{what}<br>row %{{y}}, column %{{x}}<br>W = %{{customdata:.2e}}<extra></extra>",
            **_two_colour("zero", "non-zero", show=i == len(panels) - 1)), row=1, col=i + 1)
    fig.update_layout(title=f"Zeros after merging the adapters ({_where(crop)})", height=380, **LAYOUT)
    return _matrix_axes(fig, len(panels))
