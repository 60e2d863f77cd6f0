"""prune_weight over every method x pattern x shape: exact counts, valid N:M groups, the selection rule,
untouched inputs, kept dtype, and one-line errors naming the field."""

import math
from fractions import Fraction

import pytest
import torch

from perp_engine.errors import PerpError
from perp_engine.pruning import LayerStats, prune_weight

METHODS = ["magnitude", "wanda", "sparsegpt", "random"]
PATTERNS = [("unstructured", 0.3), ("unstructured", 0.5), ("unstructured", 0.7), ("2:4", 0.5), ("4:8", 0.5)]
SHAPES = [(16, 32), (7, 40), (9, 24)]


def _floor(n, sparsity):
    """floor(n * sparsity) in exact decimal arithmetic (280 * 0.7 is 195.99999999999997 in floats)."""
    return math.floor(Fraction(str(sparsity)) * n)


def _case(shape, seed=0, hessian=True):
    out, width = shape
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-1, 1, width)[torch.randperm(width, generator=g)]
    x = (torch.randn(96, width, generator=g) @ torch.randn(width, width, generator=g)) * scales
    stats = LayerStats(width, hessian=hessian)
    stats.add_batch(x)
    return torch.randn(out, width, generator=g), stats


def _nm(pattern):
    return None if pattern == "unstructured" else tuple(int(v) for v in pattern.split(":"))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("pattern,sparsity", PATTERNS, ids=lambda p: str(p))
@pytest.mark.parametrize("method", METHODS)
def test_exact_counts_and_valid_masks(method, pattern, sparsity, shape):
    w, stats = _case(shape)
    w_before, H_before = w.clone(), stats.H.clone()
    new_w, mask = prune_weight(w, method, sparsity, pattern, stats=stats, blocksize=16)
    out, width = shape
    assert mask.dtype == torch.bool and mask.shape == w.shape and new_w.shape == w.shape
    assert torch.equal(w, w_before) and torch.equal(stats.H, H_before)
    assert torch.all(new_w[~mask] == 0)
    nm = _nm(pattern)
    if nm is not None:
        pruned_per_group = (~mask).reshape(out, width // nm[1], nm[1]).sum(-1)
        assert torch.all(pruned_per_group == nm[0])
    elif method == "wanda":
        assert torch.all((~mask).sum(1) == _floor(width, sparsity))
    else:
        assert int((~mask).sum()) == _floor(out * width, sparsity)
    if method != "sparsegpt":
        assert torch.equal(new_w[mask], w[mask])


def _score(method, w, stats):
    return w.abs() * stats.sq_mean.sqrt() if method == "wanda" else w.abs()


@pytest.mark.parametrize("pattern,sparsity", PATTERNS, ids=lambda p: str(p))
@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_pruned_scores_never_exceed_kept_scores(method, pattern, sparsity):
    """magnitude: one threshold per matrix; wanda: per output row; both: per group under N:M."""
    w, stats = _case((12, 32), seed=1)
    _, mask = prune_weight(w, method, sparsity, pattern, stats=stats)
    score = _score(method, w, stats)
    nm = _nm(pattern)
    if nm is not None:
        score, mask = score.reshape(-1, nm[1]), mask.reshape(-1, nm[1])
    elif method == "magnitude":
        score, mask = score.reshape(1, -1), mask.reshape(1, -1)
    highest_pruned = score.masked_fill(mask, -1.0).max(1).values
    lowest_kept = score.masked_fill(~mask, float("inf")).min(1).values
    assert torch.all(highest_pruned <= lowest_kept)


def test_wanda_ranks_per_row_not_per_matrix():
    """Row 1 is 100x larger: one matrix threshold would prune row 0 entirely, wanda halves each row."""
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [100.0, 200.0, 300.0, 400.0]])
    stats = LayerStats(4, hessian=False)
    stats.add_batch(torch.ones(3, 4))
    _, wanda_mask = prune_weight(w, "wanda", 0.5, stats=stats)
    _, magnitude_mask = prune_weight(w, "magnitude", 0.5)
    assert wanda_mask.tolist() == [[False, False, True, True], [False, False, True, True]]
    assert magnitude_mask.tolist() == [[False, False, False, False], [True, True, True, True]]


def test_ties_are_broken_deterministically_with_exact_count():
    w = torch.ones(4, 10)
    _, mask = prune_weight(w, "magnitude", 0.45)
    assert int((~mask).sum()) == 18
    assert torch.equal(~mask.flatten(), torch.arange(40) < 18)


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("2:4", 0.5)])
def test_random_is_seeded_and_independent_of_the_weights(pattern, sparsity):
    w, _ = _case((8, 16))
    first = prune_weight(w, "random", sparsity, pattern, seed=3)[1]
    assert torch.equal(first, prune_weight(w * 5 - 1, "random", sparsity, pattern, seed=3)[1])
    assert not torch.equal(first, prune_weight(w, "random", sparsity, pattern, seed=4)[1])


@pytest.mark.parametrize("method", METHODS)
def test_sparsity_zero_returns_the_weight_unchanged(method):
    w, stats = _case((6, 16))
    new_w, mask = prune_weight(w, method, 0.0, stats=stats)
    assert torch.equal(new_w, w) and bool(mask.all())
    assert new_w.data_ptr() != w.data_ptr()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("method", METHODS)
def test_dtype_is_kept(method, dtype):
    w, stats = _case((8, 16))
    w = w.to(dtype)
    before = w.clone()
    new_w, mask = prune_weight(w, method, 0.5, "2:4", stats=stats)
    assert new_w.dtype == dtype and new_w.device == w.device
    assert torch.equal(w, before)
    assert int((~mask).sum()) == 64 and torch.all(new_w[~mask] == 0)


def test_wanda_needs_only_the_cheap_statistics():
    w, stats = _case((8, 16), hessian=False)
    _, mask = prune_weight(w, "wanda", 0.5, stats=stats)
    assert torch.all((~mask).sum(1) == 8)


_W = torch.randn(4, 8)


def _stats(width=8, hessian=True, filled=True):
    stats = LayerStats(width, hessian=hessian)
    if filled:
        stats.add_batch(torch.randn(5, width))
    return stats


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(method="obs"), "method"),
        (dict(method="magnitude", pattern="2of4"), "pattern"),
        (dict(method="magnitude", pattern="4:2"), "pattern"),
        (dict(method="magnitude", pattern="3:5", sparsity=0.6), "pattern"),
        (dict(method="magnitude", sparsity=1.0), "sparsity"),
        (dict(method="magnitude", sparsity=-0.1), "sparsity"),
        (dict(method="magnitude", sparsity="0.5"), "sparsity"),
        (dict(method="magnitude", sparsity=0.6, pattern="2:4"), "sparsity"),
        (dict(method="wanda"), "stats"),
        (dict(method="sparsegpt"), "stats"),
        (dict(method="wanda", stats="stats"), "stats"),
        (dict(method="wanda", stats=_stats(width=9)), "stats"),
        (dict(method="magnitude", stats=_stats(width=9)), "stats"),
        (dict(method="wanda", stats=_stats(filled=False)), "stats"),
        (dict(method="sparsegpt", stats=_stats(hessian=False)), "stats"),
        (dict(method="sparsegpt", stats=_stats(), blocksize=0), "blocksize"),
        (dict(method="sparsegpt", stats=_stats(), percdamp=0.0), "percdamp"),
        (dict(method="sparsegpt", stats=_stats(), percdamp=2.0), "percdamp"),
        (dict(method="random", seed=-1), "seed"),
        (dict(method="random", log="print"), "log"),
        (dict(method="magnitude", w=_W[0]), "weight"),
        (dict(method="magnitude", w=_W.long()), "weight"),
        (dict(method="magnitude", w=_W.clone().fill_(float("nan"))), "weight"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_names_the_field(kwargs, field):
    kwargs = {"w": _W, **kwargs}
    with pytest.raises(PerpError) as err:
        prune_weight(**kwargs)
    assert err.value.field == field
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_parameters_are_read_not_tracked(sparsity):
    weight = torch.nn.Linear(16, 4).weight
    before = weight.detach().clone()
    new_w, _ = prune_weight(weight, "magnitude", sparsity)
    assert not new_w.requires_grad and torch.equal(weight.detach(), before)
