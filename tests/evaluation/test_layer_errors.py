"""The two layer-wise errors (local and accumulated), per linear and per block, on the tiny model families."""

import pytest
import torch
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.evaluation.layer_errors import measure_errors
from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight, set_weight
from perp_engine.model.capture import block_forward, capture_block_inputs
from perp_engine.offload.dense_reference import DenseReference
from perp_engine.pruning.sequential import prune_model


def measured(model, dense, dense_inputs, samples):
    return measure_errors(model, dense, dense_inputs, capture_block_inputs(model, samples, batch_size=2))


def setup(family, sparsity=0.5):
    model = TINY_MODELS[family]()
    samples = random_tokens(4, 16, seed=1)
    dense = DenseReference(model)
    dense_inputs = capture_block_inputs(model, samples, batch_size=2)
    if sparsity:
        prune_model(model, None, method="magnitude", sparsity=sparsity)
    return model, dense, dense_inputs, samples


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_dense_model_reads_zero_everywhere(family):
    report = measured(*setup(family, sparsity=0.0))
    values = [*report.local.values(), *report.drift.values(), *report.block_local, *report.block_drift]
    assert values and all(v == 0.0 for v in values)


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_a_layer_given_back_its_dense_weight_has_zero_local_error_but_keeps_its_drift(family):
    model, dense, dense_inputs, samples = setup(family)
    path, blocks = find_decoder_blocks(model)
    name, layer = list(find_linears(blocks[1]).items())[0]
    set_weight(layer, get_weight(find_linears(dense.block(1, "cpu"))[name]))
    report = measured(model, dense, dense_inputs, samples)
    full = f"{path}.1.{name}"
    assert report.local[full] == 0.0
    assert report.drift[full] > 1e-4  # block 0 was pruned: this layer's inputs moved
    assert all(v > 0 for k, v in report.local.items() if k != full)


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_local_error_is_the_dense_and_pruned_weights_on_the_same_inputs(family):
    model, dense, dense_inputs, samples = setup(family)
    path, blocks = find_decoder_blocks(model)
    name, layer = list(find_linears(blocks[1]).items())[-1]
    dense_layer = find_linears(dense.block(1, "cpu"))[name]
    seen = []
    handle = layer.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    capture = capture_block_inputs(model, samples, batch_size=2)
    with torch.no_grad():
        for hidden, kwargs in zip(capture.hidden, capture.kwargs):
            blocks[1](block_forward(blocks[0], hidden, kwargs), **kwargs)
    handle.remove()
    num = sum(float((dense_layer(x) - out).pow(2).sum()) for x, out in seen)
    den = sum(float(dense_layer(x).pow(2).sum()) for x, _ in seen)
    report = measured(model, dense, dense_inputs, samples)
    assert report.local[f"{path}.1.{name}"] == pytest.approx(num / den, rel=1e-4)


@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_first_block_sees_the_same_inputs_in_both_models(family):
    report = measured(*setup(family))
    assert report.block_local[0] == pytest.approx(report.block_drift[0], rel=1e-6)
    assert report.block_local[1] != pytest.approx(report.block_drift[1], rel=1e-3)


def test_errors_grow_with_sparsity():
    totals = []
    for sparsity in (0.3, 0.7):
        report = measured(*setup("opt", sparsity))
        assert all(e > 0 for e in report.local.values())
        totals.append((sum(report.block_local), sum(report.block_drift)))
    assert totals[1][0] > totals[0][0] and totals[1][1] > totals[0][1]


class _Float64Made(torch.overrides.TorchFunctionMode):
    """Names of the torch calls that ask for or return a float64 tensor."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if kwargs.get("dtype") == torch.float64 or (isinstance(out, torch.Tensor) and out.dtype == torch.float64):
            self.calls.append(getattr(func, "__name__", repr(func)))
        return out


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_errors_and_perplexity_make_no_float64_tensor(family):
    """MPS (the device ``auto`` picks on an Apple laptop) has no float64: the layer errors, the block
    reconstruction error and the perplexity sum in float32 on the device and accumulate in Python floats."""
    from perp_engine.evaluation.perplexity import perplexity
    from perp_engine.evaluation.relative_error import chunked_relative_error
    from perp_engine.model.capture import run_block

    model, dense, dense_inputs, samples = setup(family)
    inputs = capture_block_inputs(model, samples, batch_size=2)
    block = find_decoder_blocks(model)[1][0]
    with _Float64Made() as made:
        report = measure_errors(model, dense, dense_inputs, inputs)
        error = chunked_relative_error(run_block(dense.block(0, torch.device("cpu")), inputs), run_block(block, inputs))
        ppl = perplexity(model, samples, batch_size=2)
    assert made.calls == []
    assert all(e > 0 for e in report.local.values()) and error > 0 and 1 < ppl < float("inf")
