"""The figures of the reproduction, built from the runs' numbers (the CLI saves them, the app's Paper page draws
them), and their files: Plotly HTML always, PNG when a Chrome or Chromium is found for kaleido.

Every figure plots exactly the numbers in report.json; missing runs leave gaps, never made-up points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from ..evaluation.learning_curves import relative_block_curve
from ..palette import DENSE, dense_label, method_color, recipe_color
from ..ticks import log_axis
from .decisions import usable
from .results import RunNumbers
from .runset import (
    CLAIM1_RECIPES,
    CLAIM1_SPARSITIES,
    CLAIM2_ADAPTERS,
    CLAIM2_RECIPES,
    CLAIM2_SPARSITIES,
    CLAIM3_ADAPTERS,
    CLAIM3_PRUNINGS,
    CLAIM3_RECIPES,
    CLAIM3_SPARSITY,
    MEMORY_REFERENCE,
    run_key,
    swept_keys,
)
from .wording import NAMES, recipe_label

# pixels of each figure, by name (its file stem); the overview is the README's figure
SIZE = {"overview": (1500, 640), "claim1": (1300, 480), "claim2": (1100, 480), "claim3": (1200, 480),
        "curves1": (1300, 460), "curves2": (1300, 460), "curves3": (1200, 460)}
LOWER_SPARSITY = "/"  # claim 2's bars: the highest sparsity solid, any lower one hatched
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=70, b=60), legend=dict(title=None))
PNG_SCALE = 2
HTML_PLOTLYJS = "cdn"  # an HTML figure loads plotly.js from its CDN; the PNGs and the app's page work offline


def build_figures(runs: Mapping[str, RunNumbers]) -> dict:
    """Every figure of the report, by name (its file stem; see SIZE)."""
    return {"overview": overview(runs), "claim1": claim1_figure(runs), "claim2": claim2_figure(runs),
            "claim3": claim3_figure(runs), "curves1": claim1_curves(runs), "curves2": claim2_curves(runs),
            "curves3": claim3_curves(runs)}


def _ppl(run: RunNumbers | None) -> float | None:
    return run.end_ppl if usable(run) else None


def _dense(runs: Mapping[str, RunNumbers]) -> float | None:
    return next((r.dense_ppl for r in runs.values() if r.done and r.dense_ppl), None)


def _color(preset: str) -> str:
    """A recipe's colour; the reproduction prunes with magnitude where it does not name the method, so a model
    that is not repaired (``none``) takes magnitude's colour."""
    return method_color("magnitude") if preset == "none" else recipe_color(preset)


def _hline(fig, level: float | None, legend: bool = True, **where) -> None:
    """The dense model's perplexity as a dashed line on a log axis, labelled with its value over its right end and
    named in the legend (an annotation's y on a log axis is the log10 of the value)."""
    import plotly.graph_objects as go

    if level is None:
        return
    fig.add_hline(y=level, line_dash="dash", line_color=DENSE, **where)
    fig.add_annotation(x=1, xref="x domain", y=math.log10(level), text=dense_label(level), showarrow=False,
                       xanchor="right", yanchor="bottom", font=dict(color=DENSE, size=12), bgcolor="rgba(255,255,255,0.85)",
                       **where)
    if legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(dash="dash", color=DENSE),
                                 name=f"dense model {level:.2f}", legendgroup="dense"), **where)


def _fit_log_axis(fig, dense: float | None, **where) -> None:
    """A log y axis that shows the dense line and every bar or point of the panel ``where`` with a little room
    (Plotly's autorange on log bars starts at the lowest bar and would hide the dense line below it), ticked by
    the one rule of every log axis (1-2-5 values, k and M)."""
    values = [v for trace in fig.select_traces(**where) for v in (trace.y or ()) if v is not None and v > 0]
    values += [dense] if dense else []
    if values:
        fig.update_yaxes(**log_axis(min(values), max(values), pad=0.06), **where)


def _claim1_lines(fig, runs: Mapping[str, RunNumbers], legend: bool = True, **where) -> None:
    for preset in CLAIM1_RECIPES:
        keys = [run_key("magnitude", s, "unstructured", preset) for s in CLAIM1_SPARSITIES]
        fig.add_trace(_scatter(CLAIM1_SPARSITIES, [_ppl(runs.get(k)) for k in keys], keys, preset, legend,
                               dash="dot" if preset == "none" else "solid"), **where)


def _scatter(xs, ys, keys, preset: str, legend: bool, dash: str = "solid"):
    import plotly.graph_objects as go

    return go.Scatter(x=list(xs), y=ys, customdata=keys, name=NAMES[preset], legendgroup=preset, showlegend=legend,
                      mode="lines+markers", line=dict(color=_color(preset), dash=dash),
                      hovertemplate="%{customdata}<br>perplexity %{y:.2f}<extra></extra>")


def _bars(xs, ys, keys, preset: str, legend: bool, name: str | None = None, colors=None):
    """Bars of one recipe, in its colour (or ``colors``, one per bar)."""
    import plotly.graph_objects as go

    return go.Bar(x=list(xs), y=list(ys), customdata=list(keys), name=name or NAMES[preset], legendgroup=preset,
                  showlegend=legend, marker_color=colors or _color(preset),
                  hovertemplate="%{customdata}<br>%{y:.4g}<extra></extra>")


def _memory(run: RunNumbers | None) -> float | None:
    return run.train_peak_mb if run is not None and run.done else None


def _step_time(run: RunNumbers | None) -> float | None:
    return run.seconds_per_step if run is not None and run.done else None


def claim1_figure(runs: Mapping[str, RunNumbers]):
    """Perplexity against sparsity per recipe (left) and the cost of each recipe at 50%: train-stage peak memory
    and seconds per step (right)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, column_widths=[0.5, 0.25, 0.25], horizontal_spacing=0.08,
                        subplot_titles=("Perplexity after magnitude pruning and repair", "Train-stage peak memory (MiB)",
                                        "Seconds per step"))
    _claim1_lines(fig, runs, row=1, col=1)
    _hline(fig, _dense(runs), row=1, col=1)
    _fit_log_axis(fig, _dense(runs), row=1, col=1)
    for preset in CLAIM1_RECIPES[1:]:
        key = run_key("magnitude", 0.5, "unstructured", preset)
        for col, value in ((2, _memory), (3, _step_time)):
            fig.add_trace(_bars([NAMES[preset]], [value(runs.get(key))], [key], preset, False), row=1, col=col)
    fig.update_xaxes(tickformat=".0%", title_text="sparsity", row=1, col=1)
    fig.update_yaxes(title_text="perplexity (log scale, lower is better)", row=1, col=1)
    fig.update_layout(title="Claim 1: a tiny subset against full retraining (equal steps)", height=SIZE["claim1"][1],
                      **LAYOUT)
    return fig


def claim2_figure(runs: Mapping[str, RunNumbers]):
    """Final perplexity of each recipe at 60% and 70% (bars, log scale); plain LoRA is marked unmerged."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for sparsity in CLAIM2_SPARSITIES:
        pattern = "" if sparsity == max(CLAIM2_SPARSITIES) else LOWER_SPARSITY
        keys = [run_key("magnitude", sparsity, "unstructured", p) for p in CLAIM2_RECIPES]
        labels = [NAMES[p] + (" (unmerged)" if runs.get(k) and runs[k].unmerged else "") for p, k in zip(CLAIM2_RECIPES, keys)]
        fig.add_trace(go.Bar(x=labels, y=[_ppl(runs.get(k)) for k in keys], customdata=keys, name=f"{sparsity:.0%} sparsity",
                             marker=dict(color=[_color(p) for p in CLAIM2_RECIPES], pattern_shape=pattern,
                                         pattern_fillmode="replace" if pattern else None, line=dict(color=DENSE)),
                             hovertemplate="%{customdata}<br>perplexity %{y:.2f}<extra></extra>"))
    _hline(fig, _dense(runs))
    _fit_log_axis(fig, _dense(runs))
    fig.update_yaxes(title_text="perplexity (log scale, lower is better)")
    fig.update_layout(title="Claim 2: adapters on the pruned layers at high sparsity (magnitude)", barmode="group",
                      height=SIZE["claim2"][1], **LAYOUT)
    return fig


def claim3_figure(runs: Mapping[str, RunNumbers]):
    """Perplexity of each pruned model before and after reconstruction (left) and the train-stage peak memory of
    each reconstruction against full retraining's (right)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.1,
                        subplot_titles=("Perplexity (log scale)", "Train-stage peak memory (MiB)"))
    _claim3_bars(fig, runs, legend=True, row=1, col=1)
    _hline(fig, _dense(runs), row=1, col=1)
    _fit_log_axis(fig, _dense(runs), row=1, col=1)
    for preset in CLAIM3_RECIPES[1:]:  # the highest over the four pruned models (they differ by a few MiB)
        known = [m for m in (_memory(runs.get(run_key(mp[0], CLAIM3_SPARSITY, mp[1], preset))) for mp in CLAIM3_PRUNINGS)
                 if m is not None]
        fig.add_trace(_bars([f"reconstruct: {NAMES[preset]}"], [max(known) if known else None], [preset], preset, False),
                      row=1, col=2)
    reference = run_key(*MEMORY_REFERENCE)
    fig.add_trace(_bars([NAMES["full-ft"]], [_memory(runs.get(reference))], [reference], "full-ft", False), row=1, col=2)
    fig.update_yaxes(title_text="perplexity (lower is better)", row=1, col=1)
    fig.update_layout(title="Claim 3: block-wise reconstruction after Wanda and SparseGPT", barmode="group",
                      height=SIZE["claim3"][1], **LAYOUT)
    return fig


def _pruning_label(method: str, pattern: str) -> str:
    return f"{method} {pattern if pattern != 'unstructured' else f'{CLAIM3_SPARSITY:.0%}'}"


def _claim3_bars(fig, runs: Mapping[str, RunNumbers], legend: bool, none_in_legend: bool = True, **where) -> None:
    labels = [_pruning_label(m, p) for m, p in CLAIM3_PRUNINGS]
    for preset in CLAIM3_RECIPES:  # not repaired: each pruned model in its method's colour
        keys = [run_key(m, CLAIM3_SPARSITY, p, preset) for m, p in CLAIM3_PRUNINGS]
        fig.add_trace(_bars(labels, [_ppl(runs.get(k)) for k in keys], keys, preset,
                            legend and (none_in_legend or preset != "none"),
                            name="no repair" if preset == "none" else f"reconstruct: {NAMES[preset]}",
                            colors=[method_color(m) for m, _ in CLAIM3_PRUNINGS] if preset == "none" else None),
                      **where)


def overview(runs: Mapping[str, RunNumbers]):
    """The three claims side by side: the README's figure."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.06,
                        subplot_titles=("1. Subsets vs full retraining", "2. Adapters at 70% (magnitude)",
                                        "3. Reconstruction after pruning"))
    _claim1_lines(fig, runs, row=1, col=1)
    keys = [run_key("magnitude", CLAIM2_SPARSITIES[-1], "unstructured", p) for p in CLAIM2_RECIPES]
    for preset, key in zip(CLAIM2_RECIPES, keys):
        fig.add_trace(_bars([NAMES[preset]], [_ppl(runs.get(key))], [key], preset, preset not in CLAIM1_RECIPES),
                      row=1, col=2)
    _claim3_bars(fig, runs, legend=True, row=1, col=3, none_in_legend=False)
    dense = _dense(runs)
    for col in (1, 2, 3):
        _hline(fig, dense, legend=col == 1, row=1, col=col)
        _fit_log_axis(fig, dense, row=1, col=col)
    fig.update_xaxes(tickformat=".0%", title_text="sparsity", row=1, col=1)
    fig.update_yaxes(title_text="perplexity (log scale, lower is better)", row=1, col=1)
    fig.update_layout(title="PERP's three claims, reproduced", barmode="group", height=SIZE["overview"][1],
                      **{**LAYOUT, "legend": dict(title=None, orientation="h", yanchor="top", y=-0.28, x=0)})
    return fig


# -- learning curves ------------------------------------------------------------------------------------------


def _curve_trace(run: RunNumbers, x: str, preset: str, legend: bool, name: str, dash: str = "solid"):
    """One run's held-out perplexity curve against ``x`` ("step" or "seconds" of training)."""
    import plotly.graph_objects as go

    return go.Scatter(x=[p[x] for p in run.curve], y=[p["ppl"] for p in run.curve], name=name, legendgroup=name,
                      showlegend=legend, mode="lines+markers", line=dict(color=_color(preset), dash=dash),
                      customdata=[run.key] * len(run.curve),
                      hovertemplate="%{customdata}<br>" + x + " %{x:.4g}<br>perplexity %{y:.2f}<extra></extra>")


def _curve_panels(fig, runs: Mapping[str, RunNumbers], presets, sparsity: float, x: str, legend: bool, **where) -> None:
    """Each preset's runs at magnitude ``sparsity`` that have a curve (every rate of a swept one, named by
    :func:`recipe_label`; the preset's rate solid, the others dotted and dashed)."""
    for preset in presets:
        drawn = [run for key in swept_keys(preset, sparsity) if (run := runs.get(key)) and run.done and run.curve]
        for i, run in enumerate(drawn):
            fig.add_trace(_curve_trace(run, x, preset, legend, recipe_label(run),
                                       dash="solid" if i == 0 else ("dot", "dash")[i % 2]), **where)


def claim1_curves(runs: Mapping[str, RunNumbers]):
    """Held-out perplexity during retraining, against the step, at each sparsity of claim 1 (every rate of a sweep)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(CLAIM1_SPARSITIES), horizontal_spacing=0.08,
                        subplot_titles=[f"magnitude {s:.0%}" for s in CLAIM1_SPARSITIES])
    for col, sparsity in enumerate(CLAIM1_SPARSITIES, start=1):
        _curve_panels(fig, runs, CLAIM1_RECIPES[1:], sparsity, "step", col == 1, row=1, col=col)
        _hline(fig, _dense(runs), legend=col == 1, row=1, col=col)
        _fit_log_axis(fig, _dense(runs), row=1, col=col)
        fig.update_xaxes(title_text="optimizer step", row=1, col=col)
    fig.update_yaxes(title_text="held-out perplexity (log scale)", row=1, col=1)
    fig.update_layout(title="Claim 1: learning curves (held-out perplexity, measured every few steps)",
                      height=SIZE["curves1"][1], **LAYOUT)
    return fig


def claim2_curves(runs: Mapping[str, RunNumbers]):
    """Held-out perplexity at claim 2's highest sparsity against the step (left) and the training seconds (right)."""
    from plotly.subplots import make_subplots

    sparsity = CLAIM2_SPARSITIES[-1]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=(f"magnitude {sparsity:.0%}: against steps", "against training seconds"))
    presets = ("perp", *CLAIM2_ADAPTERS, "perp-lora", "full-ft")
    for col, x in ((1, "step"), (2, "seconds")):
        _curve_panels(fig, runs, presets, sparsity, x, col == 1, row=1, col=col)
        _hline(fig, _dense(runs), legend=col == 1, row=1, col=col)
        _fit_log_axis(fig, _dense(runs), row=1, col=col)
        fig.update_xaxes(title_text="optimizer step" if x == "step" else "training seconds (curve points excluded)",
                         row=1, col=col)
    fig.update_yaxes(title_text="held-out perplexity (log scale)", row=1, col=1)
    fig.update_layout(title="Claim 2: learning curves of the adapters against perp and full retraining",
                      height=SIZE["curves2"][1], **LAYOUT)
    return fig


def claim3_curves(runs: Mapping[str, RunNumbers]):
    """Each reconstruction's block curves: the mean over blocks of the held-out block error relative to the block's
    error before its training, against the step of that block's training."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for method, pattern in CLAIM3_PRUNINGS:
        for preset in CLAIM3_ADAPTERS:
            key = run_key(method, CLAIM3_SPARSITY, pattern, preset)
            run = runs.get(key)
            if run is None or not run.done:
                continue
            steps, means = relative_block_curve(run.block_curves)
            fig.add_trace(go.Scatter(x=steps, y=means, name=f"{_pruning_label(method, pattern)} {NAMES[preset]}",
                                     mode="lines+markers", line=dict(color=_color(preset),
                                                                     dash="solid" if method == "wanda" else "dot"),
                                     marker=dict(symbol="circle" if pattern == "unstructured" else "square"),
                                     hovertemplate=key + "<br>step %{x}<br>error / error before %{y:.3f}<extra></extra>"))
    fig.add_hline(y=1.0, line_dash="dash", line_color=DENSE)
    fig.update_xaxes(title_text="optimizer step within each block")
    fig.update_yaxes(title_text="held-out block error / before training (mean over blocks)")
    fig.update_layout(title="Claim 3: block-wise learning curves (held-out windows)", height=SIZE["curves3"][1],
                      **LAYOUT)
    return fig


# -- files ----------------------------------------------------------------------------------------------------


def find_browser() -> str | None:
    """The Chrome or Chromium kaleido would start: its own download, ``$BROWSER_PATH``, the ``PATH`` (Debian's
    ``chromium`` from ``scripts/setup.sh --e2e`` is found there) or a usual install path; None if there is none
    or kaleido is not installed."""
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return None
    return Chromium.find_browser(skip_local=False)


def write_figures(figures: Mapping[str, object], folder: Path) -> tuple[dict[str, dict], str | None]:
    """Write each figure as ``<name>.html`` and, when a browser is found, ``<name>.png``; returns the file names
    by figure and, when no PNG was written, why."""
    files = {}
    pngs = {name: folder / f"{name}.png" for name in figures}
    for name, fig in figures.items():
        fig.write_html(folder / f"{name}.html", include_plotlyjs=HTML_PLOTLYJS, full_html=True)
        files[name] = {"html": f"{name}.html", "png": None}
        pngs[name].unlink(missing_ok=True)  # never leave an older report's picture beside this report
    browser = find_browser()
    if browser is None:
        return files, ("PNG figures not written: no Chrome or Chromium was found for kaleido (install Debian's "
                       "chromium, `bash scripts/setup.sh --e2e`, or set BROWSER_PATH); the HTML figures are complete")
    import kaleido

    try:
        kaleido.write_fig_from_object_sync(
            [{"fig": fig.to_dict(), "path": pngs[name],
              "opts": {"format": "png", "width": SIZE[name][0], "height": SIZE[name][1], "scale": PNG_SCALE}}
             for name, fig in figures.items()],
            kopts={"path": browser, "mathjax": False}, cancel_on_error=True)
    except Exception as err:  # a browser that fails to start or render: the report and the HTML figures stand
        return files, f"PNG figures not written: kaleido failed with {browser} ({type(err).__name__}: {err})"
    missing = [name for name, path in pngs.items() if not path.is_file()]
    for name in figures:
        files[name]["png"] = None if name in missing else pngs[name].name
    return files, f"PNG figures not written by kaleido: {', '.join(missing)}" if missing else None
