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

from perp_engine.inspect_layer import INSPECT_METHODS, AdapterOutcome, ErrorCurves, LayerInspection
from perp_engine.model.sparsity import kept_positions

CROP = 64
KEPT, PRUNED = "#0072B2", "#E69F00"
METHOD_COLORS = {"magnitude": "#D55E00", "wanda": "#009E73", "sparsegpt": "#CC79A7"}
LABELS = {"magnitude": "Magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT", "lora": "LoRA", "masklora": "MaskLoRA"}
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


def _matrix_axes(fig: go.Figure, panels: int) -> go.Figure:
    """Matrix orientation (row 0 on top), square cells, axis titles on every panel."""
    for i in range(1, panels + 1):
        fig.update_yaxes(autorange="reversed", scaleanchor="x" if i == 1 else f"x{i}", constrain="domain",
                         title_text="output row" if i == 1 else None, row=1, col=i)
        fig.update_xaxes(constrain="domain", title_text="input column", row=1, col=i)
    fig.update_annotations(font_size=15)
    return fig


def _two_colour(zero_label: str, one_label: str, show: bool) -> dict:
    """A two-colour scale for 0/1 cells with a legend-like colour bar."""
    return dict(zmin=0, zmax=1, showscale=show, colorscale=[[0, PRUNED], [0.5, PRUNED], [0.5, KEPT], [1, KEPT]],
                colorbar=dict(tickvals=[0.25, 0.75], ticktext=[zero_label, one_label], len=0.5, thickness=18))


def _colour_top(values: torch.Tensor) -> float:
    """The top of a colour scale: the 99th percentile, so that one outlier does not paint the rest dark."""
    return float(values.float().flatten().quantile(COLOUR_QUANTILE)) or float(values.max()) or 1.0


def score_heatmaps(ins: LayerInspection, crop: Crop) -> go.Figure:
    """|W| and Wanda's score |W|·‖x‖ on the crop, each with its own colour bar (viridis) capped at the crop's
    99th percentile; hover gives the exact values."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16,
                        subplot_titles=["|W|: what magnitude ranks", "|W| · ‖x‖: what Wanda ranks"])
    weight = crop.values(ins.weight.abs())
    norms = crop.take(ins.input_norm.unsqueeze(0).expand_as(ins.weight)).tolist()
    fig.add_trace(go.Heatmap(
        z=weight, x=crop.x, y=crop.y, name="|W|", coloraxis="coloraxis",
        hovertemplate="|W|<br>row %{y}, column %{x}<br>%{z:.4f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(
        z=crop.values(ins.wanda_score), x=crop.x, y=crop.y, name="Wanda score", coloraxis="coloraxis2",
        customdata=[[[w, n] for w, n in zip(wr, nr)] for wr, nr in zip(weight, norms)],
        hovertemplate="Wanda score |W| · ‖x‖<br>row %{y}, column %{x}<br>%{z:.4f} = "
                      "%{customdata[0]:.4f} × %{customdata[1]:.3f}<extra></extra>"), row=1, col=2)
    fig.update_layout(title=f"Weight size and Wanda score ({_where(crop)}; colours capped at the 99th percentile)",
                      height=460, **LAYOUT,
                      coloraxis=dict(colorscale=SCORES, cmin=0, cmax=_colour_top(crop.take(ins.weight.abs())),
                                     colorbar=dict(title="|W|", x=0.42, len=0.8)),
                      coloraxis2=dict(colorscale=SCORES, cmin=0, cmax=_colour_top(crop.take(ins.wanda_score)),
                                      colorbar=dict(title="score", x=1.0, len=0.8)))
    return _matrix_axes(fig, 2)


def mask_heatmaps(ins: LayerInspection, crop: Crop) -> go.Figure:
    """The three masks on the crop, kept in blue and pruned in orange; the title says each one's kept share there."""
    titles = [f"{LABELS[m]}: keeps {float(crop.take(ins.masks[m]).float().mean()):.0%} here" for m in INSPECT_METHODS]
    fig = make_subplots(rows=1, cols=len(INSPECT_METHODS), subplot_titles=titles, horizontal_spacing=0.05)
    weight = crop.values(ins.weight)
    for i, method in enumerate(INSPECT_METHODS):
        mask = crop.take(ins.masks[method])
        fig.add_trace(go.Heatmap(
            z=mask.int().tolist(), x=crop.x, y=crop.y, name=LABELS[method], customdata=weight,
            text=[["kept" if v else "pruned" for v in row] for row in mask.tolist()],
            hovertemplate=f"{LABELS[method]} mask<br>row %{{y}}, column %{{x}}<br>%{{text}} · W = %{{customdata:.4f}}<extra></extra>",
            **_two_colour("pruned", "kept", show=i == len(INSPECT_METHODS) - 1)), row=1, col=i + 1)
    title = f"Which weights each method keeps at {_setting(ins)} ({_where(crop)})"
    fig.update_layout(title=title, height=380, **LAYOUT)
    return _matrix_axes(fig, len(INSPECT_METHODS))


def _setting(ins: LayerInspection) -> str:
    return f"{ins.sparsity:.0%} sparsity" + ("" if ins.pattern == "unstructured" else f", {ins.pattern}")


def agreement_label(methods: tuple[str, ...]) -> str:
    """``("magnitude", "wanda")`` -> ``"only Magnitude + Wanda keep"``; all three and none have their own words."""
    if not methods:
        return "all three prune"
    if len(methods) == len(INSPECT_METHODS):
        return "all three keep"
    return f"only {' + '.join(LABELS[m] for m in methods)} keep{'s' if len(methods) == 1 else ''}"


def jaccard_heatmap(ins: LayerInspection) -> go.Figure:
    """The Jaccard overlap of the kept sets, method by method (1 on the diagonal), the value in each cell."""
    labels = [LABELS[m] for m in INSPECT_METHODS]
    z = [[ins.overlap[a][b] for b in INSPECT_METHODS] for a in INSPECT_METHODS]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, name="Jaccard", zmin=0, zmax=1, colorscale="Blues",
                               showscale=False, texttemplate="%{z:.2f}", textfont=dict(size=18),
                               hovertemplate="kept by %{y} and by %{x}<br>Jaccard overlap %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Overlap of the kept weights (Jaccard)", height=420, **LAYOUT)
    return fig


def agreement_bars(ins: LayerInspection) -> go.Figure:
    """How many weights exactly which methods keep (a Venn diagram as bars), as a share of the whole matrix."""
    order = sorted(ins.agreement, key=lambda methods: (-len(methods), [INSPECT_METHODS.index(m) for m in methods]))
    total = sum(ins.agreement.values())
    shares = [ins.agreement[m] / total for m in order]
    colours = [KEPT if len(m) == len(INSPECT_METHODS) else PRUNED if not m else "#9ca3af" for m in order]
    fig = go.Figure(go.Bar(
        y=[agreement_label(m) for m in order], x=shares, orientation="h", name="weights", marker_color=colours,
        customdata=[ins.agreement[m] for m in order], text=[f"{v:.1%}" for v in shares], textposition="outside",
        cliponaxis=False, hovertemplate="%{y}<br>%{customdata:,} weights (%{x:.1%})<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickformat=".0%", title_text="share of the layer's weights", range=[0, 1.2 * max(shares)])
    fig.update_layout(title=f"Who keeps each weight ({_setting(ins)}, whole matrix)", height=420, **LAYOUT)
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
