"""From widget values to a validated RunConfig, and the choices the Experiment and Sweep pages offer.

No Streamlit here: the pages read their widgets into plain values and call these functions, so the mapping
(preset or custom recipe, N:M sparsity, run size) is tested directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from perp_engine.config import (
    DEFAULT_MODEL,
    ZERO_SHOT_LIMIT,
    ZERO_SHOT_MODELS,
    ZERO_SHOT_TASKS,
    RunConfig,
    parse_pattern,
)
from perp_engine.data.zero_shot_tasks import TASKS
from perp_engine.errors import PerpError
from perp_engine.presets import DESCRIPTIONS, PRESETS
from perp_engine.resources.estimate import sweep_seconds  # noqa: F401  (the Sweep page's total, with the engine's cost model)
from perp_engine.run.sweep import SweepSpec, with_axes

from .runs import preset_of

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

PAPER_TASKS = "paper"  # RunConfig's name for the seven tasks of the pruning papers
ZERO_SHOT_CHOICES = (PAPER_TASKS, *ZERO_SHOT_TASKS)

DATASET_TAGS = {"wiki-embedded": "works offline", "wikitext2": "needs download", "c4": "needs download"}
DATASET_HELP = {
    "wiki-embedded": "Wikipedia excerpt shipped with gensim: works offline",
    "wikitext2": "WikiText-2 (needs the Hugging Face datasets cache or a network)",
    "c4": "C4 validation shard (needs the Hugging Face datasets cache or a network)",
}


def task_choice_label(choice: str) -> str:
    """``all seven (paper)``, or a task's title with the split it scores: ``ARC-Easy (test)``."""
    if choice == PAPER_TASKS:
        return "all seven (paper)"
    return f"{TASKS[choice].title} ({TASKS[choice].split})"


def size_caption(size: str, eval_tokens: int, calib_samples: int) -> str:
    """What the run size fields say now: the size's own numbers, or the custom ones beside the size's."""
    preset = RUN_SIZES[size]
    now = f"{eval_tokens:,} evaluation tokens, {calib_samples:,} calibration sequences"
    if (eval_tokens, calib_samples) == (preset["eval_tokens"], preset["calib_samples"]):
        return f"{size.capitalize()}: {now}."
    return (f"Custom size: {now} ({size.capitalize()} is {preset['eval_tokens']:,} and {preset['calib_samples']:,}). "
            "Perplexities compare only between runs evaluated on the same tokens.")


def widget_values(config: Mapping) -> dict:
    """The Experiment page's widget values that show ``config`` (a stored run's), keyed by widget key, so a run
    can be loaded back into the form. Fields the form does not show are not carried over."""
    recipe = preset_of(dict(config)) or CUSTOM
    size = next((name for name, fields in RUN_SIZES.items()
                 if all(config.get(k) == v for k, v in fields.items())), DEFAULT_SIZE)
    values = {
        "exp_model": config["model"], "exp_dataset": config["dataset"], "exp_method": config["method"],
        "exp_pattern": config["pattern"], "exp_sparsity": float(config["sparsity"]), "exp_recipe": recipe,
        "exp_size": size, f"exp_eval_tokens_{size}": config["eval_tokens"], f"exp_calib_{size}": config["calib_samples"],
        "exp_seqlen": config["seqlen"], "exp_batch": config["batch_size"], "exp_seed": config["seed"],
        "exp_device": config["device"], "exp_dtype": config["dtype"], "exp_offload": config.get("offload", "auto"),
    }
    tasks = list(config.get("zero_shot") or [])
    values["exp_zs_tasks"] = [PAPER_TASKS] if set(tasks) == set(ZERO_SHOT_TASKS) else tasks
    if tasks:
        limit = config.get("zero_shot_limit", ZERO_SHOT_LIMIT)
        values.update(exp_zs_all=limit == 0, exp_zs_on=list(config.get("zero_shot_on", ZERO_SHOT_MODELS)))
        if limit:
            values["exp_zs_limit"] = limit
    if "max_grad_norm" in config:
        values["exp_max_grad_norm"] = float(config["max_grad_norm"])
    if config.get("mode", "none") != "none":
        values.update({"exp_steps": config["steps"], f"exp_lr_{recipe}": float(config["lr"]),
                       "exp_eval_every": config.get("eval_every", 0)})
    if recipe == CUSTOM:
        values.update(exp_mode=config["mode"], exp_train=list(config["train"]), exp_adapter=config["adapter"],
                      exp_rank=config["rank"])
    return values


def sweep_name(methods: Sequence[str], sparsities: Sequence[float], recipes: Sequence[str], seeds: Sequence[int] = (0,),
               pattern: str = "unstructured") -> str:
    """A sweep named by what varies, in braces: ``magnitude 50% x {none, perp}``."""
    def axis(values: Sequence[str]) -> str:
        return values[0] if len(values) == 1 else "{" + ", ".join(values) + "}"
    amounts = [pattern] if parse_pattern(pattern) else [f"{s:.0%}" for s in sorted(set(map(float, sparsities)))]
    name = f"{axis(list(methods))} {axis(amounts)} x {axis(list(recipes))}"
    return name + (f" x seeds {axis([str(s) for s in seeds])}" if len(seeds) > 1 else "")


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
    ``lr`` None keeps the recipe's learning rate; ``eval_every`` > 0 records a learning curve; ``advanced`` holds
    any other RunConfig fields. ``zero_shot``: the tasks scored (``paper`` = the seven; none = off),
    ``zero_shot_limit`` docs per task (0 = all), ``zero_shot_on`` the models scored; the last two count only with
    tasks."""

    model: str = DEFAULT_MODEL
    dataset: str = "wiki-embedded"
    method: str = DEFAULT_METHOD
    sparsity: float = 0.5
    pattern: str = "unstructured"
    recipe: str = DEFAULT_RECIPE
    mode: str = "retrain"
    train: Sequence[str] = ("norms",)
    adapter: str = "none"
    rank: int = RunConfig.rank
    steps: int = RunConfig.steps
    lr: float | None = None
    eval_every: int = RunConfig.eval_every
    size: str = DEFAULT_SIZE
    advanced: dict = field(default_factory=dict)
    zero_shot: Sequence[str] = ()
    zero_shot_limit: int = ZERO_SHOT_LIMIT
    zero_shot_on: Sequence[str] = ZERO_SHOT_MODELS

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
            fields.update(steps=self.steps, lr=self.lr, eval_every=self.eval_every)
        if self.zero_shot:
            fields.update(zero_shot=tuple(self.zero_shot), zero_shot_limit=self.zero_shot_limit,
                          zero_shot_on=tuple(self.zero_shot_on))
        return RunConfig.create(preset, **fields)


def sweep_spec(*, name: str, fixed: dict, methods: Sequence[str], sparsities: Sequence[float], recipes: Sequence[str],
               seeds: Sequence[int] = (0,), pattern: str = "unstructured") -> SweepSpec:
    """The Sweep page's grid: methods x sparsities x recipes (presets) x seeds on top of the ``fixed`` fields.

    An N:M ``pattern`` fixes the sparsity (the sparsity choices are then ignored). Axes with one value are
    shared fields; PerpError when no axis has two values or one has none. Without a ``name`` the sweep is named
    by what varies (sweep_name)."""
    if not name and methods and recipes:
        name = sweep_name(methods, sparsities, recipes, list(seeds), pattern)
    axes = {"method": list(methods), "preset": list(recipes), "seed": list(seeds),
            "sparsity": [pattern_sparsity(pattern, 0.5)] if parse_pattern(pattern) else sorted(set(map(float, sparsities)))}
    for key, values in axes.items():
        if not values:
            raise PerpError(key, "choose at least one value")
    if all(len(values) == 1 for values in axes.values()):
        raise PerpError("grid", "choose two or more values for at least one axis (methods, sparsities, recipes or seeds)")
    return with_axes(None, {**{k: [v] for k, v in fixed.items()}, "pattern": [pattern], **axes}, name=name)
