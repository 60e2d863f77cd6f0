"""LayerStats: running means over tokens equal the one-shot statistics, whatever the batch split."""

import pytest
import torch

from perp_engine.errors import PerpError
from perp_engine.pruning import LayerStats


def _inputs(tokens=30, width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, width, generator=g) @ torch.randn(width, width, generator=g) + 0.5


def _one_shot(x):
    x64 = x.double()
    return x64.square().mean(0), 2.0 / x64.shape[0] * x64.T @ x64


@pytest.mark.parametrize(
    "splits",
    [[30], [1, 29], [7, 7, 7, 9], [29, 1], [3, 10, 17]],
    ids=["one-shot", "1+29", "4-batches", "29+1", "3+10+17"],
)
def test_running_means_equal_one_shot(splits):
    x = _inputs()
    stats = LayerStats(16)
    for part in torch.split(x, splits):
        stats.add_batch(part)
    sq_mean, H = _one_shot(x)
    assert stats.nsamples == 30
    torch.testing.assert_close(stats.sq_mean.double(), sq_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats.H.double(), H, rtol=1e-5, atol=1e-4)
    assert stats.sq_mean.dtype == stats.H.dtype == torch.float32


def test_order_and_leading_dims_do_not_matter():
    x = _inputs(tokens=24)
    flat, batched = LayerStats(16), LayerStats(16)
    flat.add_batch(x.flip(0))
    batched.add_batch(x.reshape(2, 3, 4, 16))
    torch.testing.assert_close(flat.sq_mean, batched.sq_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(flat.H, batched.H, rtol=1e-5, atol=1e-5)
    assert flat.nsamples == batched.nsamples == 24


def test_without_hessian_keeps_only_wanda_statistics():
    x = _inputs()
    stats = LayerStats(16, hessian=False)
    stats.add_batch(x[:11])
    stats.add_batch(x[11:])
    assert stats.H is None
    torch.testing.assert_close(stats.sq_mean.double(), _one_shot(x)[0], rtol=1e-5, atol=1e-5)


def test_low_precision_inputs_accumulate_in_float32():
    x = _inputs().to(torch.bfloat16)
    stats = LayerStats(16, device="cpu")
    stats.add_batch(x)
    assert stats.H.dtype == torch.float32 and stats.H.device.type == "cpu"
    torch.testing.assert_close(stats.H.double(), _one_shot(x.float())[1], rtol=1e-5, atol=1e-4)


def test_empty_batch_changes_nothing():
    stats = LayerStats(4)
    stats.add_batch(torch.ones(2, 4))
    stats.add_batch(torch.empty(0, 4))
    assert stats.nsamples == 2
    torch.testing.assert_close(stats.sq_mean, torch.ones(4))


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "8"])
def test_bad_width_names_in_features(bad):
    with pytest.raises(PerpError) as err:
        LayerStats(bad)
    assert err.value.field == "in_features"


@pytest.mark.parametrize("bad", [torch.ones(5, 7), torch.ones(8, 3), torch.tensor(1.0), [[1.0] * 8]])
def test_inputs_of_the_wrong_width_name_x(bad):
    with pytest.raises(PerpError) as err:
        LayerStats(8).add_batch(bad)
    assert err.value.field == "x"


@pytest.mark.parametrize("width", [20, 37, 64])
def test_hessian_halves_equal_one_product_below_the_diagonal(monkeypatch, width):
    """Wide inputs add x^T x by halves on and below the diagonal: what one full product gives there (up to the
    order of float sums inside the BLAS), H comes out symmetric, and so does SparseGPT's factor."""
    from perp_engine.pruning import halves
    from perp_engine.pruning import stats as stats_module
    from perp_engine.pruning.sparsegpt import inverse_factor

    monkeypatch.setattr(stats_module, "HESSIAN_LEAF", 8)
    monkeypatch.setattr(halves, "HALF_ALIGN", 4)
    x = _inputs(tokens=90, width=width)
    halves, full, seen = LayerStats(width), torch.zeros(width, width), 0
    for part in torch.split(x, [7, 83]):
        halves.add_batch(part)
        seen += part.shape[0]
        full.mul_((seen - part.shape[0]) / seen).addmm_(part.T, part, alpha=2.0 / seen)
    assert not torch.equal(halves.H_lower, halves.H_lower.T)  # the upper triangle was left stale, not computed
    torch.testing.assert_close(halves.H.tril(), full.tril(), rtol=1e-6, atol=1e-5)
    assert torch.equal(halves.H, halves.H.T)
    ours, reference = inverse_factor(halves.H, 0.01, x.device), inverse_factor(full, 0.01, x.device)
    torch.testing.assert_close(ours.scaled, reference.scaled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.diag, reference.diag, rtol=1e-5, atol=1e-6)


def test_new_batches_and_a_new_hessian_drop_derived_values():
    stats = LayerStats(4)
    stats.add_batch(torch.ones(2, 4))
    computed = []
    assert stats.derived("k", lambda: computed.append(1) or 1.0) == 1.0
    stats.derived("k", lambda: computed.append(1) or 2.0)
    assert computed == [1]
    stats.add_batch(torch.ones(1, 4))
    assert stats.derived("k", lambda: computed.append(1) or 3.0) == 3.0
    stats.H = torch.eye(4)
    assert stats.derived("k", lambda: computed.append(1) or 4.0) == 4.0 and computed == [1, 1, 1]
