"""reconstruction_error: the relative output error on the calibration inputs, computed from H alone."""

import pytest
import torch

from perp_engine.errors import PerpError
from perp_engine.pruning import LayerStats, prune_weight, reconstruction_error


def _case(out=12, width=20, tokens=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, width, generator=g) @ torch.randn(width, width, generator=g)
    w = torch.randn(out, width, generator=g)
    stats = LayerStats(width)
    for part in x.split(17):
        stats.add_batch(part)
    return x, w, stats


def _direct(w, w_new, x):
    dense = x.double() @ w.double().T
    return float((dense - x.double() @ w_new.double().T).square().sum() / dense.square().sum())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "random"])
@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.3), ("2:4", 0.5)])
def test_equals_direct_error_on_inputs(method, pattern, sparsity):
    x, w, stats = _case()
    new_w, _ = prune_weight(w, method, sparsity, pattern, stats=stats)
    expected = _direct(w, new_w, x)
    assert expected > 1e-3
    assert reconstruction_error(w, new_w, stats) == pytest.approx(expected, rel=1e-4)


def test_perturbed_weight_and_unchanged_weight():
    x, w, stats = _case(seed=3)
    noisy = w + 0.1 * torch.randn_like(w)
    assert reconstruction_error(w, noisy, stats) == pytest.approx(_direct(w, noisy, x), rel=1e-4)
    assert reconstruction_error(w, w.clone(), stats) == 0.0


def test_low_precision_weights():
    x, w, stats = _case(seed=5)
    half, pruned = w.to(torch.bfloat16), prune_weight(w.to(torch.bfloat16), "magnitude", 0.5, stats=stats)[0]
    assert reconstruction_error(half, pruned, stats) == pytest.approx(_direct(half.float(), pruned.float(), x), rel=1e-3)


@pytest.mark.parametrize(
    "w_dense,w_new,stats,field",
    [
        (torch.ones(3, 20), torch.ones(3, 20), LayerStats(20, hessian=False), "stats"),
        (torch.ones(3, 20), torch.ones(3, 20), LayerStats(20), "stats"),
        (torch.ones(3, 20), torch.ones(3, 20), "stats", "stats"),
        (torch.ones(3, 21), torch.ones(3, 21), None, "w_dense"),
        (torch.ones(3, 20), torch.ones(4, 20), None, "w_new"),
        (torch.ones(3, 20), torch.ones(20), None, "w_new"),
    ],
    ids=["no-hessian", "no-inputs", "not-stats", "width", "rows", "1-d"],
)
def test_bad_inputs_name_the_field(w_dense, w_new, stats, field):
    stats = stats if stats is not None else _case()[2]
    with pytest.raises(PerpError) as err:
        reconstruction_error(w_dense, w_new, stats)
    assert err.value.field == field
