"""RIA: the kernel on hand-worked matrices, its counts and N:M structure, and whole tiny models pruned by
prune_model against the masks of the official code (tests/pruning/references/ria_*.safetensors, written by
scripts/reference_ria.py)."""

from __future__ import annotations

import json

import pytest
import torch
from official_references import block_linears, load_reference, unpack

from perp_engine.config import RIA_PERMUTATIONS as PERMUTATIONS
from perp_engine.model.capture import capture_block_inputs
from perp_engine.pruning import patterns
from perp_engine.pruning.patterns import prune_count
from perp_engine.pruning.ria import _channel_order, prune_ria, ria_score
from perp_engine.pruning.sequential import prune_model

FAMILIES = ["llama", "opt"]
# reference case -> (the official arguments it was run with, our prune_model arguments)
CASES = {
    "unstructured-0.5": ([0.5, "unstructured", {}], dict(sparsity=0.5, pattern="unstructured")),
    "unstructured-0.6": ([0.6, "unstructured", {}], dict(sparsity=0.6, pattern="unstructured")),
    "unstructured-0.7": ([0.7, "unstructured", {}], dict(sparsity=0.7, pattern="unstructured")),
    "unstructured-0.5-a1": ([0.5, "unstructured", {"a": 1.0}],
                            dict(sparsity=0.5, pattern="unstructured", ria_power=1.0)),
    "2:4": ([0.5, "2:4", {}], dict(sparsity=0.5, pattern="2:4")),
    "2:4-reallocation": ([0.5, "2:4", {"reallocation": True}],
                         dict(sparsity=0.5, pattern="2:4", ria_permute="reallocation")),
    "2:4-lsa": ([0.5, "2:4", {"reallocation": True, "lsa": True}],
                dict(sparsity=0.5, pattern="2:4", ria_permute="lsa")),
    "4:8-lsa": ([0.5, "4:8", {"reallocation": True, "lsa": True}],
                dict(sparsity=0.5, pattern="4:8", ria_permute="lsa")),
}

# ---- hand-worked: W (2x4) and sq_mean = [1, 4, 16, 0.25], so sqrt(sq_mean) = [1, 2, 4, 0.5] -----------------------
W = torch.tensor([[1.0, 2.0, 1.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
SQ_MEAN = torch.tensor([1.0, 4.0, 16.0, 0.25])
# column sums of |W| [4, 4, 2, 4], row sums [8, 6]; relative importance |W|/col + |W|/row:
RELATIVE = torch.tensor([[1 / 4 + 1 / 8, 2 / 4 + 2 / 8, 1 / 2 + 1 / 8, 4 / 4 + 4 / 8],   # [0.375, 0.75, 0.625, 1.5]
                         [3 / 4 + 3 / 6, 2 / 4 + 2 / 6, 1 / 2 + 1 / 6, 0.0]])            # [1.25, 0.833, 0.667, 0]
HAND = [  # (power, sparsity, pattern, kept)
    # power 0 scores RELATIVE; one threshold for the matrix: the 3 lowest, 0 (1,3), 0.375 (0,0), 0.625 (0,2), are
    # two of row 0 and one of row 1 (per row, each would lose one)
    (0.0, 0.375, None, [[0, 1, 0, 1], [1, 1, 1, 0]]),
    # 2:4: row 0 drops 0.375, 0.625; row 1 drops 0, 0.667
    (0.0, 0.5, (2, 4), [[0, 1, 0, 1], [1, 1, 0, 0]]),
    # power 1: x [1, 2, 4, 0.5] -> [0.375, 1.5, 2.5, 0.75], [1.25, 1.667, 2.667, 0]; the 4 lowest: 0, 0.375, 0.75, 1.25
    (1.0, 0.5, None, [[0, 1, 1, 0], [0, 1, 1, 0]]),
    # power 2: x [1, 4, 16, 0.25] -> [0.375, 3, 10, 0.375], [1.25, 3.33, 10.67, 0]; the 2 lowest: 0, then of the tie
    # at 0.375 the first in row-major order, (0,0)
    (2.0, 0.25, None, [[0, 1, 1, 1], [1, 1, 1, 0]]),
]


def test_score_by_hand():
    torch.testing.assert_close(ria_score(W, SQ_MEAN, 0.0), RELATIVE)
    torch.testing.assert_close(ria_score(W, SQ_MEAN, 1.0), RELATIVE * torch.tensor([1.0, 2.0, 4.0, 0.5]))
    torch.testing.assert_close(ria_score(W, SQ_MEAN, 0.5), RELATIVE * SQ_MEAN.pow(0.25))


@pytest.mark.parametrize("power,sparsity,nm,kept", HAND)
def test_hand_worked_masks(power, sparsity, nm, kept):
    new_w, mask = prune_ria(W.clone(), SQ_MEAN, sparsity, nm, power=power)
    kept = torch.tensor(kept, dtype=torch.bool)
    assert torch.equal(mask, kept)
    assert torch.equal(new_w, W * kept)


def test_zero_rows_and_columns_score_zero():
    """A column or row of zeros has zero sums: its weights score 0 (not NaN) and are the first pruned."""
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    w[:, 2] = 0.0
    w[1] = 0.0
    score = ria_score(w, torch.ones(8), 0.5)
    assert torch.isfinite(score).all()
    assert (score[w == 0] == 0).all() and (score[w != 0] > 0).all()
    _, mask = prune_ria(w, torch.ones(8), 11 / 32, None)
    assert torch.equal(mask, w != 0)


def test_heuristic_reallocation_by_hand():
    """Inputs by ascending score sum: 1 5 3 7 | 0 6 2 4, cut into M = 4 runs of 2 ([1,5] [3,7] [0,6] [2,4]); run r
    fills position r of each group, reversed for odd r: groups [1,7,0,4] and [5,3,6,2]."""
    score = torch.tensor([[5.0, 1.0, 7.0, 3.0, 8.0, 2.0, 6.0, 4.0]])
    assert _channel_order(score, 2, 4, lsa=False).tolist() == [1, 7, 0, 4, 5, 3, 6, 2]
    _, mask = prune_ria(score.clone(), torch.ones(8), 0.5, (2, 4), power=0.0, permute="reallocation")
    # relative importance of one row is 1 + w / 36: group [1,7,0,4] keeps 0 and 4, group [5,3,6,2] keeps 6 and 2
    assert mask[0].tolist() == [True, False, True, False, True, False, True, False]


@pytest.mark.parametrize("shape", [(16, 32), (7, 40), (33, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_unstructured_prunes_exactly_its_share_of_the_matrix(shape, sparsity):
    w, sq_mean = _random(shape, seed=shape[0])
    new_w, mask = prune_ria(w.clone(), sq_mean, sparsity, None)
    assert int((~mask).sum()) == prune_count(w.numel(), sparsity)
    assert torch.equal(new_w, w * mask)


@pytest.mark.parametrize("permute", PERMUTATIONS)
@pytest.mark.parametrize("nm", [(2, 4), (4, 8), (1, 4)], ids=lambda nm: f"{nm[0]}:{nm[1]}")
def test_n_of_every_m_along_the_channel_order(nm, permute):
    n, m = nm
    w, sq_mean = _random((24, 64), seed=m)
    _, mask = prune_ria(w.clone(), sq_mean, n / m, nm, permute=permute)
    score = ria_score(w, sq_mean, 0.5)
    order = torch.arange(64) if permute == "none" else _channel_order(score, n, m, lsa=permute == "lsa")
    assert sorted(order.tolist()) == list(range(64))
    assert ((~mask[:, order]).reshape(24, -1, m).sum(2) == n).all()


@pytest.mark.parametrize("nm", [(2, 4), (4, 8)], ids=lambda nm: f"{nm[0]}:{nm[1]}")
def test_permutations_keep_at_least_the_score_they_start_from(nm):
    """Each LSA round may keep the current assignment, so LSA keeps at least what the reallocation keeps."""
    w, sq_mean = _random((40, 96), seed=1)
    score = ria_score(w, sq_mean, 0.5)
    kept = {p: float((score * prune_ria(w.clone(), sq_mean, 0.5, nm, permute=p)[1]).sum()) for p in PERMUTATIONS}
    assert kept["lsa"] >= kept["reallocation"] * (1 - 1e-6)


def test_weight_round_trips_in_place():
    w, sq_mean = _random((12, 16), seed=2)
    dense = w.clone()
    new_w, mask = prune_ria(w, sq_mean, 0.5, (2, 4), permute="lsa")
    assert new_w is w and new_w.dtype == torch.float32 and new_w.shape == (12, 16)
    assert mask.dtype == torch.bool and mask.shape == (12, 16)
    assert torch.equal(new_w, dense * mask) and not torch.signbit(new_w[~mask]).any()


def test_unknown_permutation_is_refused():
    with pytest.raises(ValueError, match="permute"):
        prune_ria(W.clone(), SQ_MEAN, 0.5, (2, 4), permute="random")


# ---- whole tiny models against the official code ----------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_equal_to_the_official_code(family, case, monkeypatch):
    """Every linear of both blocks. The official per-matrix threshold prunes one weight more than floor(numel *
    sparsity) (see test_one_weight_fewer_than_the_official_threshold); with that count the masks are equal."""
    monkeypatch.setattr(patterns, "prune_count", lambda n, sparsity: int(n * sparsity) + 1)
    official, model, ids = _reference(family, case)
    _prune(model, ids, case)
    assert _masks(model).keys() == official.keys()
    for name, mask in _masks(model).items():
        assert torch.equal(mask, official[name]), name


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("unstructured")])
@pytest.mark.parametrize("family", FAMILIES)
def test_one_weight_fewer_than_the_official_threshold(family, case):
    """At the package's count, block 0's masks (the later blocks see other inputs) keep exactly one weight that the
    official threshold prunes, and prune nothing it keeps."""
    official, model, ids = _reference(family, case)
    _prune(model, ids, case)
    for name, mask in _masks(model).items():
        if name.startswith("0."):
            assert int((mask & ~official[name]).sum()) == 1 and not (~mask & official[name]).any(), name


def _reference(family: str, case: str):
    """The official masks by linear ("<block>.<name>"; True = kept), the dense model and the calibration ids of one
    case."""
    model, tensors, meta = load_reference(f"ria_{family}")
    assert json.loads(meta["cases"])[case] == CASES[case][0]
    shapes = {name: linear.weight.shape for name, linear in block_linears(model).items()}
    names = json.loads(meta["linears"])
    official = dict(zip(names, unpack(tensors[f"mask/{case}"], [shapes[name] for name in names])))
    return official, model, tensors["ids"]


def _prune(model, ids, case: str) -> None:
    inputs = capture_block_inputs(model, ids, batch_size=4)
    prune_model(model, inputs, method="ria", **CASES[case][1])


def _masks(model) -> dict[str, torch.Tensor]:
    """Kept = nonzero: none of the reference's dense linear weights is zero."""
    return {name: linear.weight.detach() != 0 for name, linear in block_linears(model).items()}


def _random(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.rand(shape[1], generator=g) * 4
