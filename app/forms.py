"""From widget values to a validated RunConfig, and the choices the Experiment and Sweep pages offer.

No Streamlit here: the pages read their widgets into plain values and call these functions, so the mapping
(preset or custom recipe, N:M sparsity, run size) is tested directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from perp_engine.config import DEFAULT_MODEL, RunConfig, parse_pattern
from perp_engine.errors import PerpError
from perp_engine.estimate import sweep_seconds  # noqa: F401  (the Sweep page's total, with the engine's cost model)
from perp_engine.presets import DESCRIPTIONS, PRESETS
from perp_engine.sweep import SweepSpec, with_axes

CUSTOM = "custom"
RECIPES = (*PRESETS, CUSTOM)
DEFAULT_RECIPE = "perp-masklora"
PATTERNS = ("unstructured", "2:4", "4:8")
DEFAULT_METHOD = "wanda"

# How much text a run reads; perplexities of runs of different sizes are not directly comparable.
RUN_SIZES: dict[str, dict] = {
    "quick": {"eval_tokens": 4096, "calib_samples": 16},
    "standard": {"eval_tokens": RunConfig.eval_tokens, "calib_samples": RunConfig.calib_samples},
    "thorough": {"eval_tokens": 65536, "calib_samples": 128},
}
SIZE_HELP = {
    "quick": "4,096 evaluation tokens, 16 calibration sequences: a first look in a few minutes",
    "standard": f"{RunConfig.eval_tokens:,} evaluation tokens, {RunConfig.calib_samples} calibration sequences",
    "thorough": "65,536 evaluation tokens, 128 calibration sequences: tighter numbers, several times slower",
}
DEFAULT_SIZE = "quick"

DATASET_HELP = {
    "wiki-embedded": "Wikipedia excerpt shipped with gensim: works offline",
    "wikitext2": "WikiText-2 (needs the Hugging Face datasets cache or a network)",
    "c4": "C4 validation shard (needs the Hugging Face datasets cache or a network)",
}


def pattern_sparsity(pattern: str, sparsity: float) -> float:
    """The sparsity a run gets: the slider's value, or N/M for an N:M pattern (which fixes it)."""
    nm = parse_pattern(pattern)
    return round(nm[0] / nm[1], 6) if nm else float(sparsity)


def recipe_fields(recipe: str) -> dict:
    """The retraining fields a preset sets (empty for ``custom``)."""
    return {} if recipe == CUSTOM else dict(PRESETS[recipe])


def recipe_summary(recipe: str) -> str:
    """One line on what a recipe does."""
    if recipe == CUSTOM:
        return "Choose the mode, the parameter subsets and an adapter yourself."
    return DESCRIPTIONS.get(recipe, "")


@dataclass
class ExperimentForm:
    """The Experiment page's choices. ``mode``/``train``/``adapter``/``rank`` count only for the custom recipe;
    ``lr`` None keeps the recipe's learning rate; ``advanced`` holds any other RunConfig fields."""

    model: str = DEFAULT_MODEL
    dataset: str = "wiki-embedded"
    method: str = DEFAULT_METHOD
    sparsity: float = 0.5
    pattern: str = "unstructured"
    recipe: str = DEFAULT_RECIPE
    mode: str = "retrain"
    train: Sequence[str] = ("norms",)
    adapter: str = "none"
    rank: int = 16
    steps: int = RunConfig.steps
    lr: float | None = None
    size: str = DEFAULT_SIZE
    advanced: dict = field(default_factory=dict)

    def to_config(self) -> RunConfig:
        """The validated RunConfig (PerpError naming the field otherwise)."""
        fields = {
            "model": self.model.strip(),
            "dataset": self.dataset.strip(),
            "method": self.method,
            "pattern": self.pattern,
            "sparsity": pattern_sparsity(self.pattern, self.sparsity),
            **RUN_SIZES[self.size],
            **self.advanced,
        }
        if self.recipe == CUSTOM:
            preset = None
            fields.update(mode=self.mode, train=tuple(self.train) if self.mode != "none" else (),
                          adapter=self.adapter if self.mode != "none" else "none", rank=self.rank)
        else:
            preset = self.recipe
        if (recipe_fields(self.recipe).get("mode") or fields.get("mode")) != "none":
            fields.update(steps=self.steps, lr=self.lr)
        return RunConfig.create(preset, **fields)


def sweep_spec(*, name: str, fixed: dict, methods: Sequence[str], sparsities: Sequence[float], recipes: Sequence[str],
               seeds: Sequence[int] = (0,), pattern: str = "unstructured") -> SweepSpec:
    """The Sweep page's grid: methods x sparsities x recipes (presets) x seeds on top of the ``fixed`` fields.

    An N:M ``pattern`` fixes the sparsity (the sparsity choices are then ignored). Axes with one value are
    shared fields; PerpError when no axis has two values or one has none."""
    axes = {"method": list(methods), "preset": list(recipes), "seed": list(seeds),
            "sparsity": [pattern_sparsity(pattern, 0.5)] if parse_pattern(pattern) else sorted(set(map(float, sparsities)))}
    for key, values in axes.items():
        if not values:
            raise PerpError(key, "choose at least one value")
    if all(len(values) == 1 for values in axes.values()):
        raise PerpError("grid", "choose two or more values for at least one axis (methods, sparsities, recipes or seeds)")
    return with_axes(None, {**{k: [v] for k, v in fixed.items()}, "pattern": [pattern], **axes}, name=name)
