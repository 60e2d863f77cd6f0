"""Adapters on pruned linears: identity at start, training moves them, merge keeps every zero and adds none,
merged outputs equal unmerged ones, custom gradients are right and the dense merged weight is not saved."""

import math

import pytest
import torch
from sparse_models import pruned_tiny
from tiny_models import TINY_MODELS, random_tokens
from torch import nn
from transformers.pytorch_utils import Conv1D

from perp_engine.errors import PerpError
from perp_engine.model.blocks import get_weight
from perp_engine.repair.adapters import (
    ADAPTER_KINDS,
    adapter_modules,
    adapter_parameters,
    attach_adapters,
    base_of,
    block_linears,
    merge_adapters,
)
from perp_engine.repair.adapters.base import RecomputedLinear, kaiming_factor
from perp_engine.repair.adapters.masklora import MaskLoRA
from perp_engine.repair.adapters.scalelora import ScaleLoRA, ScaleLoRAPaper
from perp_engine.repair.mask_keeper import MaskKeeper

FAMILIES = list(TINY_MODELS)
EXACT_KINDS = ("lora", "masklora", "scalelora", "scalelora-paper")


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


def train_adapters(model, adapters, steps=3, lr=3e-2):
    """A few AdamW steps on the LM loss of random tokens, only the adapter factors trainable."""
    params = [p for a in adapters.values() for p in adapter_parameters(a)]
    optimizer = torch.optim.AdamW(params, lr=lr)
    tokens = random_tokens(4, 16, seed=1)
    model.train()
    for _ in range(steps):
        model(tokens, labels=tokens).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def expected_merge(adapter):
    """What the merged (out, in) weight must be, computed by hand from the trained factors."""
    weight = get_weight(base_of(adapter)).clone()
    if not hasattr(adapter, "kind"):  # plain LoRA stays unmerged on a pruned layer
        return weight
    return adapted(adapter, weight, adapter.lora_B.detach() @ adapter.lora_A.detach())


def adapted(adapter, weight, product):
    """Each sparse adapter's formula for its effective weight, written naively."""
    if adapter.kind == "scalelora":
        return weight * (1 + adapter.scaling * product)
    if adapter.kind == "scalelora-paper":
        return weight * product
    return weight + adapter.scaling * product * (weight != 0)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_at_start_equals_pruned_model(family, kind):
    model = pruned_tiny(family)
    tokens = random_tokens(2, 16)
    before = logits(model, tokens)
    adapters = attach_adapters(model, kind, rank=4, alpha=8.0)
    assert set(adapters) == set(block_linears(model))
    assert all(base_of(a).weight.requires_grad is False for a in adapters.values())
    assert all(p.requires_grad for a in adapters.values() for p in adapter_parameters(a))
    torch.testing.assert_close(logits(model, tokens), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_trained_adapters_merge_without_touching_sparsity(family, kind):
    model = pruned_tiny(family)
    keeper = MaskKeeper(model)
    assert len(keeper.pruned) == len(keeper.zeros)
    adapters = attach_adapters(model, kind, rank=4, alpha=8.0)
    initial = {name: [p.detach().clone() for p in adapter_parameters(a)] for name, a in adapters.items()}
    train_adapters(model, adapters)
    moved = [name for name, a in adapters.items()
             if any(not torch.equal(p, q) for p, q in zip(adapter_parameters(a), initial[name]))]
    assert moved == list(adapters)

    tokens = random_tokens(2, 16, seed=2)
    unmerged = logits(model, tokens)
    old = {name: get_weight(base_of(a)).clone() for name, a in adapters.items()}
    expected = {name: expected_merge(a) for name, a in adapters.items()}
    notes = merge_adapters(model)
    merged = logits(model, tokens)

    keeper.verify()
    for name in adapters:
        weight = get_weight(base_of(model.get_submodule(name)))
        assert torch.equal(weight == 0, old[name] == 0), name
        torch.testing.assert_close(weight, expected[name], atol=1e-6, rtol=1e-5)
        if kind != "lora":
            assert not torch.equal(weight, old[name]), f"{name}: merge changed nothing"
    if kind == "lora":
        assert set(adapter_modules(model)) == set(adapters)
        assert any("kept unmerged: merging would make" in n and f"{len(adapters)} layers dense" in n for n in notes)
    else:
        assert adapter_modules(model) == {}
        assert all(type(layer) in (nn.Linear, Conv1D) for layer in block_linears(model).values())
    if kind in EXACT_KINDS:
        torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    else:  # LoRAPrune trained the update on pruned weights too; the merge drops that part
        assert (merged - unmerged).abs().max() > 1e-4
        assert any("the merged model is not the trained one" in n for n in notes)


def _double_adapter(cls, base_type):
    torch.manual_seed(0)
    base = nn.Linear(5, 4).double() if base_type == "linear" else Conv1D(4, 5).double()
    with torch.no_grad():
        base.weight.mul_(torch.rand_like(base.weight) > 0.5)
    adapter = cls(base, rank=2, alpha=4.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adapter.lora_A.data = torch.randn(2, 5, dtype=torch.double)
        adapter.lora_B.data = torch.randn(4, 2, dtype=torch.double)
    return adapter


@pytest.mark.parametrize("cls", [MaskLoRA, ScaleLoRA, ScaleLoRAPaper])
def test_gradcheck_recomputed_linear(cls):
    adapter = _double_adapter(cls, "linear")
    x = torch.randn(2, 3, 5, dtype=torch.double, requires_grad=True)
    weight = adapter.weight.detach().clone().requires_grad_(True)
    bias = adapter.base_layer.bias.detach().clone().requires_grad_(True)
    a = adapter.lora_A.detach().clone().requires_grad_(True)
    b = adapter.lora_B.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *t: RecomputedLinear.apply(*t, adapter), (x, weight, bias, a, b))


@pytest.mark.parametrize("base_type", ["linear", "conv1d"])
@pytest.mark.parametrize("cls", [MaskLoRA, ScaleLoRA, ScaleLoRAPaper])
def test_module_gradients_match_plain_autograd(cls, base_type):
    """The module (incl. Conv1D orientation) gives the gradients of the naive dense formula."""
    adapter = _double_adapter(cls, base_type)
    x = torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    adapter(x).square().sum().backward()
    got = [x.grad.clone(), adapter.lora_A.grad.clone(), adapter.lora_B.grad.clone()]
    for t in (x, adapter.lora_A, adapter.lora_B):
        t.grad = None
    weight = get_weight(adapter.base_layer)
    dense = adapted(adapter, weight, adapter.lora_B @ adapter.lora_A)
    nn.functional.linear(x, dense, adapter.base_layer.bias).square().sum().backward()
    for mine, reference in zip(got, [x.grad, adapter.lora_A.grad, adapter.lora_B.grad]):
        torch.testing.assert_close(mine, reference)


@pytest.mark.parametrize("kind", ["masklora", "scalelora", "scalelora-paper"])
def test_dense_merged_weight_is_not_saved_for_backward(kind):
    model = pruned_tiny("llama")
    adapters = attach_adapters(model, kind, rank=4, alpha=8.0)
    weights = {base_of(a).weight.data_ptr() for a in adapters.values()}
    shapes = {tuple(base_of(a).weight.shape) for a in adapters.values()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        tokens = random_tokens(3, 7)  # 21 rows: no activation shares a weight's shape
        model(tokens, labels=tokens).loss.backward()
    dense_copies = [t for t in saved if tuple(t.shape) in shapes and t.data_ptr() not in weights]
    assert dense_copies == []
    assert all(a.lora_B.grad is not None for a in adapters.values())


def test_merge_refuses_a_change_of_the_zero_pattern():
    model = pruned_tiny("llama")
    adapters = attach_adapters(model, "masklora", rank=4, alpha=8.0)
    name = "model.layers.1.mlp.down_proj"
    adapter = adapters[name]
    with torch.no_grad():
        adapter.lora_B.fill_(0.1)
    adapter.combine = lambda weight, a, b: (b @ a).mul(adapter.scaling).add(weight)  # a broken rule: no mask
    with pytest.raises(RuntimeError, match=f"{name}: sparsity mask changed"):
        merge_adapters(model)
    assert model.get_submodule(name) is adapter
    assert bool((adapter.weight == 0).any())


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_target_modules_and_scope_filter(family):
    model = pruned_tiny(family)
    names = ("q_proj", "down_proj") if family == "llama" else ("mlp.c_proj",)
    adapters = attach_adapters(model, "masklora", rank=4, target_modules=names)
    assert len(adapters) == 2 * len(names)
    assert all(any(n.endswith("." + t) for t in names) for n in adapters)
    model = pruned_tiny(family)
    block = [m for n, m in model.named_modules() if n.endswith(".1") and isinstance(m, nn.Module)][0]
    scoped = attach_adapters(model, "scalelora", rank=2, scope=block)
    assert scoped and all(".1." in n for n in scoped)
    assert set(scoped) == set(block_linears(model, scope=block))


@pytest.mark.parametrize("kwargs, field", [
    ({"kind": "dora"}, "adapter"),
    ({"kind": "masklora", "rank": 0}, "rank"),
    ({"kind": "masklora", "rank": 17}, "rank"),  # k_proj of the tiny LLaMA is 32 -> 16
    ({"kind": "lora", "rank": 17}, "rank"),
    ({"kind": "masklora", "alpha": 0.0}, "alpha"),
    ({"kind": "masklora", "target_modules": ("qkv",)}, "target_modules"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    model = pruned_tiny("llama")
    with pytest.raises(PerpError) as err:
        attach_adapters(model, **kwargs)
    assert err.value.field == field
    if field == "target_modules":
        assert "q_proj" in err.value.message and "down_proj" in err.value.message
    assert adapter_modules(model) == {}


def test_rank_limit_follows_the_targets():
    model = pruned_tiny("llama")
    assert len(attach_adapters(model, "masklora", rank=17, target_modules=("q_proj",))) == 2


def test_attaching_twice_is_refused():
    model = pruned_tiny("llama")
    attach_adapters(model, "masklora", rank=4)
    with pytest.raises(PerpError) as err:
        attach_adapters(model, "lora", rank=4)
    assert err.value.field == "adapter"


def test_same_seed_same_factors():
    first = attach_adapters(pruned_tiny("llama"), "masklora", rank=4, seed=3)
    second = attach_adapters(pruned_tiny("llama"), "masklora", rank=4, seed=3)
    other = attach_adapters(pruned_tiny("llama"), "masklora", rank=4, seed=4)
    name = next(iter(first))
    assert torch.equal(first[name].lora_A, second[name].lora_A)
    assert not torch.equal(first[name].lora_A, other[name].lora_A)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("kind", ["lora", "loraprune", "masklora", "scalelora"])
def test_seeded_factors_are_kaiming_draws_in_target_order(family, kind):
    """Each adapter's A is the next Kaiming-uniform (a = sqrt(5)) draw of one CPU generator seeded with ``seed``,
    layer after layer in target order, and B = 0: the draws every kind made before they shared kaiming_factor."""
    adapters = attach_adapters(pruned_tiny(family), kind, rank=4, seed=11)
    generator = torch.Generator().manual_seed(11)
    for adapter in adapters.values():
        lora_a, lora_b = (adapter.lora_A["perp"].weight, adapter.lora_B["perp"].weight) if kind == "lora" else \
            (adapter.lora_A, adapter.lora_B)
        expected = torch.empty(lora_a.shape)
        torch.nn.init.kaiming_uniform_(expected, a=math.sqrt(5), generator=generator)
        assert torch.equal(lora_a, expected)
        assert not lora_b.any()


def test_kaiming_factor_draws_as_nn_init():
    ours, reference = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for shape in [(4, 32), (2, 64)]:
        expected = torch.empty(shape)
        torch.nn.init.kaiming_uniform_(expected, a=math.sqrt(5), generator=reference)
        drawn = kaiming_factor(shape, ours)
        assert drawn.dtype == torch.float32 and drawn.device.type == "cpu" and torch.equal(drawn, expected)


@pytest.mark.parametrize("kind, full_rank", [("scalelora", True), ("scalelora-paper", False)])
def test_scalelora_update_rank(kind, full_rank):
    """The paper's symmetric start (A = B = 1/sqrt(r)) gives every row of A the same gradient forever, so B A stays
    rank 1; the full-rank form (B = 0, random A) learns an update of rank > 1."""
    model = pruned_tiny("llama")
    adapters = attach_adapters(model, kind, rank=4, alpha=8.0)
    train_adapters(model, adapters, steps=5)
    for adapter in adapters.values():
        product = (adapter.lora_B @ adapter.lora_A).detach().double()
        assert not torch.equal(product, torch.ones_like(product) if kind == "scalelora-paper" else torch.zeros_like(product))
        rank = int(torch.linalg.matrix_rank(product, rtol=1e-6))
        if full_rank:
            assert rank > 1
        else:
            assert rank == 1
            assert torch.equal(adapter.lora_A, adapter.lora_A[:1].expand_as(adapter.lora_A))


def test_attaching_lora_leaves_the_global_random_state_alone():
    model = pruned_tiny("llama")
    state = torch.get_rng_state()
    first = attach_adapters(model, "lora", rank=4, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    second = attach_adapters(pruned_tiny("llama"), "lora", rank=4, seed=5)
    name = next(iter(first))
    assert torch.equal(first[name].lora_A["perp"].weight, second[name].lora_A["perp"].weight)


@pytest.mark.parametrize("family, layer, dtype", [("llama", "lm_head", torch.float32),
                                                  ("llama", "lm_head", torch.bfloat16),
                                                  ("gpt2", "transformer.h.0.attn.c_attn", torch.float32),
                                                  ("opt", "model.decoder.layers.1.fc1", torch.bfloat16)])
def test_lora_merged_by_rows_equals_peft_merge(family, layer, dtype, monkeypatch):
    """The merged weight of a peft LoRA, built a few rows at a time, is peft's own ``weight + get_delta_weight``,
    for nn.Linear and GPT-2's transposed Conv1D, in float32 and with float32 factors beside a bfloat16 weight."""
    from perp_engine.repair.adapters import merge
    from perp_engine.repair.adapters.lora import ADAPTER_NAME, attach_lora

    model = TINY_MODELS[family]().to(dtype)
    lora = attach_lora(model, {layer: model.get_submodule(layer)}, rank=4, alpha=8.0, seed=0)[layer]
    with torch.no_grad():
        lora.lora_B[ADAPTER_NAME].weight.normal_(generator=torch.Generator().manual_seed(1))  # B starts at 0
        weight = lora.get_base_layer().weight
        expected = (weight + lora.get_delta_weight(ADAPTER_NAME)).to(weight.dtype)
    monkeypatch.setattr(merge, "MERGE_ROWS", 3)
    assert weight.shape[0] > 3 and weight.shape[0] % 3  # several slices, the last one short
    got = merge._merged_weight(lora)
    assert got.dtype == weight.dtype
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)  # a slice's product may round differently
