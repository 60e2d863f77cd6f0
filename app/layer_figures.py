"""Plotly figures inside runs, layer by layer: the two layer-wise errors (local and accumulated), before and
after repair or their change, sparsity, and block outputs. Plain functions: no Streamlit here.

Layer records are the store's dicts (``store.layers(run_id)``): ``recon_error`` / ``recon_error_after`` hold the
local error after pruning / after repair, ``drift`` / ``drift_after`` the accumulated error. Block records
(``store.blocks``) hold ``loss_before`` / ``loss_after`` (local) and ``drift_before`` / ``drift_after``. Any of
them may be missing or None: prune-only runs have no "after", runs recorded before local errors existed have
only the accumulated ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perp_engine.palette import DENSE, run_style
from perp_engine.ticks import log_ticks, tick_label

from .axes import HEIGHT, PLAIN_LAYOUT, block_ticks, legend_below, percent_axis, ratio_axis, styled, value_axis

KIND_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
              "c_attn", "attn.c_proj", "c_fc", "mlp.c_proj", "fc1", "fc2", "out_proj", "dense")
UNIFORM = 5e-4  # sparsities closer than this are "all the same"
PANEL_COLUMNS = 4
PANEL_TITLE = 28  # characters of a run's label in a heatmap panel's title (the full label is over the panels)
ROW_GAP_PX = 90  # between two rows of heatmaps: the upper row's column labels and the lower row's titles
TOP_PX = 100  # above the heatmaps: the title, its line of run labels and the first row's panel titles
RUN_LINE = 150  # characters of the run labels' line under a heatmap figure's title (fits 1400 px)


@dataclass(frozen=True)
class Quantity:
    """One layer-wise error: its name in texts and the record fields that hold it before and after repair."""

    key: str
    title: str
    short: str  # on the switch
    layer_fields: tuple[str, str]
    block_fields: tuple[str, str]


QUANTITIES = {
    "local": Quantity("local", "local error", "local", ("recon_error", "recon_error_after"), ("loss_before", "loss_after")),
    "drift": Quantity("drift", "accumulated error (drift)", "accumulated", ("drift", "drift_after"),
                      ("drift_before", "drift_after")),
}
VIEWS = {  # in chart titles
    "both": "after pruning and after repair",
    "before": "after pruning",
    "after": "after repair",
    "change": "change: after repair ÷ after pruning",
}
VIEW_CHOICES = {"both": "both", "before": "after pruning", "after": "after repair", "change": "change (after ÷ before)"}
_WHAT = {"before": "after pruning", "after": "after repair"}


def _value(record: Mapping, field: str) -> float | None:
    value = record.get(field)
    return None if value is None or not math.isfinite(value) else float(value)


def _ratio(before: float | None, after: float | None) -> float | None:
    return after / before if before and after is not None and before > 0 and after > 0 else None


def has_values(records: Sequence[Mapping], quantity: str, which: str, blocks: bool = False) -> bool:
    """Whether any record holds ``quantity`` (local or drift) for ``which`` (before or after)."""
    q = QUANTITIES[quantity]
    field = (q.block_fields if blocks else q.layer_fields)[which == "after"]
    return any(_value(r, field) is not None for r in records)


def missing_notes(records_by_run: Mapping[str, Sequence[Mapping]], quantity: str, view: str,
                  blocks: bool = False) -> list[str]:
    """One sentence per run that cannot show ``quantity`` in ``view``, saying why."""
    notes = []
    other = QUANTITIES["drift" if quantity == "local" else "local"]
    for label, records in records_by_run.items():
        if not records:
            notes.append(f"{label}: no per-layer measurements were recorded.")
        elif not has_values(records, quantity, "before", blocks):
            if quantity == "local" and has_values(records, "drift", "before", blocks):
                notes.append(f"{label} was recorded before local errors existed: only the accumulated error was "
                             "measured (switch to it above).")
            else:
                notes.append(f"{label} has no {QUANTITIES[quantity].title}; try the {other.title}.")
        elif view in ("after", "change") and not has_values(records, quantity, "after", blocks):
            notes.append(f"{label} was not repaired (prune only): it has no error after repair.")
    return notes


# -- layer tables ----------------------------------------------------------------------------------------------


def layer_columns(layers: Sequence[Mapping]) -> list[str]:
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


def layer_matrix(layers: Sequence[Mapping], value: str) -> tuple[list[int], list[str], list[list]]:
    """``(blocks, columns, z)`` with ``z[i][j]`` the ``value`` of block ``blocks[i]``'s linear ``columns[j]``."""
    labels = layer_columns(layers)
    columns = _order(labels)
    blocks = sorted({rec["block"] for rec in layers})
    row_of = {b: i for i, b in enumerate(blocks)}
    col_of = {c: j for j, c in enumerate(columns)}
    z: list[list] = [[None] * len(columns) for _ in blocks]
    for rec, label in zip(layers, labels):
        z[row_of[rec["block"]]][col_of[label]] = rec.get(value)
    return blocks, columns, z


def _short(column: str) -> str:
    return column.removesuffix("_proj")


def _n_blocks(records_by_run: Mapping[str, Sequence[Mapping]]) -> int:
    return 1 + max((rec["block"] for records in records_by_run.values() for rec in records), default=0)


# -- heatmaps --------------------------------------------------------------------------------------------------


def _cells(layers: Sequence[Mapping], quantity: Quantity, which: str) -> tuple[list[int], list[str], list[list], list[list]]:
    """``(blocks, columns, values, names)``: the plotted value of each cell (the error, or after ÷ before for
    ``change``) and the full layer name behind it."""
    before, after = quantity.layer_fields
    blocks, columns, names = layer_matrix(layers, "name")
    row_of = {b: i for i, b in enumerate(blocks)}
    col_of = {c: j for j, c in enumerate(columns)}
    values: list[list] = [[None] * len(columns) for _ in blocks]
    for rec, label in zip(layers, layer_columns(layers)):
        if which == "change":
            value = _ratio(_value(rec, before), _value(rec, after))
        else:
            value = _value(rec, after if which == "after" else before)
        values[row_of[rec["block"]]][col_of[label]] = value
    return blocks, columns, values, names


def _log10(z: list[list]) -> list[list]:
    return [[math.log10(v) if v is not None and v > 0 else None for v in row] for row in z]


def _hover(run: str, blocks, columns, values, names, what: str, change: bool) -> list[list[str]]:
    def one(value):
        if value is None:
            return "not measured"
        return f"× {value:.3g} (after ÷ before)" if change else f"{value:.4g}"
    return [[f"{run}<br>block {b} · {_short(c)} ({name})<br>{what}: {one(v)}" if name else ""
             for c, v, name in zip(columns, row, name_row)]
            for b, row, name_row in zip(blocks, values, names)]


def error_heatmaps(layers_by_run: Mapping[str, Sequence[Mapping]], quantity: str = "local", view: str = "both") -> go.Figure:
    """Per-layer error, block (rows) by linear type (columns), one panel per run and state. Colour is log10 of
    the error on one shared scale; the ``change`` view colours log10(after ÷ before) on a diverging scale
    (blue: repair lowered the error, red: raised it)."""
    q = QUANTITIES[quantity]
    which = ("before", "after") if view == "both" else (view,)
    panels = []
    for label, layers in layers_by_run.items():
        for w in which:
            needs = "after" if w in ("after", "change") else "before"
            if layers and has_values(layers, quantity, needs) and (w != "change" or has_values(layers, quantity, "before")):
                panels.append((label, w, layers))
    change = view == "change"
    cols = min(len(panels), 2) or 1
    rows = max(1, math.ceil(len(panels) / cols))
    height = HEIGHT + 380 * (rows - 1)
    titles = [f"{_clip(label, PANEL_TITLE)} · {VIEW_CHOICES[w] if w == 'change' else _WHAT[w]}" for label, w, _ in panels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or None, horizontal_spacing=0.1,
                        vertical_spacing=ROW_GAP_PX / (height - TOP_PX - PLAIN_LAYOUT["margin"]["b"]))
    everything = []
    for i, (label, w, layers) in enumerate(panels):
        blocks, columns, values, names = _cells(layers, q, w)
        everything += [v for row in values for v in row if v is not None and v > 0]
        what = f"{q.title} {VIEWS[w] if change else _WHAT[w]}"
        fig.add_trace(go.Heatmap(z=_log10(values), customdata=values, x=[_short(c) for c in columns], y=blocks,
                                 name=f"{label} · {w}", coloraxis="coloraxis", xgap=1, ygap=1,
                                 text=_hover(label, blocks, columns, values, names, what, change),
                                 hovertemplate="%{text}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(**PLAIN_LAYOUT)
    fig.update_layout(title=_title_with_runs(f"{q.title.capitalize()} per layer ({VIEWS[view]})", list(layers_by_run)),
                      height=height, margin=dict(t=TOP_PX),
                      coloraxis=_change_colours(everything) if change else _error_colours(everything, q.title))
    fig.update_yaxes(title_text="block", autorange="reversed", **block_ticks(_n_blocks(layers_by_run)))
    return fig


def _clip(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


def _title_with_runs(title: str, labels: Sequence[str]) -> str:
    """The figure's title, with the runs' full labels on a second, smaller line when a panel title shortened one."""
    if all(len(label) <= PANEL_TITLE for label in labels):
        return title
    return f"{title}<br><sup>{'; '.join(_clip(label, RUN_LINE // max(1, len(labels))) for label in labels)}</sup>"


def _error_colours(values: Sequence[float], title: str) -> dict:
    axis = dict(colorscale="Viridis", colorbar=dict(title=title.split(" (")[0]))
    if not values:
        return axis
    low, high = min(values), max(values)
    ticks = log_ticks(low, high) if high > low else [low]
    axis["colorbar"].update(tickmode="array", tickvals=[math.log10(t) for t in ticks], ticktext=[tick_label(t) for t in ticks])
    return axis


def _change_colours(ratios: Sequence[float]) -> dict:
    """Diverging colours centred on "unchanged" (ratio 1), symmetric so that ÷2 and ×2 look equally strong."""
    reach = max([abs(math.log10(r)) for r in ratios] + [math.log10(2)])
    ticks = [t for t in (0.01, 0.1, 0.2, 0.5, 1, 2, 5, 10, 100) if abs(math.log10(t)) <= reach + 1e-9]
    return dict(colorscale="RdBu_r", cmid=0, cmin=-reach, cmax=reach,
                colorbar=dict(title="after ÷ before", tickmode="array", tickvals=[math.log10(t) for t in ticks],
                              ticktext=[f"{tick_label(t)}×" for t in ticks]))


# -- along the depth -------------------------------------------------------------------------------------------


def _panels(layers_by_run: Mapping[str, Sequence[Mapping]]) -> tuple[list[str], int, int]:
    columns = _order([c for layers in layers_by_run.values() for c in layer_columns(layers)])
    cols = min(PANEL_COLUMNS, max(1, len(columns)))
    return columns, cols, max(1, math.ceil(len(columns) / cols))


def layer_lines(layers_by_run: Mapping[str, Sequence[Mapping]], quantity: str = "local", view: str = "both") -> go.Figure:
    """One panel per linear type, block on x, sharing one y axis. After pruning is red, after repair blue (each
    run its own shade, dash and symbol); ``change`` draws after ÷ before per run, around a dashed line at 1
    (unchanged)."""
    q = QUANTITIES[quantity]
    columns, cols, rows = _panels(layers_by_run)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_short(c) for c in columns] or None,
                        shared_yaxes=True, horizontal_spacing=0.03, vertical_spacing=0.16)
    plotted = []
    shown: set[str] = set()
    for r, (label, layers) in enumerate(layers_by_run.items()):
        labels = layer_columns(layers)
        for j, column in enumerate(columns):
            recs = sorted((rec for rec, lab in zip(layers, labels) if lab == column), key=lambda rec: rec["block"])
            for name, ys, color in _series(label, recs, q.layer_fields, view, r):
                if all(y is None for y in ys):
                    continue
                plotted += ys
                fig.add_trace(go.Scatter(
                    x=[rec["block"] for rec in recs], y=ys, name=name, legendgroup=name, showlegend=name not in shown,
                    mode="lines+markers", line=dict(color=color, dash=run_style(r)["dash"]), meta=column,
                    marker=dict(symbol=run_style(r)["symbol"], size=5), customdata=[rec["name"] for rec in recs],
                    hovertemplate=f"{name}<br>block %{{x}} · {_short(column)} (%{{customdata}})<br>%{{y:.4g}}<extra></extra>"),
                    row=j // cols + 1, col=j % cols + 1)
                shown.add(name)
    fig.update_layout(title=f"{q.title.capitalize()} by block ({VIEWS[view]})", height=HEIGHT + 220 * (rows - 1),
                      **PLAIN_LAYOUT)
    legend_below(fig)
    fig.update_xaxes(**block_ticks(_n_blocks(layers_by_run), most=5))
    fig.update_xaxes(title_text="block", row=rows)
    fig.update_yaxes(**(ratio_axis(plotted) if view == "change" else value_axis(plotted)))
    _unchanged_line(fig, view)
    return fig


def _series(label: str, records: Sequence[Mapping], fields: tuple[str, str], view: str, run: int):
    """``(name, values, colour)`` of each line one run draws in ``view``: after pruning in its shade of red,
    after repair in its shade of blue, or after ÷ before in its line colour."""
    before, after = fields
    style = run_style(run)
    if view == "change":
        yield (f"{label} · after ÷ before", [_ratio(_value(rec, before), _value(rec, after)) for rec in records],
               style["line"])
        return
    for which, field in (("before", before), ("after", after)):
        if view in (which, "both"):
            yield f"{label} · {_WHAT[which]}", [_value(rec, field) for rec in records], style[which]


def _unchanged_line(fig: go.Figure, view: str) -> None:
    if view == "change":
        fig.add_hline(y=1.0, line_dash="dash", line_color=DENSE, line_width=1)


# -- sparsity --------------------------------------------------------------------------------------------------


def uniform_sparsity(layers: Sequence[Mapping]) -> str | None:
    """``all 210 layers at 50.0%`` when every layer has the same sparsity (within 0.05%), else None."""
    values = [rec["sparsity"] for rec in layers if rec.get("sparsity") is not None]
    if values and max(values) - min(values) < UNIFORM:
        return f"all {len(values)} layers at {sum(values) / len(values):.1%}"
    return None


def sparsity_heatmaps(layers_by_run: Mapping[str, Sequence[Mapping]]) -> go.Figure:
    """Per-layer sparsity, block by linear type, one panel per run whose layers differ; the colour range spans
    the sparsities present, so small differences show (uniform runs are said in words, see uniform_sparsity)."""
    varied = {label: layers for label, layers in layers_by_run.items() if layers and not uniform_sparsity(layers)}
    labels = list(varied)
    fig = make_subplots(rows=1, cols=max(1, len(labels)), subplot_titles=[_clip(label, PANEL_TITLE) for label in labels]
                        or None, horizontal_spacing=0.1)
    values = [rec["sparsity"] for layers in varied.values() for rec in layers]
    for i, label in enumerate(labels):
        blocks, columns, z = layer_matrix(varied[label], "sparsity")
        _, _, names = layer_matrix(varied[label], "name")
        text = [[f"{label}<br>block {b} · {_short(c)} ({n})<br>sparsity {v:.2%}" if v is not None else ""
                 for c, v, n in zip(columns, row, name_row)] for b, row, name_row in zip(blocks, z, names)]
        fig.add_trace(go.Heatmap(z=z, x=[_short(c) for c in columns], y=blocks, name=label, coloraxis="coloraxis",
                                 xgap=1, ygap=1, text=text, hovertemplate="%{text}<extra></extra>"),
                      row=1, col=i + 1)
    colours = dict(colorscale="Blues", colorbar=dict(title="sparsity", tickformat=".1%"))
    if values:
        colours.update(cmin=min(values), cmax=max(values))
    fig.update_layout(**PLAIN_LAYOUT)
    fig.update_layout(title=_title_with_runs("Sparsity per layer", labels), height=HEIGHT, coloraxis=colours,
                      margin=dict(t=TOP_PX))
    fig.update_yaxes(title_text="block", autorange="reversed", **block_ticks(_n_blocks(layers_by_run)))
    return fig


def sparsity_lines(layers_by_run: Mapping[str, Sequence[Mapping]]) -> go.Figure:
    """Sparsity of each layer along the depth, one panel per linear type, on a 0-100% axis."""
    columns, cols, rows = _panels(layers_by_run)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_short(c) for c in columns] or None,
                        shared_yaxes=True, horizontal_spacing=0.03, vertical_spacing=0.16)
    for r, (label, layers) in enumerate(layers_by_run.items()):
        style = run_style(r)
        labels = layer_columns(layers)
        for j, column in enumerate(columns):
            recs = sorted((rec for rec, lab in zip(layers, labels) if lab == column), key=lambda rec: rec["block"])
            fig.add_trace(go.Scatter(
                x=[rec["block"] for rec in recs], y=[rec["sparsity"] for rec in recs], name=label, legendgroup=label,
                showlegend=j == 0, mode="lines+markers", meta=column, customdata=[rec["name"] for rec in recs],
                line=dict(color=style["line"], dash=style["dash"]), marker=dict(symbol=style["symbol"], size=5),
                hovertemplate=f"{label}<br>block %{{x}} · {_short(column)} (%{{customdata}})<br>sparsity %{{y:.2%}}<extra></extra>"),
                row=j // cols + 1, col=j % cols + 1)
    fig.update_layout(title="Sparsity by block", height=HEIGHT + 220 * (rows - 1), **PLAIN_LAYOUT)
    legend_below(fig)
    fig.update_xaxes(**block_ticks(_n_blocks(layers_by_run), most=5))
    fig.update_xaxes(title_text="block", row=rows)
    fig.update_yaxes(**percent_axis())
    return fig


@dataclass(frozen=True)
class BlockAllocation:
    """One run's sparsity per block: the allocation's target (``RunResult.block_sparsity``; a run recorded before
    allocations existed was uniform, so its target is the run's sparsity in every block), the achieved share of
    zeros (its linears' sparsities weighted by their sizes) and, for OWL, each dense block's outlier share in %."""

    allocation: str
    sparsity: float  # the run's target
    blocks: list[int]
    target: list[float]
    achieved: list[float | None]
    outlier_share: list[float]


def block_allocation(config: Mapping, result: Mapping | None, layers: Sequence[Mapping]) -> BlockAllocation:
    """The run's :class:`BlockAllocation` from its config, its result dict (may lack the allocation fields) and its
    layer records."""
    result = result or {}
    kept: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for rec in layers:
        if rec.get("sparsity") is not None:
            kept[rec["block"]].append((rec["sparsity"], rec.get("numel") or 1))
    target = list(result.get("block_sparsity") or [])
    blocks = list(range(len(target))) if target else sorted(kept)
    sparsity = float(config.get("sparsity", 0.0))
    achieved = [sum(s * n for s, n in kept[b]) / sum(n for _, n in kept[b]) if kept.get(b) else None for b in blocks]
    return BlockAllocation(allocation=config.get("allocation", "uniform"), sparsity=sparsity, blocks=blocks,
                           target=target or [sparsity] * len(blocks), achieved=achieved,
                           outlier_share=list(result.get("outlier_share") or []))


def block_sparsity_figure(by_run: Mapping[str, BlockAllocation]) -> go.Figure:
    """Each block's sparsity, target (dotted) and achieved (solid, markers), one colour per run; OWL runs add
    their outlier share per block as light bars on a second axis."""
    shares = any(a.outlier_share for a in by_run.values())
    fig = make_subplots(specs=[[{"secondary_y": shares}]])
    values = []
    for r, (label, a) in enumerate(by_run.items()):
        style = run_style(r)
        color = style["line"]
        if a.outlier_share:
            fig.add_trace(go.Bar(x=a.blocks, y=a.outlier_share, name=f"{label} · outlier share", marker_color=color,
                                 opacity=0.3, hovertemplate=f"{label}<br>block %{{x}}: %{{y:.2f}}% of its Wanda scores "
                                                            "are outliers<extra></extra>"), secondary_y=True)
        values += [*a.target, *(v for v in a.achieved if v is not None)]
        fig.add_trace(go.Scatter(x=a.blocks, y=a.target, name=f"{label} · target ({a.allocation})", mode="lines",
                                 line=dict(color=color, dash="dot", width=2),
                                 hovertemplate=f"{label}<br>block %{{x}} target %{{y:.2%}}<extra></extra>"),
                      secondary_y=False)
        fig.add_trace(go.Scatter(x=a.blocks, y=a.achieved, name=f"{label} · achieved", mode="lines+markers",
                                 line=dict(color=color, dash=style["dash"]), marker=dict(symbol=style["symbol"], size=7),
                                 hovertemplate=f"{label}<br>block %{{x}} achieved %{{y:.2%}}<extra></extra>"),
                      secondary_y=False)
    if values:  # around the values, at least ±5 points, so a uniform run is a flat line and OWL's spread shows
        middle, half = (min(values) + max(values)) / 2, max(0.05, (max(values) - min(values)) / 2 + 0.02)
        fig.update_yaxes(range=[max(0.0, middle - half), min(1.0, middle + half)], secondary_y=False)
    fig.update_yaxes(tickformat=".0%", secondary_y=False)
    if shares:
        top = max(v for a in by_run.values() for v in a.outlier_share) * 1.15 or 1.0
        fig.update_yaxes(title_text="outlier weights (% of the block)", range=[0, top], ticksuffix="%",
                         tickmode="auto", showgrid=False, secondary_y=True)  # its own ticks, not the left axis's
    fig.update_xaxes(**block_ticks(_n_blocks({k: [{"block": b} for b in a.blocks] for k, a in by_run.items()})))
    return styled(fig, "Sparsity per block: the allocation's target and what was pruned", "block",
                  "sparsity of the block")


def allocation_note(label: str, a: BlockAllocation) -> str | None:
    """What OWL did to one run, in numbers: the block with the most outliers against the one with the fewest,
    and the mean of the block sparsities against the target. None for uniform runs."""
    if a.allocation != "owl" or not a.outlier_share:
        return None
    most = max(range(len(a.blocks)), key=lambda i: a.outlier_share[i])
    least = min(range(len(a.blocks)), key=lambda i: a.outlier_share[i])
    mean = sum(a.target) / len(a.target)
    return (f"{label}: OWL pruned block {a.blocks[most]} ({a.outlier_share[most]:.2f}% outliers, the most) to "
            f"{a.target[most]:.1%} and block {a.blocks[least]} ({a.outlier_share[least]:.2f}%, the fewest) to "
            f"{a.target[least]:.1%}; the block sparsities average {mean:.1%}, the target {a.sparsity:.1%}.")


# -- block outputs ---------------------------------------------------------------------------------------------


def block_errors(blocks_by_run: Mapping[str, Sequence[Mapping]], quantity: str = "local", view: str = "both") -> go.Figure:
    """Relative error of each whole block's output against the dense block: after pruning (red) and after
    repair (blue), each run its own shade, dash and symbol, or their ratio around 1 in the ``change`` view."""
    q = QUANTITIES[quantity]
    fig = go.Figure()
    plotted = []
    for r, (label, blocks) in enumerate(blocks_by_run.items()):
        for name, ys, color in _series(label, blocks, q.block_fields, view, r):
            if all(y is None for y in ys):
                continue
            plotted += ys
            fig.add_trace(go.Scatter(x=[b["block"] for b in blocks], y=ys, name=name, mode="lines+markers",
                                     line=dict(color=color, dash=run_style(r)["dash"]),
                                     marker=dict(symbol=run_style(r)["symbol"], size=6),
                                     hovertemplate=f"{name}<br>block %{{x}} output<br>%{{y:.4g}}<extra></extra>"))
    fig.update_xaxes(**block_ticks(_n_blocks(blocks_by_run)))
    fig.update_yaxes(**(ratio_axis(plotted) if view == "change" else value_axis(plotted)))
    y = "after ÷ before (1 = unchanged)" if view == "change" else f"block output {q.title}"
    _unchanged_line(fig, view)
    return styled(fig, f"Block outputs: {q.title} ({VIEWS[view]})", "block", y)
