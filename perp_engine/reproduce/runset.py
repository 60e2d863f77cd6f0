"""The fixed set of runs that tests PERP's three claims, and its sizes.

- Claim 1 (a tiny subset matches full retraining): magnitude pruning at 30/50/60/70% with ``none``,
  ``norms-only``, ``perp`` and ``full-ft``, the same number of steps each, each at its preset's learning rate.
- Claim 2 (sparse adapters close the rest of the gap and merge without breaking sparsity): magnitude at 60/70%
  with ``perp``, ``perp-masklora``, ``perp-scalelora``, ``perp-scalelora-paper`` and ``perp-lora`` (plain LoRA,
  kept unmerged), against ``full-ft``.
- Claim 3 (reconstruction with the adapters improves retraining-free pruning): Wanda and SparseGPT at 50% and
  2:4 with ``none``, ``recon-norms``, ``recon-masklora`` and ``recon-scalelora``; their memory against
  ``full-ft``'s at magnitude 50% (memory does not depend on which weights are zero).

A run two claims need (``perp`` and ``full-ft`` at 60/70%) is one run. Every run shares ``FULL_SIZES``, chosen
so that the whole set fits 90 minutes on 2 CPU cores by :mod:`perp_engine.resources.estimate`'s cost model (about 84);
``QUICK_SIZES`` run the same set on the tiny model of :mod:`perp_engine.reproduce.tiny` in about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import DEFAULT_MODEL, RunConfig

DEFAULT_DATASET = "wiki-embedded"
# 10 steps of 4 x 128 tokens per recipe (per block when reconstructing), 16 calibration windows of 128 tokens,
# perplexity on 4,096 held-out tokens (32 windows).
FULL_SIZES = {"seqlen": 128, "batch_size": 4, "steps": 10, "calib_samples": 16, "eval_tokens": 4096}
QUICK_SIZES = {"seqlen": 32, "batch_size": 2, "steps": 3, "calib_samples": 4, "eval_tokens": 256}

CLAIM1_SPARSITIES = (0.3, 0.5, 0.6, 0.7)
CLAIM1_RECIPES = ("none", "norms-only", "perp", "full-ft")
CLAIM2_SPARSITIES = (0.6, 0.7)
CLAIM2_ADAPTERS = ("perp-masklora", "perp-scalelora", "perp-scalelora-paper")
CLAIM2_RECIPES = ("perp", *CLAIM2_ADAPTERS, "perp-lora", "full-ft")
CLAIM3_SPARSITY = 0.5
CLAIM3_PRUNINGS = (("wanda", "unstructured"), ("wanda", "2:4"), ("sparsegpt", "unstructured"), ("sparsegpt", "2:4"))
CLAIM3_ADAPTERS = ("recon-masklora", "recon-scalelora")
CLAIM3_RECIPES = ("none", "recon-norms", *CLAIM3_ADAPTERS)
MEMORY_REFERENCE = ("magnitude", 0.5, "unstructured", "full-ft")  # claim 3's full retraining, run for claim 1


def run_key(method: str, sparsity: float, pattern: str, preset: str) -> str:
    """``magnitude 50% perp`` or ``wanda 2:4 recon-norms``: names one run of the set."""
    amount = pattern if pattern != "unstructured" else f"{sparsity:.0%}"
    return f"{method} {amount} {preset}"


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
    """The set on ``model`` and ``dataset`` with ``sizes`` (default ``FULL_SIZES``), in claim order; every run
    scores zero-shot as ``zero_shot``'s RunConfig fields say (``{"zero_shot": "paper"}``...; none by default)."""
    sizes = dict(FULL_SIZES if sizes is None else sizes)
    zero_shot = {k: v for k, v in (zero_shot or {}).items() if v is not None}
    if not zero_shot.get("zero_shot"):  # a limit or models without tasks score nothing: the set stays as it is
        zero_shot = {}
    wanted: dict[tuple, set[int]] = {}
    for sparsity in CLAIM1_SPARSITIES:
        for preset in CLAIM1_RECIPES:
            wanted.setdefault(("magnitude", sparsity, "unstructured", preset), set()).add(1)
    for sparsity in CLAIM2_SPARSITIES:
        for preset in CLAIM2_RECIPES:
            wanted.setdefault(("magnitude", sparsity, "unstructured", preset), set()).add(2)
    for method, pattern in CLAIM3_PRUNINGS:
        for preset in CLAIM3_RECIPES:
            wanted.setdefault((method, CLAIM3_SPARSITY, pattern, preset), set()).add(3)
    wanted[MEMORY_REFERENCE].add(3)
    runs = tuple(
        Planned(key=run_key(*point), claims=tuple(sorted(claims)),
                config=RunConfig.create(point[3], model=model, dataset=dataset, method=point[0], sparsity=point[1],
                                        pattern=point[2], device=device, **sizes, **zero_shot))
        for point, claims in wanted.items())
    fields = runs[0].config.to_dict()  # the zero-shot fields as validated (task names expanded, in order)
    return RunSet(model=model, dataset=dataset, sizes=sizes, quick=quick, runs=runs,
                  zero_shot={k: fields[k] for k in zero_shot})


def quick_set(home=None, zero_shot: dict | None = None) -> RunSet:
    """The same set on the tiny random LLaMA and text of :mod:`perp_engine.reproduce.tiny`, built once under
    ``<PERP home>/reproduce`` (so a second quick run finds its runs in the store), with ``QUICK_SIZES``."""
    from ..paths import resolve_home
    from .tiny import ensure_tiny_setup

    model, text = ensure_tiny_setup(resolve_home(home) / "reproduce")
    return paper_set(str(model), str(text), QUICK_SIZES, quick=True, zero_shot=zero_shot)
