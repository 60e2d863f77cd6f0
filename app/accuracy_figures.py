"""Compare's zero-shot accuracy figures, built from store rows: accuracy against sparsity, against trainable
parameters, and per task. Plain functions: no Streamlit here.

Each figure draws one task's headline metric (acc or acc_norm, as the papers report it) or the mean over a run's
tasks, with standard errors as error bars and guessing's accuracy as a reference. Runs scored under different
protocols (tasks, docs per task, seed, data source) get their own lines, dense reference and chance level, and
are never averaged together; runs without scores and diverged runs are left out. Colours, symbols and the dense
reference line follow the perplexity charts (:func:`app.figures.series_style`, perp_engine.palette).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import plotly.graph_objects as go

from perp_engine.config import ZERO_SHOT_TASKS
from perp_engine.palette import CHANCE, DENSE, run_color
from perp_engine.store import RunRow, split_ref

from .axes import log_percent_axis, sparsity_axis, styled
from .figures import charted, dense_lines, prefixer, series_style, span_of
from .runs import method_label, model_label, pruning_label, retraining_label, run_label
from .zero_shot_rows import MEAN, accuracy, chance, end_model, protocol_text, scored, task_title, tasks_of

ACCURACY_AXIS = dict(tickformat=".0%")

Point = tuple[float, float, float | None, str]  # x, value, standard error, run (12, or g12 in the gallery)


def scored_runs(rows: Sequence[RunRow], task: str = MEAN) -> list[RunRow]:
    """The runs the accuracy charts draw: charted (finished, not diverged) and scored on ``task`` (any task for
    the mean)."""
    return [r for r in charted(rows) if scored(r) and (task == MEAN or task in tasks_of(r))]


def zero_shot_prefix(rows: Sequence[RunRow]):
    """Names a run's model and zero-shot protocol, each only when the rows hold several."""
    return prefixer(rows, lambda r: model_label(r.config.get("model", "")), lambda r: f"[{protocol_text(r)}]")


def _merge(points: Sequence[Point]) -> tuple[list[float], list[float], list[float | None], list[str]]:
    """Sorted x; per x the mean value of the runs there (the same setting run again), their mean standard error
    (not shrunk: runs of one setting may share their model and docs), and their ids."""
    by_x: dict[float, list[Point]] = defaultdict(list)
    for point in points:
        by_x[round(point[0], 6)].append(point)
    xs = sorted(by_x)
    values = [sum(p[1] for p in by_x[x]) / len(by_x[x]) for x in xs]
    errors = [None if any(p[2] is None for p in by_x[x]) else sum(p[2] for p in by_x[x]) / len(by_x[x]) for x in xs]
    runs = [", ".join(f"#{i}" for i in sorted((p[3] for p in by_x[x]), key=split_ref)) for x in xs]
    return xs, values, errors, runs


def _error_bars(errors: Sequence[float | None], color: str | None = None) -> dict:
    return dict(type="data", array=list(errors), visible=True, thickness=1.2, width=4, color=color)


def _chance_lines(fig: go.Figure, levels: dict[str, float], span: Sequence[float]) -> None:
    for name, level in sorted(levels.items()):
        fig.add_trace(go.Scatter(x=list(span), y=[level, level], name=name, mode="lines",
                                 line=dict(dash="dot", color=CHANCE, width=1.5),
                                 hovertemplate=f"{name}: %{{y:.1%}}<extra></extra>"))


def _dense_lines(fig: go.Figure, dense: dict[str, list[Point]], span: Sequence[float]) -> None:
    """Each protocol's dense accuracy as a labelled dashed line: its runs' mean, with their mean standard error
    as error bars (as :func:`_merge` merges any setting's runs)."""
    merged = {name: _merge(points) for name, points in dense.items()}
    dense_lines(fig, {name: m[1] for name, m in merged.items()}, list(span), percent=True,
                errors={name: m[2][0] for name, m in merged.items()})


def _headline(task: str) -> str:
    return "mean accuracy over the tasks" if task == MEAN else f"{task_title(task)} accuracy"


def accuracy_vs_sparsity(rows: Sequence[RunRow], task: str = MEAN) -> go.Figure:
    """Zero-shot accuracy against sparsity, as perplexity against sparsity: one solid line per pruning method and
    retraining recipe (final models), one dotted per method (pruned models, before retraining), the dense model as
    a labelled dashed line, and guessing's accuracy dotted grey; per model and zero-shot protocol."""
    done = scored_runs(rows, task)
    prefix = zero_shot_prefix(done)
    pruned: dict[str, list[Point]] = defaultdict(list)
    retrained: dict[str, list[Point]] = defaultdict(list)
    dense: dict[str, list[Point]] = defaultdict(list)
    levels: dict[str, float] = {}
    style: dict[str, dict] = {}
    for r in done:
        cfg = r.config
        pattern = cfg.get("pattern", "unstructured")
        method = f"{prefix(r)}{method_label(cfg)}{'' if pattern == 'unstructured' else f' {pattern}'}"
        x = float(cfg.get("sparsity", 0.0))
        for which, groups, name in (("pruned", pruned, f"{method} · no retraining"),
                                    ("final", retrained, f"{method} · {retraining_label(cfg)}")):
            value, error = accuracy(r, which, task)
            if value is not None:
                groups[name].append((x, value, error, r.ref))
                style[name] = series_style(r, repaired=which == "final")
        if (value := accuracy(r, "dense", task))[0] is not None:
            dense[f"{prefix(r)}dense"].append((0.0, *value, r.ref))
        levels[f"{prefix(r)}chance"] = chance(r, task)
    fig = go.Figure()
    xs_all = []
    for dash, groups in (("dot", pruned), ("solid", retrained)):
        for name, points in sorted(groups.items()):
            xs, ys, errors, ids = _merge(points)
            xs_all += xs
            color = style[name]["color"]
            fig.add_trace(go.Scatter(
                x=xs, y=ys, error_y=_error_bars(errors, color), customdata=ids, name=name, mode="lines+markers",
                line=dict(dash=dash, color=color), marker=dict(symbol=style[name]["symbol"], size=9, color=color),
                hovertemplate=f"{name}<br>sparsity %{{x:.0%}}<br>accuracy %{{y:.1%}}<br>runs %{{customdata}}<extra></extra>"))
    axis = sparsity_axis(xs_all)
    _dense_lines(fig, dense, axis["range"])
    _chance_lines(fig, levels, axis["range"])
    fig.update_xaxes(**axis)
    fig.update_traces(cliponaxis=False)
    fig.update_yaxes(**ACCURACY_AXIS)
    return styled(fig, f"Zero-shot {_headline(task)} vs sparsity", "sparsity (share of pruned weights)",
                  f"{_headline(task)} (higher is better)")


def accuracy_vs_trainable(rows: Sequence[RunRow], task: str = MEAN) -> go.Figure:
    """Zero-shot accuracy after retraining against the percentage of parameters retrained (log x), one marker
    series per pruned model (as perplexity against trainable parameters), with that pruned model's accuracy
    before retraining (dotted, its colour), the dense model's (dashed) and guessing's (dotted grey)."""
    done = [r for r in scored_runs(rows, task)
            if (r.trainable_fraction or 0) > 0 and accuracy(r, "final", task)[0] is not None]
    prefix = zero_shot_prefix(done)
    groups: dict[str, list[RunRow]] = defaultdict(list)
    for r in done:
        groups[f"{prefix(r)}{pruning_label(r.config)}"].append(r)
    span = span_of([100 * r.trainable_fraction for r in done], 1.5) if done else []
    dense: dict[str, list[Point]] = defaultdict(list)
    levels: dict[str, float] = {}
    fig = go.Figure()
    for name, runs in sorted(groups.items()):
        runs = sorted(runs, key=lambda r: r.trainable_fraction)
        finals = [accuracy(r, "final", task) for r in runs]
        pruned_color = series_style(runs[0], repaired=False)["color"]
        fig.add_trace(go.Scatter(
            x=[100 * r.trainable_fraction for r in runs], y=[v for v, _ in finals],
            error_y=_error_bars([e for _, e in finals], DENSE), text=[retraining_label(r.config) for r in runs],
            customdata=[r.ref for r in runs], name=name, legendgroup=name, mode="markers+text",
            textposition="top center",
            marker=dict(size=11, color=[series_style(r, repaired=True)["color"] for r in runs],
                        symbol=series_style(runs[0], repaired=True)["symbol"]),
            hovertemplate="%{text}<br>trainable %{x:.3g}%<br>accuracy %{y:.1%}<br>run #%{customdata}<extra></extra>"))
        before = [v for r in runs if (v := accuracy(r, "pruned", task)[0]) is not None]
        if before:
            level = sum(before) / len(before)
            fig.add_trace(go.Scatter(x=span, y=[level, level], name=f"{name} · before retraining", legendgroup=name,
                                     mode="lines", line=dict(dash="dot", color=pruned_color),
                                     hovertemplate=f"{name} pruned, not retrained: %{{y:.1%}}<extra></extra>"))
        for r in runs:
            if (value := accuracy(r, "dense", task))[0] is not None:
                dense[f"{prefix(r)}dense"].append((0.0, *value, r.ref))
            levels[f"{prefix(r)}chance"] = chance(r, task)
    _dense_lines(fig, dense, span)
    _chance_lines(fig, levels, span)
    if done:
        fig.update_xaxes(**log_percent_axis(*span))
    fig.update_yaxes(**ACCURACY_AXIS)
    return styled(fig, f"Zero-shot {_headline(task)} vs trainable parameters",
                  "trainable parameters (% of the model, log scale)", f"{_headline(task)} after retraining")


def accuracy_per_task(rows: Sequence[RunRow]) -> go.Figure:
    """Each task's accuracy (and the mean over the run's tasks) of the model each run ends with, one bar per run
    with its standard error, the dense model's per zero-shot protocol and guessing's as grey ticks."""
    done = [r for r in scored_runs(rows) if end_model(r)]
    prefix = zero_shot_prefix(done)

    def categories(r: RunRow) -> list[tuple[str, str]]:
        tasks = [t for t in ZERO_SHOT_TASKS if t in tasks_of(r)]
        return [(t, task_title(t)) for t in tasks] + [(MEAN, f"mean of {len(tasks)} tasks")]

    fig = go.Figure()
    dense: dict[str, RunRow] = {}
    levels: dict[tuple[str, str], float] = {}
    for r in done:
        dense.setdefault(f"{prefix(r)}dense", r)
        for task, label in categories(r):
            levels[(label, prefix(r))] = chance(r, task)
    for name, r in sorted(dense.items()):
        cells = [(label, *accuracy(r, "dense", task)) for task, label in categories(r)]
        cells = [c for c in cells if c[1] is not None]
        if cells:
            fig.add_trace(go.Bar(x=[c[0] for c in cells], y=[c[1] for c in cells], error_y=_error_bars([c[2] for c in cells]),
                                 name=name, marker_color=DENSE,
                                 hovertemplate=f"{name}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    labels = {r.id: f"{prefix(r)}{run_label(r)}" for r in done}
    for r in done:
        which = end_model(r)
        cells = [(label, *accuracy(r, which, task)) for task, label in categories(r)]
        fig.add_trace(go.Bar(x=[c[0] for c in cells], y=[c[1] for c in cells], error_y=_error_bars([c[2] for c in cells]),
                             name=labels[r.id], customdata=[r.id] * len(cells), marker_color=run_color(r.id),
                             hovertemplate=f"{labels[r.id]} ({which})<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    if levels:
        fig.add_trace(go.Scatter(x=[label for label, _ in levels], y=list(levels.values()), name="chance",
                                 mode="markers", marker=dict(symbol="line-ew-open", size=28, color=CHANCE,
                                                             line=dict(width=2, color=CHANCE)),
                                 hovertemplate="chance on %{x}: %{y:.0%}<extra></extra>"))
    order = [task_title(t) for t in ZERO_SHOT_TASKS if any(t in tasks_of(r) for r in done)]
    order += sorted({label for label, _ in levels if label not in order})
    fig.update_yaxes(**ACCURACY_AXIS, rangemode="tozero")
    fig.update_xaxes(tickangle=0, automargin=True, categoryorder="array", categoryarray=order)
    return styled(fig, "Zero-shot accuracy per task (the model each run ends with)",
                  y="accuracy (acc or acc_norm, higher is better)", barmode="group")
