"""The one tick rule of every log axis, the app's charts and the reproduction report's figures: ticks at 1-2-5
steps (finer when that gives fewer than three, decades when it gives too many), labelled with k and M suffixes,
never a bare minor digit."""

from __future__ import annotations

import math

MOST_TICKS = 8
_MANTISSAS = ((1, 2, 5), (1, 1.5, 2, 3, 5, 7))
_SUFFIXES = ((1e6, "M"), (1e3, "k"))


def tick_label(value: float) -> str:
    """``0.001``, ``0.5``, ``20``, ``999``, ``1k``, ``20k``, ``1.5M``; ``1e-5`` or ``2e9`` outside [0.001, 1e9)."""
    if 1e-3 <= abs(value) < 1e3:
        return f"{value:,.6g}"
    for size, suffix in _SUFFIXES:
        if size <= abs(value) < 1e3 * size:
            return f"{value / size:.6g}{suffix}"
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


def log_axis(low: float, high: float, pad: float = 0.0) -> dict:
    """Plotly settings of a log axis over [low, high], ``pad`` (a share of the span in decades, at least 0.02
    decade) more on each side, with the ticks of :func:`log_ticks` labelled by :func:`tick_label`."""
    room = pad * (math.log10(high) - math.log10(low)) + (0.02 if pad else 0.0)
    bottom, top = math.log10(low) - room, math.log10(high) + room
    ticks = log_ticks(10 ** bottom, 10 ** top)
    return dict(type="log", range=[bottom, top], tickmode="array", tickvals=ticks,
                ticktext=[tick_label(v) for v in ticks])
