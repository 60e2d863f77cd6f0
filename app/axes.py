"""Axes that read at a glance: log axes labelled at decades and 1-2-5 values (never bare minor digits), a linear
axis when the values span a small range, percent axes, and the common look of every chart.

Plain functions returning Plotly layout dicts; no Streamlit here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import plotly.graph_objects as go

from perp_engine.palette import DENSE
from perp_engine.ticks import log_axis

LOG_FROM = 3.0  # values spanning less than this factor get a linear axis
HEIGHT = 420  # one chart fits under the page header of a 1280x720 screen
LEGEND_ROW_PX, AXIS_TITLE_PX = 24, 60  # the room a legend row and an x axis (its ticks and title) take below a plot
LEGEND_WIDTH_PX = 1100  # the legend's width at the narrowest wide layout (Streamlit's page at 1400 px)
PLAIN_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=30, t=60, b=10),
                    hoverlabel=dict(namelength=-1), font=dict(size=13))


def styled(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, *, height: int = HEIGHT,
           **layout) -> go.Figure:
    """The common look: title, axis titles, a legend under the plot, a height that fits a projector."""
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, **{**PLAIN_LAYOUT, **layout})
    legend_below(fig)
    return fig


def legend_below(fig: go.Figure) -> None:
    """The legend under the x axis and its title, never on them: placed from the bottom of the whole figure,
    with the bottom margin (and the figure) grown by one row for each row the legend's names take at 1400 px."""
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    longest = max((len(n) for n in names), default=0)
    per_row = max(1, LEGEND_WIDTH_PX // (7 * longest + 50))
    rows = math.ceil(len(names) / per_row)
    fig.update_layout(legend=dict(title=None, orientation="h", yref="container", y=0, yanchor="bottom",
                                  xanchor="left", x=0),
                      margin=dict(PLAIN_LAYOUT["margin"], b=AXIS_TITLE_PX + LEGEND_ROW_PX * rows + 10),
                      height=(fig.layout.height or HEIGHT) + LEGEND_ROW_PX * rows)


def value_axis(values: Iterable[float | None], *, bars: bool = False, log_from: float = LOG_FROM) -> dict:
    """Axis settings for positive ``values`` (None and non-finite ones ignored): a log axis with readable ticks
    when the largest is at least ``log_from`` times the smallest, else a linear one. ``bars``: a linear axis
    starts at 0 and a log axis a decade below the smallest value, so the smallest bar is not a sliver."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not finite:
        return {}
    low, high = min(finite), max(finite)
    if high / low < log_from:
        return dict(type="linear", tickmode="auto", tickformat=",.4~r", rangemode="tozero" if bars else "normal")
    axis = log_axis(low, high, pad=0.06)
    if bars:
        axis = log_axis(10 ** math.floor(math.log10(low) - 0.2), 10 ** axis["range"][1])
    return axis


def ratio_axis(values: Iterable[float | None]) -> dict:
    """A log axis for ratios (after / before), so that ÷2 and ×2 are as far from 1, which it always shows."""
    return value_axis([*values, 1.0], log_from=1.0)


def percent_axis(pad: float = 0.0) -> dict:
    """A share axis fixed to 0-100% (``pad`` more on each side, so markers at 0 or 100% are drawn whole)."""
    return dict(range=[-pad, 1 + pad], tickformat=".0%", tickmode="array", tickvals=[0, 0.25, 0.5, 0.75, 1.0])


def log_percent_axis(low: float, high: float) -> dict:
    """A log axis in percent over [low, high] with the ticks of every log axis: ``0.5%``, ``1%``, ``2%``..."""
    axis = log_axis(low, high)
    return {**axis, "ticktext": [f"{t}%" for t in axis["ticktext"]]}


def sparsity_axis(values: Iterable[float]) -> dict:
    """A share axis around the sparsities drawn, five points of room each side, within 0-100%, ticked every 10%
    (every 5% when the span is under 30 points)."""
    values = list(values)
    low, high = min(values, default=0.0), max(values, default=1.0)
    low, high = max(0.0, low - 0.05), min(1.0, high + 0.05)
    step = 0.05 if high - low < 0.3 else 0.1
    ticks = [i * step for i in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]
    return dict(range=[low - 0.01, high + 0.01], tickformat=".0%", tickmode="array", tickvals=ticks)


def reference_line(fig: go.Figure, level: float, span: list, name: str, text: str, hover: str,
                   error: float | None = None) -> None:
    """A dashed grey line at ``level`` across ``span`` (x values) with ``text`` written over its right end, so the
    reference (the dense model) is read on the chart and not only in the legend; ``error``: its standard error,
    drawn as error bars at both ends."""
    error_y = None if error is None else dict(type="data", array=[error, error], visible=True, color=DENSE)
    fig.add_trace(go.Scatter(x=span, y=[level, level], name=name, mode="lines+text", text=["", text],
                             textposition="top left", textfont=dict(color=DENSE), line=dict(dash="dash", color=DENSE),
                             error_y=error_y, cliponaxis=False, hovertemplate=f"{hover}<extra></extra>"))


def block_ticks(n_blocks: int, most: int = 10) -> dict:
    """Whole-number block ticks, ``most`` of them at most."""
    return dict(tickmode="linear", tick0=0, dtick=max(1, math.ceil(n_blocks / most)))
