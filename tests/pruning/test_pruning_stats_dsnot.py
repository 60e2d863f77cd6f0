"""LayerStats' statistics for DSnoT: the per-token mean, the within-sequence variance and the sequence count,
whatever the batch split, and their relation to the official code's per-sequence statistics."""

import pytest
import torch

from perp_engine.errors import PerpError
from perp_engine.pruning import LayerStats, prune_weight
from perp_engine.pruning.dsnot import refine_dsnot


def _sequences(n=6, tokens=5, width=8, seed=0):
    """Sequences whose columns have their own mean in each sequence (so the within-sequence variance is less than the
    variance over all tokens)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, tokens, width, generator=g) + 3 * torch.randn(n, 1, width, generator=g)


def _one_shot(x):
    x64 = x.double()
    within = x64.var(dim=1, unbiased=False).mean(0)  # every sequence has the same number of tokens
    return x64.reshape(-1, x.shape[-1]).mean(0), within


@pytest.mark.parametrize("splits", [[6], [1, 5], [2, 2, 2], [5, 1], [3, 3]])
def test_mean_and_within_sequence_variance_equal_one_shot(splits):
    x = _sequences()
    stats = LayerStats(8, hessian=False, moments=True)
    for part in torch.split(x, splits):
        stats.add_batch(part)
    mean, within = _one_shot(x)
    assert stats.sequences == 6 and stats.nsamples == 30
    torch.testing.assert_close(stats.mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats.seq_var.double(), within, rtol=1e-5, atol=1e-6)
    total = x.double().reshape(-1, 8).var(dim=0, unbiased=False)
    assert (stats.seq_var.double() < 0.5 * total).all()  # not the variance over all tokens


def test_sequence_order_and_a_flattened_batch_do_not_matter():
    x = _sequences()
    nested, flat, reordered = LayerStats(8, moments=True), LayerStats(8, moments=True), LayerStats(8, moments=True)
    nested.add_batch(x.reshape(2, 3, 5, 8))  # leading dimensions (2, 3): 6 sequences of 5 tokens
    flat.add_batch(x.reshape(30, 8), sequences=6)  # as OPT's MLP reads a (6, 5) batch
    reordered.add_batch(x.flip(0))
    for stats in (flat, reordered):
        assert stats.sequences == nested.sequences == 6
        for key in ("mean", "seq_var", "sq_mean", "H"):
            torch.testing.assert_close(getattr(stats, key), getattr(nested, key), rtol=1e-5, atol=1e-5)


def test_a_2d_batch_is_one_sequence():
    x = _sequences()
    stats = LayerStats(8, hessian=False, moments=True)
    for sequence in x:
        stats.add_batch(sequence)
    assert stats.sequences == 6
    torch.testing.assert_close(stats.seq_var.double(), _one_shot(x)[1], rtol=1e-5, atol=1e-6)


def test_the_official_per_sequence_statistics_follow():
    """zyxxmu/DSnoT's wrapper, fed one sequence per call: sum_metric_row = (sum of x over all tokens) / sequences,
    var = the token-weighted mean of each call's variance (its running updates, written out)."""
    x = _sequences(n=4, tokens=7)
    stats = LayerStats(8, hessian=False, moments=True)
    sum_metric_row, var, samples, tokens = torch.zeros(8), torch.zeros(8), 0, 0
    for sequence in x:
        stats.add_batch(sequence.unsqueeze(0))
        sum_metric_row *= samples / (samples + 1)
        samples += 1
        sum_metric_row += sequence.sum(0) / samples
        var = (var * tokens + sequence.var(dim=0, unbiased=False) * 7) / (tokens + 7)
        tokens += 7
    torch.testing.assert_close(stats.mean * stats.nsamples / stats.sequences, sum_metric_row, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats.seq_var, var, rtol=1e-5, atol=1e-6)


def test_sequences_must_divide_the_tokens():
    stats = LayerStats(8, moments=True)
    for bad in (0, 4, 2.0, True):
        with pytest.raises(PerpError, match="sequences"):
            stats.add_batch(torch.ones(30, 8), sequences=bad)
    assert stats.sequences == 0 and stats.nsamples == 0


def test_moments_are_gathered_only_when_asked_and_dsnot_refuses_stats_without_them():
    x = torch.randn(3, 10, 8)
    plain, with_moments = LayerStats(8, hessian=False), LayerStats(8, hessian=False, moments=True)
    plain.add_batch(x)
    with_moments.add_batch(x)
    assert plain.mean is None and plain.seq_var is None and plain.sequences == 3
    assert torch.equal(plain.sq_mean, with_moments.sq_mean)
    w = torch.randn(4, 8)
    new_w, mask = prune_weight(w, "wanda", 0.5, stats=plain)
    with pytest.raises(PerpError) as err:
        refine_dsnot(w, new_w, mask, plain, name="self_attn.q_proj")
    assert err.value.field == "stats" and "moments=True" in str(err.value)
