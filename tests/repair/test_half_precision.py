"""Half precision done right: statistics in float32, masks exact, float32 master copies of trained tensors."""

import pytest
import torch
from fixtures_tiny import perp_home, tiny_model_dir, tiny_run_config, tiny_text_file  # noqa: F401  (pytest fixtures)
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.model.capture import capture_block_inputs
from perp_engine.pruning import LayerStats
from perp_engine.pruning.sequential import prune_model
from perp_engine.repair.retrain import retrain
from perp_engine.repair.subsets import select_trainable
from perp_engine.run.pipeline import run_pipeline


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_bfloat16_pruning_keeps_exact_counts_and_float32_statistics(family, method):
    model = TINY_MODELS[family]().to(torch.bfloat16)
    inputs = capture_block_inputs(model, random_tokens(4, 16), batch_size=2)
    stats = LayerStats(inputs.hidden[0].shape[-1])
    stats.add_batch(inputs.hidden[0])
    assert inputs.hidden[0].dtype == torch.bfloat16 and stats.sq_mean.dtype == stats.H.dtype == torch.float32
    records = prune_model(model, inputs, method=method, sparsity=0.5, pattern="2:4")
    assert all(r.sparsity == 0.5 for r in records)
    for record in records:
        weight = model.get_submodule(record.name).weight
        assert weight.dtype == torch.bfloat16


@pytest.mark.parametrize("masters, moves", [(True, True), (False, False)])
def test_master_copies_keep_updates_that_bfloat16_rounds_away(masters, moves):
    """AdamW moves a weight by about lr per step; near 1.0, bfloat16's step is 2^-7, so lr 1e-3 rounds away unless
    the update accumulates in a float32 copy."""
    model = TINY_MODELS["llama"]().to(torch.bfloat16)
    select_trainable(model, ("norms",))
    norm = model.model.norm.weight
    before = norm.detach().clone()
    retrain(model, random_tokens(4, 16), steps=12, lr=1e-3, batch_size=2, warmup_ratio=0.0, max_grad_norm=0.0,
            master_weights=masters)
    assert norm.dtype == torch.bfloat16
    assert (not torch.equal(norm, before)) == moves


def test_a_bfloat16_run_keeps_every_zero(tiny_model_dir, tiny_text_file, perp_home):  # noqa: F811
    config = tiny_run_config(tiny_model_dir, tiny_text_file, dtype="bfloat16", method="wanda", mode="retrain",
                             train=("norms", "full"), steps=3, lr=1e-3)
    result = run_pipeline(config)
    assert result.sparsity == pytest.approx(0.5) and result.final_ppl is not None
    assert all(r.sparsity == 0.5 for r in result.layers)
