"""Axes that read at a glance: log axes labelled at decades and 1-2-5 values (never bare minor digits), a linear
axis when the values span a small range, percent axes, and the common look of every chart.

Plain functions returning Plotly layout dicts; no Streamlit here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import plotly.graph_objects as go

LOG_FROM = 3.0  # values spanning less than this factor get a linear axis
MOST_TICKS = 8
HEIGHT = 420  # one chart fits under the page header of a 1280x720 screen
BEFORE, AFTER = "#dc2626", "#2563eb"  # after pruning (red), after repair (blue): one meaning on every chart
DENSE = "#374151"
PLAIN_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=30, t=60, b=10),
                    legend=dict(title=None, orientation="h", yanchor="top", y=-0.16, xanchor="left", x=0),
                    hoverlabel=dict(namelength=-1), font=dict(size=13))
_MANTISSAS = ((1, 2, 5), (1, 1.5, 2, 3, 5, 7))


def styled(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, *, height: int = HEIGHT,
           **layout) -> go.Figure:
    """The common look: title, axis titles, a legend under the plot, a height that fits a projector."""
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, **{**PLAIN_LAYOUT, **layout})
    return fig


def tick_label(value: float) -> str:
    """``0.001``, ``0.5``, ``20``, ``1,000``, ``20,000``; ``1e-5`` or ``2e6`` outside [0.001, 100,000)."""
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:,.6g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_ticks(low: float, high: float, most: int = MOST_TICKS) -> list[float]:
    """Tick values for a log axis over [low, high]: 1-2-5 steps (10, 20, 50, 100...), or finer steps (1, 1.5, 2,
    3, 5, 7) when that gives fewer than three ticks; decades, then every other decade..., when there are too many."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))

    def inside(mantissas, step=1):  # decades at exponents divisible by step: 1e-4, 1e-2, 1 (never 1e-3, 0.1)
        values = [m * 10.0 ** e for e in range(first, last + 1) if e % step == 0 for m in mantissas]
        return [float(f"{v:.6g}") for v in values if low <= v <= high]

    for mantissas in _MANTISSAS:
        values = inside(mantissas)
        if len(values) >= 3:
            break
    if len(values) <= most:
        return values
    step = 1
    while len(values := inside((1,), step)) > most:
        step += 1
    return values


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
    pad = 0.06 * (math.log10(high) - math.log10(low)) + 0.02
    bottom = math.log10(low) - pad
    if bars:
        bottom = math.floor(math.log10(low) - 0.2)
    top = math.log10(high) + pad
    ticks = log_ticks(10 ** bottom, 10 ** top)
    return dict(type="log", range=[bottom, top], tickmode="array", tickvals=ticks, ticktext=[tick_label(v) for v in ticks])


def ratio_axis(values: Iterable[float | None]) -> dict:
    """A log axis for ratios (after / before), so that ÷2 and ×2 are as far from 1, which it always shows."""
    return value_axis([*values, 1.0], log_from=1.0)


def percent_axis(pad: float = 0.0) -> dict:
    """A share axis fixed to 0-100% (``pad`` more on each side, so markers at 0 or 100% are drawn whole)."""
    return dict(range=[-pad, 1 + pad], tickformat=".0%", tickmode="array", tickvals=[0, 0.25, 0.5, 0.75, 1.0])


def log_percent_axis(low: float, high: float) -> dict:
    """A log axis in percent with ticks at 1-2-5 steps between ``low`` and ``high``: ``0.5%``, ``1%``, ``2%``..."""
    values = [m * 10.0 ** e for e in range(-4, 3) for m in (1, 2, 5) if low <= m * 10.0 ** e <= high]
    return dict(type="log", tickmode="array", tickvals=values, ticktext=[f"{v:g}%" for v in values])


def block_ticks(n_blocks: int, most: int = 10) -> dict:
    """Whole-number block ticks, ``most`` of them at most."""
    return dict(tickmode="linear", tick0=0, dtick=max(1, math.ceil(n_blocks / most)))
