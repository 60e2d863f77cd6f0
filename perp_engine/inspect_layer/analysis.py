"""How magnitude, Wanda, SparseGPT, RIA and Wanda refined by DSnoT prune one captured linear, and what each costs
in local output error.

Every mask and pruned weight comes from :func:`perp_engine.pruning.prune_weight` with the calibration
statistics, exactly as a run prunes that layer (RIA with its default power, no channel permutation); the DSnoT
variant refines Wanda's result with :func:`perp_engine.pruning.dsnot.refine_dsnot` and its defaults, except that
it refines every linear (``skip_layer="no_skip"``): a run's DSnoT refines the attention linears only, as the
official code, but here the point is to see what it does to the layer chosen. The local error
||W X - W' X||^2 / ||W X||^2 is computed on the held-out inputs with
:func:`perp_engine.pruning.reconstruction_error` (exact, from their Hessian).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch

from ..config import RunConfig, parse_pattern
from ..pruning import prune_weight, reconstruction_error
from ..pruning.dsnot import refine_dsnot
from ..pruning.ria import ria_score
from ..pruning.wanda import wanda_score
from .capture import LayerCapture

DSNOT = "wanda+dsnot"  # Wanda's mask refined by DSnoT
INSPECT_METHODS = ("magnitude", "wanda", "sparsegpt", "ria", DSNOT)
CURVE_SPARSITIES = tuple(i / 10 for i in range(10))  # 0% to 90%


@dataclass(frozen=True)
class LayerInspection:
    """One linear pruned by each of :data:`INSPECT_METHODS` at one sparsity and pattern; every tensor (out, in) on
    the CPU.

    ``masks`` (True = kept) and ``weights`` are ``prune_weight``'s results (``refine_dsnot``'s for the DSnoT
    variant); ``overlap[a][b]`` is the Jaccard index |kept_a & kept_b| / |kept_a | kept_b|; ``agreement[methods]``
    counts the weights kept by exactly those methods (all 2^5 combinations, the empty one = pruned by all);
    ``local_error`` is on held-out inputs; ``sparsegpt_update`` is W' - W on SparseGPT's kept weights and 0 where
    it pruned. ``input_norm`` is sqrt(mean_t x_tj^2) of each input column j on the calibration inputs, the factor
    Wanda multiplies |W| by; ``ria_score`` is RIA's (|W_ij| / sum_i |W_ij| + |W_ij| / sum_j |W_ij|) ·
    ``input_norm_j`` ** RunConfig.ria_power.
    """

    name: str
    sparsity: float
    pattern: str
    weight: torch.Tensor
    input_norm: torch.Tensor
    wanda_score: torch.Tensor
    ria_score: torch.Tensor
    masks: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    overlap: dict[str, dict[str, float]]
    agreement: dict[tuple[str, ...], int]
    local_error: dict[str, float]
    sparsegpt_update: torch.Tensor
    notes: tuple[str, ...]

    @property
    def weight_abs(self) -> torch.Tensor:
        return self.weight.abs()


@dataclass(frozen=True)
class ErrorCurves:
    """Local error on held-out inputs of each method at each (unstructured) sparsity; ``notes`` as in
    :class:`LayerInspection` (damping retries, dead input columns), each said once."""

    sparsities: tuple[float, ...]
    errors: dict[str, tuple[float, ...]]
    notes: tuple[str, ...]


def inspect_layer(layer: LayerCapture, sparsity: float, pattern: str = "unstructured") -> LayerInspection:
    """Prune ``layer`` by each of :data:`INSPECT_METHODS`; PerpError for a sparsity or pattern prune_weight refuses."""
    notes: dict[str, None] = {}
    weights, masks = _prune_all(layer, sparsity, pattern, notes)
    errors = {m: reconstruction_error(layer.weight, w, layer.heldout) for m, w in weights.items()}
    kept = masks["sparsegpt"]
    update = torch.where(kept, weights["sparsegpt"] - layer.weight, torch.zeros_like(layer.weight))
    return LayerInspection(
        name=layer.name, sparsity=float(sparsity), pattern=pattern, weight=layer.weight.cpu(),
        input_norm=layer.calib.sq_mean.sqrt().cpu(), wanda_score=wanda_score(layer.weight, layer.calib.sq_mean).cpu(),
        ria_score=ria_score(layer.weight, layer.calib.sq_mean, RunConfig.ria_power).cpu(),
        masks={m: v.cpu() for m, v in masks.items()}, weights={m: v.cpu() for m, v in weights.items()},
        overlap=_jaccard(masks), agreement=_agreement(masks), local_error=errors, sparsegpt_update=update.cpu(),
        notes=tuple(notes))


def error_curves(layer: LayerCapture, sparsities: tuple[float, ...] = CURVE_SPARSITIES) -> ErrorCurves:
    """Each method's local error (held-out) when ``layer`` alone is pruned, unstructured, at each sparsity."""
    notes: dict[str, None] = {}
    errors: dict[str, list[float]] = {m: [] for m in INSPECT_METHODS}
    for s in sparsities:
        weights, _ = _prune_all(layer, s, "unstructured", notes)
        for method, w in weights.items():
            errors[method].append(reconstruction_error(layer.weight, w, layer.heldout))
    return ErrorCurves(sparsities=tuple(float(s) for s in sparsities), errors={m: tuple(e) for m, e in errors.items()},
                       notes=tuple(notes))


def _prune_all(layer: LayerCapture, sparsity: float, pattern: str,
               notes: dict[str, None]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every method's (weights, masks) for ``layer``; the DSnoT variant refines Wanda's result."""
    weights, masks = {}, {}
    for method in INSPECT_METHODS:
        if method == DSNOT:
            weights[method], masks[method] = refine_dsnot(
                layer.weight, weights["wanda"], masks["wanda"], layer.calib, nm=parse_pattern(pattern),
                name=layer.linear, method="wanda", skip_layer="no_skip")
        else:
            weights[method], masks[method] = prune_weight(layer.weight, method, sparsity, pattern, stats=layer.calib,
                                                          log=_collect(notes, method))
    return weights, masks


def _collect(notes: dict[str, None], method: str):
    """A prune_weight log that keeps each distinct line once, in order (a dict used as an ordered set)."""
    return lambda line: notes.setdefault(f"{method}: {line}")


def _jaccard(masks: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    overlap: dict[str, dict[str, float]] = {m: {m: 1.0} for m in masks}
    for a, b in combinations(masks, 2):
        union = int((masks[a] | masks[b]).sum())
        overlap[a][b] = overlap[b][a] = int((masks[a] & masks[b]).sum()) / union if union else 1.0
    return overlap


def _agreement(masks: dict[str, torch.Tensor]) -> dict[tuple[str, ...], int]:
    """Weights kept by exactly each subset of the methods: one code per weight, bit i = method i keeps it."""
    methods = list(masks)
    code = sum(masks[m].to(torch.int64) << i for i, m in enumerate(methods))
    counts = torch.bincount(code.flatten(), minlength=2 ** len(methods)).tolist()
    return {tuple(m for i, m in enumerate(methods) if c >> i & 1): n for c, n in enumerate(counts)}
