"""perp_engine.model.sparsity: a weight is pruned exactly where it is zero (+0.0 or -0.0), the masks are bool
tensors of the weight's shape on its device, and a change of the zero pattern is described in counts."""

import pytest
import torch

from perp_engine.model.sparsity import kept_positions, mask_change, pruned_positions, zero_count

WEIGHT = torch.tensor([[0.0, 1.5, -0.0], [float("nan"), 0.0, -2.0]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_pruned_and_kept_positions_are_the_zeros_and_the_rest(dtype):
    weight = WEIGHT.to(dtype)
    pruned, kept = pruned_positions(weight), kept_positions(weight)
    assert pruned.dtype == kept.dtype == torch.bool
    assert pruned.shape == kept.shape == weight.shape and pruned.device == weight.device
    assert pruned.tolist() == [[True, False, True], [False, True, False]]  # -0.0 is pruned, NaN is not
    assert torch.equal(kept, ~pruned)
    assert zero_count(weight) == 3 and isinstance(zero_count(weight), int)


def test_mask_change_counts_revived_and_lost_zeros():
    was_zero = pruned_positions(WEIGHT)
    assert mask_change("layer", was_zero, WEIGHT.clone()) is None
    assert mask_change("layer", was_zero, torch.where(was_zero, -0.0, WEIGHT)) is None  # the sign of a zero is no change
    changed = WEIGHT.clone()
    changed[0, 0], changed[0, 1], changed[1, 2] = 3.0, 0.0, 0.0
    assert mask_change("layer", was_zero, changed) == ("layer: sparsity mask changed: 1 pruned weights became nonzero "
                                                       "and 2 kept weights became zero")
