"""The one colour rule of every chart, the app's and the reproduction report's: a pruning method has one colour,
a repair recipe has one colour, on every page and every figure.

A model that was pruned and not repaired is drawn in its method's colour; a repaired one in its recipe's colour
(the method then shows in the marker symbol). The stages of one run keep their own colours: the dense model grey,
after pruning red, after repair blue. Methods refined afterwards (DSnoT) or pruned with a non-uniform allocation
(OWL) take a darker shade of their method's colour.
"""

from __future__ import annotations

METHOD_COLORS = {"magnitude": "#D55E00", "wanda": "#009E73", "sparsegpt": "#CC79A7", "ria": "#56B4E9",
                 "random": "#8C6D31"}  # Okabe-Ito, apart from the stage colours below
METHOD_SYMBOLS = {"magnitude": "circle", "wanda": "diamond", "sparsegpt": "square", "ria": "triangle-up",
                  "random": "x"}
RECIPE_COLORS = {"norms-only": "#CA8A04", "perp": "#4338CA", "perp-masklora": "#65A30D",
                 "perp-scalelora": "#9333EA", "perp-scalelora-paper": "#C084FC", "perp-lora": "#0891B2",
                 "full-ft": "#111827", "recon-norms": "#854D0E", "recon-masklora": "#3F6212",
                 "recon-scalelora": "#6B21A8"}
CUSTOM = "#A21CAF"  # a recipe that is no preset's
DENSE = "#6B7280"
BEFORE, AFTER = "#DC2626", "#2563EB"  # after pruning (red), after repair (blue): one meaning on every chart
CHANCE = "#9CA3AF"
# the first, second and third run on one chart: shades of BEFORE and AFTER, a colour for a run's single line
# (its sparsity, its change by repair), a dash and a marker symbol
RUN_BEFORE = (BEFORE, "#7F1D1D", "#F87171")
RUN_AFTER = (AFTER, "#1E3A8A", "#60A5FA")
RUN_LINES = ("#111827", "#0F766E", "#B45309")
RUN_DASHES = ("solid", "dash", "dot")
RUN_SYMBOLS = ("circle", "diamond", "square")
RUNS = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F", "#BCBD22",
        "#17BECF")  # series that are single runs (learning curves): by run id
_SHADES = {("uniform", "none"): 1.0, ("owl", "none"): 0.7, ("uniform", "dsnot"): 0.55, ("owl", "dsnot"): 0.4}


def _darker(color: str, factor: float) -> str:
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c * factor):02X}" for c in rgb)


def method_color(method: str, allocation: str = "uniform", refine: str = "none") -> str:
    """A pruning method's colour, darker when OWL allocated the sparsity or DSnoT refined the masks."""
    return _darker(METHOD_COLORS[method], _SHADES[(allocation, refine)])


def method_symbol(method: str) -> str:
    return METHOD_SYMBOLS[method]


def recipe_color(preset: str | None) -> str:
    """A repair recipe's colour: its preset's (any but ``none``: a model not repaired takes its method's colour),
    or ``CUSTOM`` (``preset`` None) for a recipe that is no preset's."""
    return CUSTOM if preset is None else RECIPE_COLORS[preset]


def series_color(config: dict, preset: str | None, repaired: bool) -> str:
    """The colour of a model drawn from a run's ``config``: its recipe's (``preset``, None for a custom one) when
    ``repaired``, else its pruning method's."""
    if repaired and config.get("mode", "none") != "none":
        return recipe_color(preset)
    return method_color(config.get("method", "magnitude"), config.get("allocation", "uniform"),
                        config.get("refine", "none"))


def run_color(run_id: int) -> str:
    """The colour of a series that is one run (a learning curve): by its id, so a run keeps it between charts."""
    return RUNS[run_id % len(RUNS)]


def run_style(index: int) -> dict:
    """The ``index``-th run of a chart that draws a few runs side by side (Layers): its shade of red (after
    pruning) and of blue (after repair), the colour of its single line, its dash and its marker symbol."""
    i = index % len(RUN_DASHES)
    return dict(before=RUN_BEFORE[i], after=RUN_AFTER[i], line=RUN_LINES[i], dash=RUN_DASHES[i], symbol=RUN_SYMBOLS[i])


def dense_label(level: float, percent: bool = False) -> str:
    """The text beside the dense model's reference line: ``dense 30.9`` (a perplexity) or ``dense 45.2%``."""
    return f"dense {level:.1%}" if percent else f"dense {level:,.1f}"
