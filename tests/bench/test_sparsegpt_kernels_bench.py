"""The baselines of bench/sparsegpt_kernels_bench.py compute what the engine's kernels compute: a speedup against
them compares two ways of getting the same result."""

import pytest
import torch


@pytest.fixture
def bench(bench_module):
    return bench_module("sparsegpt_kernels_bench")


def test_the_float_rule_chooses_the_groups_the_integer_bits_choose(bench):
    from perp_engine.pruning.patterns import group_pruned, group_ties

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 500, generator=g)
    scores[:, :50] = 0.0  # ties: the earlier member goes first under both rules
    scores[2:, 50:100] = scores[:2, 50:100]
    ours, theirs = torch.empty(4, 500), torch.empty(4, 500)
    group_pruned(scores, 2, group_ties(4, scores), out=ours)
    bench._float_rule_group(scores, 2, None, out=theirs)
    assert torch.equal(ours, theirs)


def test_the_tiles_and_the_official_chain_give_the_engines_results(bench):
    from perp_engine.pruning.sparsegpt import upper_cholesky_of_inverse
    from perp_engine.pruning.stats import _add_lower_halves

    g = torch.Generator().manual_seed(1)
    x = torch.randn(700, 400, generator=g)
    tiles, halves = torch.zeros(400, 400), torch.zeros(400, 400)
    bench._tiles(tiles, x, 0.0, 1.0)
    _add_lower_halves(halves, x, 0.0, 1.0)
    torch.testing.assert_close(tiles.tril(), halves.tril(), rtol=1e-5, atol=1e-3)
    H = x.T @ x / 350
    torch.testing.assert_close(bench._official_chain(H, 0.01), upper_cholesky_of_inverse(H, 0.01, print),
                               rtol=1e-3, atol=1e-5)


def test_torch_top_k_selects_the_thresholds_numpy_selects(bench):
    from perp_engine.pruning.patterns import row_thresholds

    g = torch.Generator().manual_seed(2)
    score = torch.randint(0, 50, (40, 96), generator=g).float()  # many ties at every threshold
    for k in (1, 30, 48, 95):
        assert torch.equal(bench._topk_rows(score, k), row_thresholds(score, k))
