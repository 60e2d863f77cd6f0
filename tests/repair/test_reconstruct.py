"""Block-wise reconstruction through the shared training loop: the error falls, masks hold, and a non-finite loss
or gradient in a block ends that block's training with the weights of the last good step (a real rollback)."""

import pytest
import torch
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.model.blocks import find_decoder_blocks
from perp_engine.model.capture import capture_block_inputs
from perp_engine.offload.dense_reference import DenseReference
from perp_engine.pruning.sequential import prune_model
from perp_engine.repair.reconstruct import BlockRecipe, reconstruct
from perp_engine.repair.training_loop import Optimisation


def pruned_with_reference(family="llama"):
    model = TINY_MODELS[family]()
    dense = DenseReference(model)
    samples = random_tokens(4, 16, seed=1)
    prune_model(model, None, method="magnitude", sparsity=0.5)
    return model, dense, capture_block_inputs(model, samples, batch_size=2)


def recipe(subsets=("norms",), adapter="none", steps=6, lr=1e-2):
    return BlockRecipe(subsets=subsets, adapter=adapter, rank=4, alpha=8.0, target_modules=(),
                       how=Optimisation(steps=steps, lr=lr, warmup_ratio=0.0))


def block_norms(model, index=0):
    block = find_decoder_blocks(model)[1][index]
    return {n: p.detach().clone() for n, p in block.named_parameters() if "norm" in n}


@pytest.mark.parametrize("family, subsets, adapter, lr", [
    ("llama", ("norms",), "none", 1e-2), ("qwen2", ("norms",), "masklora", 1e-2),
    ("opt", ("biases", "norms"), "scalelora", 1e-3), ("gpt2", ("full",), "none", 1e-3),
])
def test_every_block_error_falls_and_the_zeros_stay(family, subsets, adapter, lr):
    model, dense, inputs = pruned_with_reference(family)
    zeros = {n: p == 0 for n, p in model.named_parameters() if p.dim() == 2 and (p == 0).any()}
    outcome = reconstruct(model, dense, inputs, recipe(subsets, adapter, steps=8, lr=lr))
    assert not [w for w in outcome.warnings if "loss became" in w or "gradient" in w]
    assert len(outcome.losses) == 8 * len(outcome.blocks)
    assert all(b.after < b.before for b in outcome.blocks)
    weights = dict(model.named_parameters())
    assert all(torch.equal(weights[n][was_zero], torch.zeros_like(weights[n][was_zero])) for n, was_zero in zeros.items())


def poison_block(model, at_call, snapshots, index=0):
    """From block ``index``'s ``at_call``-th training forward on, its output is NaN; ``snapshots[k]`` keeps the
    norm weights the k-th training forward ran with."""
    block = find_decoder_blocks(model)[1][index]
    calls = {"n": 0}

    def hook(_module, _args, output):
        if not torch.is_grad_enabled():
            return output
        calls["n"] += 1
        snapshots[calls["n"]] = block_norms(model, index)
        if calls["n"] < at_call:
            return output
        return (output[0] * float("nan"), *output[1:]) if isinstance(output, tuple) else output * float("nan")

    block.register_forward_hook(hook)


def test_a_non_finite_loss_restores_the_block_weights_of_the_last_good_step():
    model, dense, inputs = pruned_with_reference()
    snapshots = {}
    poison_block(model, at_call=3, snapshots=snapshots)
    outcome = reconstruct(model, dense, inputs, recipe())
    assert "block 0: loss became nan at step 3; kept the weights of step 2" in outcome.warnings
    after = block_norms(model)
    assert all(torch.equal(after[n], snapshots[2][n]) for n in after)  # what step 2 was evaluated with
    assert not all(torch.equal(after[n], snapshots[3][n]) for n in after)  # not what produced the NaN
    assert len(outcome.losses) == 2 + 6 * (len(outcome.blocks) - 1)


def test_a_non_finite_gradient_stops_the_block_before_the_step():
    model, dense, inputs = pruned_with_reference()
    snapshots = {}
    poison_block(model, at_call=10 ** 6, snapshots=snapshots)
    norm = next(p for n, p in find_decoder_blocks(model)[1][0].named_parameters() if "norm" in n)
    norm.register_hook(lambda grad: grad * float("inf") if len(snapshots) == 2 else grad)
    outcome = reconstruct(model, dense, inputs, recipe())
    assert "block 0: the gradient norm became inf at step 2; stopped before applying it" in outcome.warnings
    after = block_norms(model)
    assert all(torch.isfinite(t).all() for t in after.values())
    assert all(torch.equal(after[n], snapshots[2][n]) for n in after)
