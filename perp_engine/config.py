"""RunConfig: every knob of one run, validated, serialisable to and from JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields

from .errors import PerpError, check_choice
from .presets import DEFAULT_ALPHA, DEFAULT_RANK, PRESETS, preset_fields

METHODS = ("magnitude", "wanda", "sparsegpt", "ria", "random")
ALLOCATIONS = ("uniform", "owl")  # how the target sparsity is shared among the blocks (perp_engine.pruning.owl)
REFINES = ("none", "dsnot")  # what reworks each pruned layer's mask afterwards (perp_engine.pruning.dsnot)
DSNOT_SKIP_LAYERS = ("no_skip", "mlp", "self_attn")  # which linears DSnoT leaves alone (the official code's names)
DSNOT_SAME_SIGN = {"auto": None, "on": True, "off": False}  # auto: as the official code (off unstructured, on N:M)
RIA_PERMUTATIONS = ("none", "reallocation", "lsa")  # RIA's channel permutation for N:M (perp_engine.pruning.ria)
# block: every linear's statistics from the block as it is, then the block's outputs again (two passes, the official
# Wanda and SparseGPT defaults); layer: each linear on inputs reflecting the pruned linears before it, one pass
# (SparseGPT's --true-sequential; perp_engine.pruning.one_pass)
SEQUENTIAL_MODES = ("block", "layer")
MODES = ("none", "retrain", "reconstruct")
SUBSETS = ("biases", "norms", "head", "head-lora", "embeddings", "full")
ADAPTERS = ("none", "lora", "loraprune", "masklora", "scalelora", "scalelora-paper")
# What only a repair reads (perp_engine.repair and its memory terms): a run that does not repair (mode none)
# computes the same numbers whatever they hold, so the run store's key leaves them out (read_fields)
REPAIR_FIELDS = ("train", "adapter", "rank", "alpha", "target_modules", "untie_head", "steps", "lr", "grad_accum",
                 "warmup_ratio", "weight_decay", "max_grad_norm", "grad_checkpointing", "master_weights",
                 "train_samples", "eval_every")
NAMED_DATASETS = ("wiki-embedded", "wikitext2", "c4")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16")
OFFLOADS = ("auto", "none", "cpu", "disk")  # where the blocks' weights wait between uses: perp_engine.offload.placement
# lm-eval's names of the zero-shot tasks of the pruning papers ("paper" = all seven); their data and metrics:
# perp_engine.data.zero_shot_tasks
ZERO_SHOT_TASKS = ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")
ZERO_SHOT_MODELS = ("dense", "pruned", "final")  # which of a run's models are scored
ZERO_SHOT_LIMIT = 100  # docs per task by default (a seeded subset); 0 = every doc of the split
ALL_DOCS = "all"  # what a command line, a config file or a sweep may say for zero_shot_limit 0
DEFAULT_MODEL = "smollm2-135m"
SEED_MAX = 2**32 - 1  # the widest seed every generator used (torch, numpy, Python's random) accepts
# The largest integer any field takes: JavaScript's Number.MAX_SAFE_INTEGER, the most a browser's number field
# holds exactly, so that the app shows every stored config as it is (SQLite and torch would hold 2**63 - 1).
INT_MAX = 2**53 - 1
MIN_SEQLEN = 8

_NM = re.compile(r"^(\d+):(\d+)$")


def read_fields(config: dict) -> dict:
    """The fields of ``config`` (a RunConfig's dict, or a stored run's) that its run reads: all but
    :data:`REPAIR_FIELDS` when it does not repair."""
    if config.get("mode") != "none":
        return dict(config)
    return {k: v for k, v in config.items() if k not in REPAIR_FIELDS}


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """``"unstructured"`` -> None, ``"2:4"`` -> (2, 4). Raises PerpError for anything else."""
    if pattern == "unstructured":
        return None
    m = _NM.match(str(pattern))
    if not m:
        raise PerpError("pattern", f"{pattern!r} is not allowed; use 'unstructured' or N:M such as '2:4' or '4:8'")
    n, m_ = int(m.group(1)), int(m.group(2))
    if not 0 < n < m_:
        raise PerpError("pattern", f"{pattern!r}: N:M needs 0 < N < M (N of every M weights are pruned)")
    return n, m_


@dataclass(frozen=True)
class RunConfig:
    """One run: load, calibrate, prune, optionally retrain or reconstruct, measure.

    Defaults are sized for a 2-core CPU and the embedded model. ``preset`` names a recipe from
    :mod:`perp_engine.presets`; use :meth:`RunConfig.create` so the preset fills the fields you did not set.
    """

    model: str = DEFAULT_MODEL
    dataset: str = "wiki-embedded"
    calib_dataset: str | None = None
    method: str = "wanda"
    sparsity: float = 0.5
    pattern: str = "unstructured"
    seqlen: int = 256
    calib_samples: int = 32
    eval_tokens: int = 16384
    eval_batch_size: int = 4
    blocksize: int = 128
    percdamp: float = 0.01
    allocation: str = "uniform"
    owl_m: float = 5.0  # OWL's outlier threshold M and spread lambda: the README's LLaMA recipes (luuyin/OWL)
    owl_lambda: float = 0.08
    ria_power: float = 0.5
    ria_permute: str = "none"
    refine: str = "none"
    dsnot_skip_layer: str = "mlp"  # DSnoT's knobs, with the official code's names and defaults (zyxxmu/DSnoT main.py)
    dsnot_max_cycles: int = 50
    dsnot_update_threshold: float = 0.1
    dsnot_pow_of_var_regrowing: float = 1.0
    dsnot_same_sign: str = "auto"
    sequential: str = "block"
    preset: str | None = None
    mode: str = "none"
    train: tuple[str, ...] = ()
    adapter: str = "none"
    rank: int = DEFAULT_RANK
    alpha: float = DEFAULT_ALPHA
    target_modules: tuple[str, ...] = ()
    untie_head: bool = True
    steps: int = 30
    lr: float = 2e-3
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    grad_checkpointing: bool = False
    master_weights: bool = True
    train_samples: int = 0
    eval_every: int = 0
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    offload: str = "auto"
    trust_remote_code: bool = False
    zero_shot: tuple[str, ...] = ()
    zero_shot_limit: int = ZERO_SHOT_LIMIT
    zero_shot_on: tuple[str, ...] = ZERO_SHOT_MODELS
    zero_shot_samples: str | None = None

    def __post_init__(self):
        self._as_tuples()
        object.__setattr__(self, "zero_shot", zero_shot_tasks(self.zero_shot))  # "paper" -> the seven, in order
        self.validate()

    def _as_tuples(self) -> None:
        for name in ("train", "target_modules", "zero_shot", "zero_shot_on"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            object.__setattr__(self, name, tuple(value))

    @classmethod
    def recorded(cls, data: dict) -> "RunConfig":
        """The config a stored run recorded, as it is, not validated again: its text file may have moved since (a
        store copied from another machine), or an older version allowed a value this one refuses (a task since
        removed among them: a stored config lists its tasks by name). For showing the run; running it again goes
        through :meth:`from_dict`, which refuses such a config with the field named."""
        config = cls.__new__(cls)
        values = {f.name: f.default for f in fields(cls)} | field_values(data)
        for name, value in values.items():
            object.__setattr__(config, name, value)
        config._as_tuples()
        return config

    @classmethod
    def create(cls, preset: str | None = None, **overrides) -> "RunConfig":
        """Build a config from an optional preset plus explicit field values (explicit values win; None means
        "not given", as for a command-line flag left out)."""
        if preset is not None:
            _coerce(_FIELDS["preset"], preset)
        values = preset_fields(preset) if preset else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict({**values, "preset": preset})

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        return cls(**field_values(data))

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PerpError("config", f"not valid JSON ({err.msg} at line {err.lineno})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["train"] = list(self.train)
        d["target_modules"] = list(self.target_modules)
        d["zero_shot"] = list(self.zero_shot)
        d["zero_shot_on"] = list(self.zero_shot_on)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def zero_shot_models(self) -> tuple[str, ...]:
        """The models a run scores zero-shot, in pipeline order: none without tasks, ``final`` only with a repair."""
        if not self.zero_shot:
            return ()
        return tuple(m for m in ZERO_SHOT_MODELS if m in self.zero_shot_on and (m != "final" or self.mode != "none"))

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_pattern(self.pattern)

    def validate(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise PerpError("seed", f"{self.seed!r} is not allowed; use an integer from 0 to {SEED_MAX} (2**32 - 1)")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise PerpError(f.name, f"{value!r} is not allowed; use a finite number")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
                raise PerpError(f.name, f"{value!r} is out of range; use a number from -{INT_MAX:,} to {INT_MAX:,} "
                                        "(2**53 - 1, the most a browser's number field holds exactly)")
        if not isinstance(self.model, str) or not self.model.strip():
            raise PerpError("model", "must be 'smollm2-135m', a Hugging Face model id or a local folder")
        check_choice("method", self.method, METHODS)
        if not isinstance(self.sparsity, (int, float)) or not 0.0 <= float(self.sparsity) < 1.0:
            raise PerpError("sparsity", f"{self.sparsity!r} is not allowed; use a number in [0, 1), e.g. 0.5")
        nm = parse_pattern(self.pattern)
        if nm is not None and abs(float(self.sparsity) - nm[0] / nm[1]) > 1e-9:
            raise PerpError(
                "sparsity", f"{self.sparsity} does not match pattern {self.pattern}; an N:M pattern needs sparsity N/M = {nm[0] / nm[1]:g}"
            )
        _dataset("dataset", self.dataset)
        if self.calib_dataset is not None:
            _dataset("calib_dataset", self.calib_dataset)
        _positive("seqlen", self.seqlen, minimum=MIN_SEQLEN)
        _positive("calib_samples", self.calib_samples)
        _positive("eval_tokens", self.eval_tokens, minimum=self.seqlen, why=f"at least one window of seqlen={self.seqlen}")
        _positive("eval_batch_size", self.eval_batch_size)
        _positive("blocksize", self.blocksize)
        if not 0 < float(self.percdamp) <= 1:
            raise PerpError("percdamp", f"{self.percdamp!r} is not allowed; use a number in (0, 1], e.g. 0.01")
        self._validate_pruning_modes(nm)
        if self.preset is not None and self.preset not in PRESETS:
            raise PerpError("preset", f"unknown preset {self.preset!r}; allowed: {', '.join(PRESETS)}")
        check_choice("mode", self.mode, MODES)
        for subset in self.train:
            check_choice("train", subset, SUBSETS)
        if "head" in self.train and "head-lora" in self.train:
            raise PerpError("train", "choose either 'head' (train the whole head) or 'head-lora' (a LoRA on the head), not both")
        check_choice("adapter", self.adapter, ADAPTERS)
        if "full" in self.train and self.adapter != "none":
            raise PerpError("adapter", f"'{self.adapter}' with train 'full' makes no sense; full retraining already trains every weight")
        if self.mode == "none" and (self.train or self.adapter != "none"):
            raise PerpError("mode", "is 'none' but train subsets or an adapter were given; use mode 'retrain' or 'reconstruct'")
        if self.mode != "none" and not self.train and self.adapter == "none":
            raise PerpError("train", f"mode '{self.mode}' needs something to train: subsets from {', '.join(SUBSETS)} and/or an adapter")
        if self.mode == "reconstruct" and {"head", "head-lora", "embeddings"} & set(self.train):
            raise PerpError("train", "reconstruct works block by block; the head and embeddings are outside the blocks (use biases, norms, full or an adapter)")
        _positive("rank", self.rank)
        if not float(self.alpha) > 0:
            raise PerpError("alpha", f"{self.alpha!r} is not allowed; use a positive number (scaling is alpha / rank)")
        _positive("steps", self.steps)
        if not 0 < float(self.lr) < 1:
            raise PerpError("lr", f"{self.lr!r} is not allowed; use a learning rate in (0, 1), e.g. 2e-3")
        _positive("batch_size", self.batch_size)
        _positive("grad_accum", self.grad_accum)
        if not 0 <= float(self.warmup_ratio) < 1:
            raise PerpError("warmup_ratio", f"{self.warmup_ratio!r} is not allowed; use a fraction in [0, 1)")
        if not float(self.weight_decay) >= 0:
            raise PerpError("weight_decay", f"{self.weight_decay!r} is not allowed; use a number >= 0")
        if not 0 <= float(self.max_grad_norm) < float("inf"):
            raise PerpError("max_grad_norm", f"{self.max_grad_norm!r} is not allowed; use a number >= 0 (0 turns clipping off), e.g. 1.0")
        _positive("eval_every", self.eval_every, minimum=0,
                  why="optimizer steps between learning-curve points; 0 = no curve")
        if not isinstance(self.train_samples, int) or self.train_samples < 0:
            raise PerpError("train_samples", f"{self.train_samples!r} is not allowed; use 0 (steps x batch size) or a positive count")
        if not (self.device in DEVICES or re.match(r"^cuda:\d+$", str(self.device))):
            raise PerpError("device", f"{self.device!r} is not allowed; use one of {', '.join(DEVICES)} or cuda:N")
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("offload", self.offload, OFFLOADS)
        _positive("zero_shot_limit", self.zero_shot_limit, minimum=0, why="docs per task, a seeded subset; 0 = all")
        for model in self.zero_shot_on:
            check_choice("zero_shot_on", model, ZERO_SHOT_MODELS)
        if self.zero_shot and not self.zero_shot_on:
            raise PerpError("zero_shot_on", f"is empty; name the models to score: {', '.join(ZERO_SHOT_MODELS)}")
        if self.zero_shot_samples is not None and not self.zero_shot:
            raise PerpError("zero_shot_samples", "needs tasks to score; give zero_shot (e.g. 'paper')")

    def _validate_pruning_modes(self, nm) -> None:
        """The allocation, the RIA knobs and the refinement: each in range, and combined only where defined."""
        check_choice("allocation", self.allocation, ALLOCATIONS)
        check_choice("refine", self.refine, REFINES)
        check_choice("sequential", self.sequential, SEQUENTIAL_MODES)
        if self.allocation == "owl":
            if nm is not None:
                raise PerpError("allocation", f"'owl' gives every block its own sparsity, which the {self.pattern} "
                                              "pattern fixes at N/M; use allocation 'uniform' with an N:M pattern")
            if not float(self.owl_m) > 0:
                raise PerpError("owl_m", f"{self.owl_m!r} is not allowed; use a number > 0 (outliers score above M "
                                         "times their block's mean), e.g. 5")
            widest = min(float(self.sparsity), 1.0 - float(self.sparsity)) / 2
            if not 0 <= float(self.owl_lambda) <= widest:
                raise PerpError("owl_lambda", f"{self.owl_lambda!r} with sparsity {self.sparsity} is not allowed: "
                                              f"block sparsities spread up to 2 x lambda around the target and must "
                                              f"stay in [0, 1); use a number in [0, {widest:.4g}], e.g. 0.08")
        if not float(self.ria_power) >= 0:
            raise PerpError("ria_power", f"{self.ria_power!r} is not allowed; use a number >= 0 (the power of the "
                                         "activation norm in RIA's score), e.g. 0.5")
        check_choice("ria_permute", self.ria_permute, RIA_PERMUTATIONS)
        check_choice("dsnot_skip_layer", self.dsnot_skip_layer, DSNOT_SKIP_LAYERS)
        check_choice("dsnot_same_sign", self.dsnot_same_sign, tuple(DSNOT_SAME_SIGN))
        _positive("dsnot_max_cycles", self.dsnot_max_cycles, minimum=0, why="grow/prune swaps per row; 0 = none")
        for name in ("dsnot_update_threshold", "dsnot_pow_of_var_regrowing"):
            if not float(getattr(self, name)) >= 0:
                raise PerpError(name, f"{getattr(self, name)!r} is not allowed; use a number >= 0")
        if self.ria_permute != "none" and (self.method != "ria" or nm is None):
            raise PerpError("ria_permute", f"'{self.ria_permute}' is RIA's channel permutation for N:M patterns; use "
                                           "it with method 'ria' and a pattern such as 2:4, or 'none'")

    @property
    def dsnot_options(self) -> dict:
        """DSnoT's knobs, the ``dsnot_*`` fields, as keyword arguments of :func:`perp_engine.pruning.dsnot.refine_dsnot`."""
        return {"skip_layer": self.dsnot_skip_layer, "max_cycles": self.dsnot_max_cycles,
                "update_threshold": self.dsnot_update_threshold,
                "pow_of_var_regrowing": self.dsnot_pow_of_var_regrowing,
                "same_sign": DSNOT_SAME_SIGN[self.dsnot_same_sign]}

    @property
    def prune_settings(self) -> dict:
        """The fields that decide the pruned weights (with the model, its dtype and device): the key of the pruned
        model in the artifact cache, and what a sweep's estimate counts as one pruning."""
        return {name: getattr(self, name) for name in PRUNE_FIELDS}


PRUNE_FIELDS = ("method", "sparsity", "pattern", "seed", "calib_samples", "seqlen", "blocksize", "percdamp",
                "allocation", "owl_m", "owl_lambda", "ria_power", "ria_permute", "refine", "dsnot_skip_layer",
                "dsnot_max_cycles", "dsnot_update_threshold", "dsnot_pow_of_var_regrowing", "dsnot_same_sign", "sequential")


def method_label(config: dict) -> str:
    """What pruned a run, from its config as a dict: ``wanda``, ``wanda + OWL + DSnoT``, ``ria (lsa)``. Knobs set
    away from their defaults are named (``wanda + OWL (λ 0.05)``, ``ria (power 1)``, ``DSnoT (max_cycles 20)``),
    so two runs that pruned differently never share a label. Runs recorded before these fields existed read as
    the defaults they ran with. The app's charts and ``perp runs`` label runs with it."""
    method = str(config.get("method"))
    if method == "ria":
        permute = [config["ria_permute"]] if config.get("ria_permute", "none") != "none" else []
        method += _knobs(config, {"ria_power": "power"}, permute)
    parts = [method]
    if config.get("allocation", "uniform") == "owl":
        parts.append("OWL" + _knobs(config, {"owl_m": "M", "owl_lambda": "λ"}))
    if config.get("refine", "none") == "dsnot":
        parts.append("DSnoT" + _knobs(config, {f.name: f.name.removeprefix("dsnot_") for f in fields(RunConfig)
                                                if f.name.startswith("dsnot_")}))
    label = " + ".join(parts)
    return f"{label}, true-sequential" if config.get("sequential", "block") == "layer" else label


def _knobs(config: dict, names: dict[str, str], first=()) -> str:
    """`` (first, name value, ...)`` for the fields of ``names`` that differ from their defaults; ``""`` if none."""
    defaults = {f.name: f.default for f in fields(RunConfig)}
    changed = [f"{short} {value:g}" if isinstance(value, float) else f"{short} {value}"
               for name, short in names.items()
               if (value := config.get(name, defaults[name])) != defaults[name]
               and not (isinstance(value, (int, float)) and math.isclose(value, defaults[name], rel_tol=1e-9))]
    knobs = [*first, *changed]
    return f" ({', '.join(knobs)})" if knobs else ""


def zero_shot_limit_value(text: str) -> int:
    """A docs-per-task limit from text: a count, or ``all`` (0). PerpError naming zero_shot_limit otherwise."""
    if text == ALL_DOCS:
        return 0
    try:
        return int(text)
    except ValueError:
        raise PerpError("zero_shot_limit", f"use a number of docs per task or '{ALL_DOCS}', not {text!r}") from None


def zero_shot_tasks(names) -> tuple[str, ...]:
    """Task names (a comma-separated string or a sequence; ``paper`` = all of :data:`ZERO_SHOT_TASKS`), each once,
    in that order. PerpError("zero_shot", ...) for an unknown name."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = set()
    for name in names:
        if name == "paper":
            chosen.update(ZERO_SHOT_TASKS)
        elif name in ZERO_SHOT_TASKS:
            chosen.add(name)
        else:
            raise PerpError("zero_shot", f"unknown task {name!r}; allowed: paper, {', '.join(ZERO_SHOT_TASKS)}")
    return tuple(t for t in ZERO_SHOT_TASKS if t in chosen)


def _positive(name: str, value, minimum: int = 1, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PerpError(name, f"{value!r} is not allowed; use an integer >= {minimum}" + (f" ({why})" if why else ""))


def _dataset(name: str, value) -> None:
    if not isinstance(value, str) or not value:
        raise PerpError(name, f"use one of {', '.join(NAMED_DATASETS)} or the path of a text file")
    if value in NAMED_DATASETS or value.startswith("file:"):
        return
    import os

    if not os.path.isfile(value):
        raise PerpError(name, f"{value!r} is neither a known data set ({', '.join(NAMED_DATASETS)}) nor an existing text file")


def field_values(data) -> dict:
    """RunConfig field values from a JSON object (a config file, a sweep's base or one grid point): every name a
    field, every value of the field's type (JSON lists for tuples, ints for floats), ``null`` only where the
    field allows None. PerpError naming the field otherwise."""
    if not isinstance(data, dict):
        raise PerpError("config", f"expected a JSON object of RunConfig fields, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise PerpError("config", f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    return {k: _coerce(_FIELDS[k], v) for k, v in data.items()}


def _coerce(f: dataclasses.Field, value):
    """JSON gives lists for tuples and ints for floats; accept those, reject wrong types with the field named."""
    kind = str(f.type)
    if value is None:
        if kind.endswith("| None"):
            return None
        raise PerpError(f.name, "null is not allowed; leave the field out to get its default")
    if kind.endswith("| None"):
        kind = kind[: -len("| None")].strip()
    if kind.startswith("tuple"):
        if isinstance(value, str):
            return value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise PerpError(f.name, f"expected a list of strings or a comma-separated string, got {value!r}")
        return tuple(value)
    if f.name == "zero_shot_limit" and value == ALL_DOCS:
        return 0
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "float" and not isinstance(value, float):
        raise PerpError(f.name, f"expected a number, got {value!r}")
    if kind == "float" and not math.isfinite(value):
        raise PerpError(f.name, f"{value!r} is not allowed; use a finite number")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise PerpError(f.name, f"expected an integer, got {value!r}")
    if kind == "bool" and not isinstance(value, bool):
        raise PerpError(f.name, f"expected true or false, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise PerpError(f.name, f"expected a string, got {value!r}")
    return value


_FIELDS = {f.name: f for f in fields(RunConfig)}
