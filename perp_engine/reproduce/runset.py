"""The fixed set of runs that tests PERP's three claims, at a budget that can decide them, and its sizes.

- Claim 1 (a tiny subset matches full retraining): magnitude pruning at 50/70% with ``none``, ``norms-only``,
  ``perp`` and ``full-ft``, 100 steps each, each at its preset's learning rate, with learning curves.
- Claim 2 (sparse adapters close the rest of the gap and merge without breaking sparsity): magnitude at 70% with
  ``perp``, ``perp-masklora``, ``perp-scalelora``, ``perp-scalelora-paper`` and ``perp-lora`` (plain LoRA, kept
  unmerged), against ``full-ft``, whose learning rate is swept there (``LR_SWEEP``): the gap the adapters must close
  is measured against the best full retraining of the sweep, not one that a rate held back.
- Claim 3 (reconstruction with the adapters improves retraining-free pruning): Wanda and SparseGPT at 50% and 2:4
  with ``none``, ``recon-masklora`` and ``recon-scalelora``, 50 steps per block, with each block's curve; their
  memory against ``full-ft``'s at magnitude 50% (memory does not depend on which weights are zero).

A run two claims need (``perp`` and ``full-ft`` at 70%) is one run. ``FULL_SIZES`` are the deciding budget: about
100 minutes on 2 CPU cores (the report states what it took); ``QUICK_SIZES`` run the same set on the tiny model of
:mod:`perp_engine.reproduce.tiny` in under a minute. Zero-shot accuracy, when asked for, is scored on the runs of
the retraining claims (``ZERO_SHOT_CLAIMS``), whose final models the paper compares by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import DEFAULT_MODEL, RunConfig

DEFAULT_DATASET = "wiki-embedded"
# Retraining: 100 steps of 4 x 128 tokens, a held-out perplexity every 20 steps (each costs one evaluation of the
# 4,096 held-out tokens); reconstruction: 50 steps per block, each block's held-out error every 10 steps. 16
# calibration windows of 128 tokens; perplexity on 4,096 held-out tokens (32 windows).
FULL_SIZES = {"seqlen": 128, "batch_size": 4, "steps": 100, "eval_every": 20, "calib_samples": 16, "eval_tokens": 4096,
              "recon_steps": 50, "recon_eval_every": 10}
QUICK_SIZES = {"seqlen": 32, "batch_size": 2, "steps": 4, "eval_every": 2, "calib_samples": 4, "eval_tokens": 256,
               "recon_steps": 2, "recon_eval_every": 1}
RECON_SIZES = {"recon_steps": "steps", "recon_eval_every": "eval_every"}  # what a reconstruction run takes instead

CLAIM1_SPARSITIES = (0.5, 0.7)
CLAIM1_RECIPES = ("none", "norms-only", "perp", "full-ft")
CLAIM2_SPARSITIES = (0.7,)
CLAIM2_ADAPTERS = ("perp-masklora", "perp-scalelora", "perp-scalelora-paper")
CLAIM2_RECIPES = ("perp", *CLAIM2_ADAPTERS, "perp-lora", "full-ft")
CLAIM3_SPARSITY = 0.5
CLAIM3_PRUNINGS = (("wanda", "unstructured"), ("wanda", "2:4"), ("sparsegpt", "unstructured"), ("sparsegpt", "2:4"))
CLAIM3_ADAPTERS = ("recon-masklora", "recon-scalelora")
CLAIM3_RECIPES = ("none", *CLAIM3_ADAPTERS)
MEMORY_REFERENCE = ("magnitude", 0.5, "unstructured", "full-ft")  # claim 3's full retraining, run for claim 1
# Learning rates run besides the preset's, by (preset, sparsity): full retraining at 70%, the baseline of claim 2's
# gap and of claim 1's hardest point, around its preset rate 2e-4 (the best of three at 30 steps, bench/lr_bench.py).
LR_SWEEP = {("full-ft", 0.7): (1e-4, 5e-4)}
ZERO_SHOT_CLAIMS = (1, 2)
# What the deciding set scores zero-shot unless told otherwise: the seven tasks, 50 docs each (standard errors near
# 7 points: a table that tells a destroyed model from a working one, not two close recipes apart).
FULL_ZERO_SHOT = {"zero_shot": "paper", "zero_shot_limit": 50}


def run_key(method: str, sparsity: float, pattern: str, preset: str, lr: float | None = None) -> str:
    """``magnitude 50% perp``, ``wanda 2:4 recon-masklora`` or ``magnitude 70% full-ft lr 0.0001`` (a rate of
    ``LR_SWEEP``, not the preset's): names one run of the set."""
    amount = pattern if pattern != "unstructured" else f"{sparsity:.0%}"
    return f"{method} {amount} {preset}" + (f" lr {lr:g}" if lr is not None else "")


def swept_keys(preset: str, sparsity: float) -> list[str]:
    """The keys of ``preset``'s runs at magnitude ``sparsity``: its preset rate first, then those of ``LR_SWEEP``."""
    return [run_key("magnitude", sparsity, "unstructured", preset),
            *(run_key("magnitude", sparsity, "unstructured", preset, lr) for lr in LR_SWEEP.get((preset, sparsity), ()))]


@dataclass(frozen=True)
class Planned:
    """One run of the set: its key, the claims that use it, its config."""

    key: str
    claims: tuple[int, ...]
    config: RunConfig

    def to_dict(self) -> dict:
        return {"key": self.key, "claims": list(self.claims), "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "Planned":
        return cls(key=data["key"], claims=tuple(data["claims"]), config=RunConfig.from_dict(data["config"]))


@dataclass(frozen=True)
class RunSet:
    """The runs of one reproduction: which model and text, which sizes, whether it is the quick one, and the
    zero-shot fields every run gets (``zero_shot``, ``zero_shot_limit``, ``zero_shot_on``; empty: none scored)."""

    model: str
    dataset: str
    sizes: dict
    quick: bool
    runs: tuple[Planned, ...]
    zero_shot: dict = field(default_factory=dict)

    @property
    def configs(self) -> list[RunConfig]:
        return [p.config for p in self.runs]

    def to_dict(self) -> dict:
        return {"model": self.model, "dataset": self.dataset, "sizes": dict(self.sizes), "quick": self.quick,
                "zero_shot": dict(self.zero_shot), "runs": [p.to_dict() for p in self.runs]}

    @classmethod
    def from_dict(cls, data: dict) -> "RunSet":
        return cls(model=data["model"], dataset=data["dataset"], sizes=dict(data["sizes"]), quick=bool(data["quick"]),
                   runs=tuple(Planned.from_dict(p) for p in data["runs"]), zero_shot=dict(data.get("zero_shot") or {}))


def paper_set(model: str = DEFAULT_MODEL, dataset: str = DEFAULT_DATASET, sizes: dict | None = None, *,
              quick: bool = False, device: str = "auto", zero_shot: dict | None = None) -> RunSet:
    """The set on ``model`` and ``dataset`` with ``sizes`` (default ``FULL_SIZES``), in claim order; the runs of
    ``ZERO_SHOT_CLAIMS`` score zero-shot as ``zero_shot``'s RunConfig fields say (``{"zero_shot": "paper"}``...;
    None: ``FULL_ZERO_SHOT``, or nothing for a ``quick`` set; ``{}``: nothing)."""
    sizes = dict(FULL_SIZES if sizes is None else sizes)
    if zero_shot is None:
        zero_shot = {} if quick else FULL_ZERO_SHOT
    zero_shot = {k: v for k, v in zero_shot.items() if v is not None}
    if not zero_shot.get("zero_shot"):  # a limit or models without tasks score nothing: the set stays as it is
        zero_shot = {}
    wanted: dict[tuple, set[int]] = {}
    for sparsity in CLAIM1_SPARSITIES:
        for preset in CLAIM1_RECIPES:
            wanted.setdefault(("magnitude", sparsity, "unstructured", preset, None), set()).add(1)
    for sparsity in CLAIM2_SPARSITIES:
        for preset in CLAIM2_RECIPES:
            wanted.setdefault(("magnitude", sparsity, "unstructured", preset, None), set()).add(2)
    for (preset, sparsity), rates in LR_SWEEP.items():
        claims = wanted[("magnitude", sparsity, "unstructured", preset, None)]
        for lr in rates:
            wanted[("magnitude", sparsity, "unstructured", preset, lr)] = set(claims)
    for method, pattern in CLAIM3_PRUNINGS:
        for preset in CLAIM3_RECIPES:
            wanted.setdefault((method, CLAIM3_SPARSITY, pattern, preset, None), set()).add(3)
    wanted[(*MEMORY_REFERENCE, None)].add(3)
    runs = tuple(Planned(key=run_key(*point), claims=tuple(sorted(claims)),
                         config=_config(point, model, dataset, device, sizes,
                                        zero_shot if set(claims) & set(ZERO_SHOT_CLAIMS) else {}))
                 for point, claims in wanted.items())
    fields = next((p.config.to_dict() for p in runs if p.config.zero_shot), {})  # as validated (tasks expanded)
    return RunSet(model=model, dataset=dataset, sizes=sizes, quick=quick, runs=runs,
                  zero_shot={k: fields[k] for k in zero_shot if k in fields})


def _config(point: tuple, model: str, dataset: str, device: str, sizes: dict, zero_shot: dict) -> RunConfig:
    """The RunConfig of one point (method, sparsity, pattern, preset, swept lr or None) at ``sizes``: a
    reconstruction takes the ``recon_`` sizes as its steps and curve interval."""
    method, sparsity, pattern, preset, lr = point
    fields = {k: v for k, v in sizes.items() if k not in RECON_SIZES}
    if RunConfig.create(preset).mode == "reconstruct":
        fields.update({name: sizes[key] for key, name in RECON_SIZES.items() if key in sizes})
    return RunConfig.create(preset, model=model, dataset=dataset, method=method, sparsity=sparsity, pattern=pattern,
                            device=device, lr=lr, **fields, **zero_shot)


def quick_set(home=None, zero_shot: dict | None = None) -> RunSet:
    """The same set on the tiny random LLaMA and text of :mod:`perp_engine.reproduce.tiny`, built once under
    ``<PERP home>/reproduce`` (so a second quick run finds its runs in the store), with ``QUICK_SIZES``."""
    from ..paths import resolve_home
    from .tiny import ensure_tiny_setup

    model, text = ensure_tiny_setup(resolve_home(home) / "reproduce")
    return paper_set(str(model), str(text), QUICK_SIZES, quick=True, zero_shot=zero_shot)
