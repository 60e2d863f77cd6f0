import pytest
import torch
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight
from perp_engine.model.capture import capture_block_inputs, run_block
from perp_engine.pruning.sequential import prune_model

CASES = [
    ("magnitude", 0.5, "unstructured"),
    ("random", 0.3, "unstructured"),
    ("wanda", 0.6, "unstructured"),
    ("wanda", 0.5, "2:4"),
    ("sparsegpt", 0.5, "unstructured"),
    ("sparsegpt", 0.5, "4:8"),
]


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
@pytest.mark.parametrize("method, sparsity, pattern", CASES)
def test_prune_model_reaches_the_sparsity_of_every_linear(family, method, sparsity, pattern):
    model = TINY_MODELS[family]()
    samples = random_tokens(4, 16)
    inputs = capture_block_inputs(model, samples, batch_size=2)
    records = prune_model(model, inputs, method=method, sparsity=sparsity, pattern=pattern, blocksize=16)
    path, blocks = find_decoder_blocks(model)
    linears = {f"{path}.{i}.{n}": m for i, b in enumerate(blocks) for n, m in find_linears(b).items()}
    assert [r.name for r in records] == list(linears)
    for rec in records:
        w = get_weight(linears[rec.name])
        zero = float((w == 0).float().mean())
        assert rec.sparsity == pytest.approx(zero)
        assert zero == pytest.approx(sparsity, abs=1.0 / w.shape[1])
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=samples).logits).all()


def _block1_mask_pruned_alone(samples, prune_block0: bool) -> torch.Tensor:
    """Wanda-prune only block 1 of a fresh tiny LLaMA, fed by block 0 either dense or Wanda-pruned."""
    model = TINY_MODELS["llama"]()
    _, blocks = find_decoder_blocks(model)
    inputs = capture_block_inputs(model, samples, batch_size=2)
    first, second = torch.nn.Module(), torch.nn.Module()
    first.layers, second.layers = torch.nn.ModuleList([blocks[0]]), torch.nn.ModuleList([blocks[1]])
    if prune_block0:
        prune_model(first, inputs, method="wanda", sparsity=0.5)
    inputs = inputs.with_hidden(run_block(blocks[0], inputs))
    prune_model(second, inputs, method="wanda", sparsity=0.5)
    return get_weight(blocks[1].mlp.down_proj) != 0


def test_later_blocks_are_calibrated_on_pruned_inputs():
    """Block 1's Wanda mask comes from block 0's pruned outputs, not its dense outputs."""
    samples = random_tokens(4, 16)
    model = TINY_MODELS["llama"]()
    prune_model(model, capture_block_inputs(model, samples, batch_size=2), method="wanda", sparsity=0.5)
    sequential = get_weight(model.model.layers[1].mlp.down_proj) != 0
    assert torch.equal(sequential, _block1_mask_pruned_alone(samples, prune_block0=True))
    assert not torch.equal(sequential, _block1_mask_pruned_alone(samples, prune_block0=False))


def test_shared_inputs_share_statistics():
    """q/k/v read the same tensor: pruning them with shared stats equals pruning each with its own stats."""
    from perp_engine.pruning import LayerStats, prune_weight

    model = TINY_MODELS["llama"]()
    samples = random_tokens(4, 16)
    inputs = capture_block_inputs(model, samples, batch_size=2)
    _, blocks = find_decoder_blocks(model)
    attn = blocks[0].self_attn
    x = torch.cat([blocks[0].input_layernorm(h) for h in inputs.hidden]).detach()
    stats = LayerStats(x.shape[-1])
    stats.add_batch(x)
    expected = {n: prune_weight(getattr(attn, n).weight.data, "wanda", 0.5, stats=stats)[1] for n in ("q_proj", "k_proj", "v_proj")}
    prune_model(model, inputs, method="wanda", sparsity=0.5)
    for n, mask in expected.items():
        assert torch.equal(getattr(attn, n).weight.data != 0, mask)


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_statistics_pass_stops_at_the_last_linear_and_collects_the_same(family):
    """After the first chunk the statistics pass stops at the last linear's input (its product and what follows
    are skipped); every LayerStats equals one built from full forwards over the same chunks."""
    from perp_engine.pruning import LayerStats
    from perp_engine.pruning.sequential import collect_stats

    model = TINY_MODELS[family]()
    inputs = capture_block_inputs(model, random_tokens(6, 16), batch_size=2)
    block = find_decoder_blocks(model)[1][0]
    linears = find_linears(block)
    last = linears[list(linears)[-1]]
    products = []
    handle = last.register_forward_hook(lambda *_: products.append(1))
    stats = collect_stats(block, linears, inputs, hessian=True)
    handle.remove()
    assert len(inputs) == 3 and len(products) == 1
    seen = {name: [] for name in linears}
    handles = [m.register_forward_pre_hook(lambda _m, args, n=n: seen[n].append(args[0])) for n, m in linears.items()]
    run_block(block, inputs)
    for h in handles:
        h.remove()
    for name, chunks in seen.items():
        expected = LayerStats(chunks[0].shape[-1])
        for x in chunks:
            expected.add_batch(x)
        assert torch.equal(stats[name].H, expected.H) and torch.equal(stats[name].sq_mean, expected.sq_mean)
        assert stats[name].nsamples == expected.nsamples
