"""From widget values to a validated RunConfig, and the choices the Experiment and Sweep pages offer.

No Streamlit here: the pages read their widgets into plain values and call these functions, so the mapping
(preset or custom recipe, N:M sparsity, run size) is tested directly.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import perp_engine.config as config_module
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

# What each choice does, in a few words (the pickers' help on Experiment and Sweep; About says more).
METHOD_HELP = {
    "magnitude": "drop the smallest weights",
    "wanda": "weight x activation size, the same share in every output row",
    "sparsegpt": "prune and update the remaining weights (slowest, best)",
    "ria": "a weight's size relative to its row and column, x activation size (RIA, 2024)",
    "random": "a baseline",
}
ALLOCATION_HELP = {
    "uniform": "every block at the target sparsity",
    "owl": "blocks with more outlier weights are pruned less, the mean stays at the target (OWL, 2024; "
           "unstructured only)",
}
REFINE_HELP = {
    "none": "keep the method's mask",
    "dsnot": "then swap pruned and kept weights row by row to bring each row's output back toward the dense one, "
             "without training (DSnoT, 2024; attention layers by default)",
}
SEQUENTIAL_HELP = {
    "block": "every layer of a block is pruned on the block's inputs as they are (the Wanda and SparseGPT default)",
    "layer": "each layer is pruned on inputs that already pass through the layers pruned before it in its block "
             "(SparseGPT's true-sequential), in one pass per block: usually a little better and faster",
}
RIA_PERMUTE_HELP = {
    "none": "N of every M consecutive inputs",
    "reallocation": "first regroup the inputs so every group of M holds a fair share of the important ones",
    "lsa": "the regrouping, improved by M rounds of linear sum assignment (slower)",
}
NM_ALLOCATION = "An N:M pattern prunes every block to N/M, so the allocation is uniform (OWL needs unstructured)."

# How much a run reads and trains: the fields each size sets (steps only where the recipe trains). Perplexities of
# runs of different sizes are not directly comparable.
RUN_SIZES: dict[str, dict[str, int]] = {
    "demo": {"eval_tokens": 2048, "calib_samples": 8, "seqlen": 128, "steps": 15},
    "quick": {"eval_tokens": 4096, "calib_samples": 16, "seqlen": RunConfig.seqlen, "steps": RunConfig.steps},
    "standard": {"eval_tokens": RunConfig.eval_tokens, "calib_samples": RunConfig.calib_samples,
                 "seqlen": RunConfig.seqlen, "steps": RunConfig.steps},
    "thorough": {"eval_tokens": 65536, "calib_samples": 128, "seqlen": RunConfig.seqlen, "steps": RunConfig.steps},
}
SIZE_NOTES = {  # what each size is for, and what it gives up
    "demo": "a prune + repair run of the embedded model in about 70 s on 2 quiet CPU cores (model and text cached), "
            "for a class or a first try. It gives up precision: a noisier perplexity (fewer evaluation tokens), "
            "rougher pruning statistics (fewer and shorter calibration windows, 128-token context) and a shorter "
            "repair (half the steps)",
    "quick": "a first look in a few minutes",
    "standard": "the command line's defaults",
    "thorough": "tighter numbers, several times slower",
}
DEFAULT_SIZE = "demo"  # the size a new Experiment form starts at
SIZE_KEYS = {"eval_tokens": "exp_eval_tokens", "calib_samples": "exp_calib", "seqlen": "exp_seqlen",
             "steps": "exp_steps"}  # the Experiment widgets that a size fills

# The Experiment page's labels of the RunConfig fields it shows, so a refusal can say which input to change.
LABELS = {
    "model": "Model", "dataset": "Text for calibration, retraining and perplexity", "method": "Method",
    "pattern": "Pattern", "sparsity": "Sparsity", "ria_permute": "RIA channel permutation", "allocation": "Allocation",
    "refine": "Refine", "sequential": "Order in a block", "owl_m": "OWL outlier threshold M", "owl_lambda": "OWL spread λ", "preset": "Recipe",
    "mode": "Mode", "train": "Parameters to train", "adapter": "Adapter on the pruned layers", "rank": "Adapter rank",
    "steps": "Training steps", "lr": "Learning rate", "eval_every": "Learning curve every", "zero_shot": "Tasks",
    "zero_shot_limit": "Docs per task", "zero_shot_on": "Score the models", "eval_tokens": "Evaluation tokens",
    "calib_samples": "Calibration sequences", "seqlen": "Sequence length", "batch_size": "Batch size", "seed": "Seed",
    "device": "Device", "dtype": "Weights dtype", "offload": "Offload", "max_grad_norm": "Max gradient norm",
    "ria_power": "RIA activation power",
}
# An identical config (the store's config key) in one of these states is offered instead of a copy: it gives the same
# numbers. A failed or cancelled one may be launched again.
TWIN_STATUSES = ("queued", "running", "done")
ADVANCED = "Run size and advanced settings"  # the Experiment expander holding the fields below and DSnoT's
ADVANCED_FIELDS = ("eval_tokens", "calib_samples", "seqlen", "batch_size", "seed", "device", "dtype", "offload",
                   "max_grad_norm", "ria_power")


def size_words(eval_tokens: int, calib_samples: int, seqlen: int | None = None, steps: int | None = None) -> str:
    """``2,048 evaluation tokens, 8 calibration sequences of 128 tokens, 15 training steps`` (the parts given)."""
    words = f"{eval_tokens:,} evaluation tokens, {calib_samples:,} calibration sequences"
    return (words + (f" of {seqlen:,} tokens" if seqlen is not None else "")
            + (f", {steps:,} training steps" if steps is not None else ""))


SIZE_HELP = {name: f"{size_words(**fields)}: {SIZE_NOTES[name]}" for name, fields in RUN_SIZES.items()}

PAPER_TASKS = "paper"  # RunConfig's name for the seven tasks of the pruning papers
ZERO_SHOT_CHOICES = (PAPER_TASKS, *ZERO_SHOT_TASKS)

DATASET_TAGS = {"wiki-embedded": "works offline", "wikitext2": "needs download", "c4": "needs download"}
DATASET_HELP = {
    "wiki-embedded": "Wikipedia excerpt shipped with gensim: works offline",
    "wikitext2": "WikiText-2 (needs the Hugging Face datasets cache or a network)",
    "c4": "C4 validation shard (needs the Hugging Face datasets cache or a network)",
}


def help_text(helps: Mapping[str, str]) -> str:
    """One picker's help: ``wanda: ... · ria: ...``."""
    return " · ".join(f"{choice}: {what}" for choice, what in helps.items())


def allows_allocation(pattern: str) -> bool:
    """Whether a pattern leaves the blocks' sparsities free (unstructured); N:M fixes each at N/M."""
    return parse_pattern(pattern) is None


def ria_permutes(method: str, pattern: str) -> bool:
    """Whether RIA's channel permutation applies: method ria with an N:M pattern."""
    return method == "ria" and parse_pattern(pattern) is not None


def dsnot_fields() -> list[dataclasses.Field]:
    """RunConfig's DSnoT knobs (the ``dsnot_*`` fields), in their order: Experiment offers each as an advanced input."""
    return [f for f in dataclasses.fields(RunConfig) if f.name.startswith("dsnot_")]


def knob_kind(f: dataclasses.Field) -> str:
    """Which input shows a config field: ``toggle`` (bool), ``int``, ``float``, ``choice`` (text with allowed
    values, :func:`knob_choices`) or ``text``."""
    kind = {"bool": "toggle", "int": "int", "float": "float"}.get(str(f.type))
    return kind or ("choice" if knob_choices(f) else "text")


def knob_choices(f: dataclasses.Field) -> tuple[str, ...] | None:
    """A text field's allowed values: perp_engine.config's constant named after the field (``DSNOT_SKIP_LAYERS``
    for ``dsnot_skip_layer``, ``DSNOT_SAME_SIGN`` for ``dsnot_same_sign``), or None."""
    for name in (f"{f.name.upper()}S", f.name.upper()):
        values = getattr(config_module, name, None)
        if isinstance(values, (tuple, dict)):
            return tuple(values)
    return None


def task_choice_label(choice: str) -> str:
    """``all seven (paper)``, or a task's title with the split it scores: ``ARC-Easy (test)``."""
    if choice == PAPER_TASKS:
        return "all seven (paper)"
    return f"{TASKS[choice].title} ({TASKS[choice].split})"


def size_caption(size: str, eval_tokens: int, calib_samples: int, seqlen: int | None = None,
                 steps: int | None = None) -> str:
    """What the run size fields say now: the size's own numbers, or the custom ones beside the size's. A field
    given as None (e.g. steps of a run that does not train) is neither shown nor compared."""
    chosen = {"eval_tokens": eval_tokens, "calib_samples": calib_samples, "seqlen": seqlen, "steps": steps}
    chosen = {k: v for k, v in chosen.items() if v is not None}
    preset = {k: RUN_SIZES[size][k] for k in chosen}
    if chosen == preset:
        return f"{size.capitalize()}: {size_words(**chosen)}."
    return (f"Custom size: {size_words(**chosen)} ({size.capitalize()} is {size_words(**preset)}). "
            "Perplexities compare only between runs evaluated on the same tokens.")


def size_of(config: Mapping) -> str | None:
    """The run size whose fields ``config`` has (steps count only when it trains), or None (a custom size)."""
    trains = config.get("mode", "none") != "none"
    return next((name for name, fields in RUN_SIZES.items()
                 if all(config.get(k) == v for k, v in fields.items() if k != "steps" or trains)), None)


def size_values(size: str) -> dict:
    """The Experiment widgets' values for a run size, keyed by widget key (the size picker fills the fields)."""
    return {SIZE_KEYS[field]: value for field, value in RUN_SIZES[size].items()}


def field_hint(field: str) -> str | None:
    """Where to change a field a refusal names: ``Change **Sequence length** (under Run size and advanced
    settings).``; None for a field the form does not show."""
    if field.startswith("dsnot_"):
        return f"Change DSnoT's **{field.split('_', 1)[1].replace('_', ' ')}** (under {ADVANCED})."
    if field not in LABELS:
        return None
    return f"Change **{LABELS[field]}**" + (f" (under {ADVANCED})." if field in ADVANCED_FIELDS else ".")


def widget_values(config: Mapping) -> dict:
    """The Experiment page's widget values that show ``config`` (a stored run's), keyed by widget key, so a run
    can be loaded back into the form. Fields the form does not show are not carried over."""
    recipe = preset_of(dict(config)) or CUSTOM
    values = {
        "exp_model": config["model"], "exp_dataset": config["dataset"], "exp_method": config["method"],
        "exp_pattern": config["pattern"], "exp_sparsity": float(config["sparsity"]), "exp_recipe": recipe,
        "exp_size": size_of(config) or DEFAULT_SIZE, **{key: config[f] for f, key in SIZE_KEYS.items() if f != "steps"},
        "exp_batch": config["batch_size"], "exp_seed": config["seed"],
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
    values.update(exp_allocation=config.get("allocation", "uniform"), exp_refine=config.get("refine", "none"),
                  exp_ria_permute=config.get("ria_permute", "none"), exp_sequential=config.get("sequential", "block"))
    values.update({f"exp_{name}": float(config[name]) for name in ("owl_m", "owl_lambda", "ria_power")
                   if name in config})
    values.update({f"exp_{f.name}": config[f.name] for f in dsnot_fields() if f.name in config})
    if config.get("mode", "none") != "none":
        values.update({SIZE_KEYS["steps"]: config["steps"], f"exp_lr_{recipe}": float(config["lr"]),
                       "exp_eval_every": config.get("eval_every", 0)})
    if recipe == CUSTOM:
        values.update(exp_mode=config["mode"], exp_train=list(config["train"]), exp_adapter=config["adapter"],
                      exp_rank=config["rank"])
    return values


def sweep_name(methods: Sequence[str], sparsities: Sequence[float], recipes: Sequence[str], seeds: Sequence[int] = (0,),
               pattern: str = "unstructured", allocations: Sequence[str] = ("uniform",),
               refines: Sequence[str] = ("none",), sequentials: Sequence[str] = ("block",)) -> str:
    """A sweep named by what varies, in braces: ``magnitude 50% x {none, perp}``; an allocation, refinement or
    order in a block other than the default, or several, joins the methods: ``wanda + {uniform, owl} + dsnot 50%
    x perp``, ``sparsegpt + {block, layer} 50% x none``."""
    def axis(values: Sequence[str]) -> str:
        return values[0] if len(values) == 1 else "{" + ", ".join(values) + "}"
    amounts = [pattern] if parse_pattern(pattern) else [f"{s:.0%}" for s in sorted(set(map(float, sparsities)))]
    pruning = " + ".join([axis(list(methods)), *(axis(list(values)) for values, default in
                                                 ((allocations, "uniform"), (refines, "none"),
                                                  (sequentials, "block"))
                                                 if list(values) != [default] and values)])
    name = f"{pruning} {axis(amounts)} x {axis(list(recipes))}"
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
    """The Experiment page's choices. ``owl_m``/``owl_lambda`` count only with allocation ``owl``,
    ``ria_power``/``ria_permute`` only with method ``ria``; ``mode``/``train``/``adapter``/``rank`` only for the
    custom recipe; ``lr`` None keeps the recipe's learning rate; ``eval_every`` > 0 records a learning curve;
    ``advanced`` holds any other RunConfig fields (DSnoT's ``dsnot_*`` among them), winning over the run
    ``size``'s; ``steps`` None takes the size's. ``zero_shot``: the tasks
    scored (``paper`` = the seven; none = off), ``zero_shot_limit`` docs per task (0 = all), ``zero_shot_on`` the
    models scored; the last two count only with tasks."""

    model: str = DEFAULT_MODEL
    dataset: str = "wiki-embedded"
    method: str = DEFAULT_METHOD
    sparsity: float = 0.5
    pattern: str = "unstructured"
    allocation: str = RunConfig.allocation
    owl_m: float = RunConfig.owl_m
    owl_lambda: float = RunConfig.owl_lambda
    refine: str = RunConfig.refine
    sequential: str = RunConfig.sequential
    ria_power: float = RunConfig.ria_power
    ria_permute: str = RunConfig.ria_permute
    recipe: str = DEFAULT_RECIPE
    mode: str = "retrain"
    train: Sequence[str] = ("norms",)
    adapter: str = "none"
    rank: int = RunConfig.rank
    steps: int | None = None
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
            "allocation": self.allocation,
            "refine": self.refine,
            "sequential": self.sequential,
            **{k: v for k, v in RUN_SIZES[self.size].items() if k != "steps"},
            **self.advanced,
        }
        if self.allocation == "owl":
            fields.update(owl_m=float(self.owl_m), owl_lambda=float(self.owl_lambda))
        if self.method == "ria":
            fields.update(ria_power=float(self.ria_power), ria_permute=self.ria_permute)
        if self.recipe == CUSTOM:
            preset = None
            fields.update(mode=self.mode, train=tuple(self.train) if self.mode != "none" else (),
                          adapter=self.adapter if self.mode != "none" else "none", rank=self.rank)
        else:
            preset = self.recipe
        if (recipe_fields(self.recipe).get("mode") or fields.get("mode")) != "none":
            fields.update(steps=RUN_SIZES[self.size]["steps"] if self.steps is None else self.steps, lr=self.lr,
                          eval_every=self.eval_every)
        if self.zero_shot:
            fields.update(zero_shot=tuple(self.zero_shot), zero_shot_limit=self.zero_shot_limit,
                          zero_shot_on=tuple(self.zero_shot_on))
        return RunConfig.create(preset, **fields)


def sweep_spec(*, name: str, fixed: dict, methods: Sequence[str], sparsities: Sequence[float], recipes: Sequence[str],
               seeds: Sequence[int] = (0,), pattern: str = "unstructured", allocations: Sequence[str] = ("uniform",),
               refines: Sequence[str] = ("none",), sequentials: Sequence[str] = ("block",)) -> SweepSpec:
    """The Sweep page's grid: methods x allocations x refinements x orders in a block x sparsities x recipes
    (presets) x seeds on top of the ``fixed`` fields.

    An N:M ``pattern`` fixes the sparsity (the sparsity choices are then ignored). Axes with one value are
    shared fields; PerpError when no axis has two values or one has none. Without a ``name`` the sweep is named
    by what varies (sweep_name). Points the configuration refuses (OWL with N:M) stay in the grid:
    :func:`sweep_configs` sets them aside and says why."""
    if not name and methods and recipes and allocations and refines and sequentials:
        name = sweep_name(methods, sparsities, recipes, list(seeds), pattern, allocations, refines, sequentials)
    axes = {"method": list(methods), "allocation": list(allocations), "refine": list(refines),
            "sequential": list(sequentials), "preset": list(recipes),
            "seed": list(seeds),
            "sparsity": [pattern_sparsity(pattern, 0.5)] if parse_pattern(pattern) else sorted(set(map(float, sparsities)))}
    for key, values in axes.items():
        if not values:
            raise PerpError(key, "choose at least one value")
    if all(len(values) == 1 for values in axes.values()):
        raise PerpError("grid", "choose two or more values for at least one axis (methods, allocations, refinements, "
                                "orders in a block, sparsities, recipes or seeds)")
    return with_axes(None, {**{k: [v] for k, v in fixed.items()}, "pattern": [pattern], **axes}, name=name)


def sweep_configs(spec: SweepSpec) -> tuple[list[RunConfig], list[str]]:
    """The grid's valid RunConfigs, in grid order, and one line per reason the others are skipped (how many,
    which values they share, the configuration's own words). PerpError("grid", reason) when no point is valid."""
    configs, invalid = spec.split_points()
    skipped = defaultdict(list)
    for point, reason in invalid:
        skipped[reason].append(point)
    if not configs:
        raise PerpError("grid", f"no combination of these choices can run: {next(iter(skipped))}")
    return configs, [_skipped_line(reason, points, spec.size) for reason, points in skipped.items()]


def _skipped_line(reason: str, points: Sequence[dict], size: int) -> str:
    """``2 of 8 runs skipped (allocation owl, sparsity 0.1): reason``: the values all those points share."""
    shared = [f"{k} {v}" for k, v in points[0].items() if all(p[k] == v for p in points)]
    return f"{len(points)} of {size} runs skipped" + (f" ({', '.join(shared)})" if shared else "") + f": {reason}"
