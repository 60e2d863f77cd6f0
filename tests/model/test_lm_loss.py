"""The chunked causal-LM loss: the model's own loss and gradients, without the full logits tensor."""

import copy

import pytest
import torch
from norm_close import assert_close_in_norm
from tiny_models import TINY_MODELS, VOCAB, random_tokens
from transformers import Gemma2Config, Gemma2ForCausalLM

from perp_engine.model.lm_loss import CausalLMLoss
from perp_engine.repair.adapters import attach_adapters
from perp_engine.repair.subsets import select_trainable


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk_logits", [VOCAB, 7 * VOCAB, 10**9])  # one row per chunk, uneven chunks, one chunk
@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_same_loss_and_gradients_as_the_model(family, chunk_logits):
    model = TINY_MODELS[family]()
    select_trainable(model, ("norms", "head-lora"))
    _assert_same_as_the_model(model, CausalLMLoss(model, chunk_logits=chunk_logits), upstream=1.0)


# what the head and the layers under it train: a LoRA on the head, the whole (untied) head alone (nothing under
# it needs the hidden states' gradient), every weight (the tied head is the embedding matrix)
@pytest.mark.parametrize("train", [("norms", "head-lora"), ("head",), ("full",)])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_gradients_follow_the_upstream_gradient(family, train):
    """Gradient accumulation backpropagates ``loss / k``: the kept gradients are scaled by what comes back."""
    model = TINY_MODELS[family]()
    select_trainable(model, train)
    _assert_same_as_the_model(model, CausalLMLoss(model, chunk_logits=5 * VOCAB), upstream=0.25)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_bfloat16_head_sums_its_chunk_gradients_in_float32(family):
    """One position per chunk, 252 chunks: the head LoRA's bfloat16 gradient stays within 1% (in norm) of the
    gradient of the same weights in float32 (measured ~0.5%; summed in bfloat16 it drifted to 2-2.5%)."""
    model = TINY_MODELS[family]().to(torch.bfloat16)
    select_trainable(model, ("norms", "head-lora"))
    with torch.no_grad():  # B = 0 would leave A without a gradient
        model.lm_head.lora_B["perp"].weight.normal_(std=0.02)
    exact = copy.deepcopy(model).float()
    tokens = random_tokens(4, 64, seed=4)
    exact(input_ids=tokens, labels=tokens).loss.backward()
    CausalLMLoss(model, chunk_logits=VOCAB)(tokens).backward()
    head = {n: p for n, p in model.named_parameters() if n.startswith("lm_head") and p.requires_grad}
    assert len(head) == 2
    for name, parameter in head.items():
        assert parameter.grad.dtype == torch.bfloat16
        assert_close_in_norm(parameter.grad, exact.get_parameter(name).grad, share=0.01, msg=name)


def _assert_same_as_the_model(model, loss_of, upstream: float) -> None:
    tokens = random_tokens(3, 12, seed=4)
    expected = model(input_ids=tokens, labels=tokens).loss
    (expected * upstream).backward()
    reference = grads(model)
    model.zero_grad(set_to_none=True)
    assert loss_of.chunked
    loss = loss_of(tokens)
    (loss * upstream).backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    assert reference and grads(model).keys() == reference.keys()
    for name, grad in grads(model).items():
        torch.testing.assert_close(grad, reference[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("chunk_rows, expected_calls", [(8, 8), (None, 1)])
def test_the_head_sees_one_chunk_of_positions_at_a_time(chunk_rows, expected_calls):
    """With chunks, no call of the head covers more positions than a chunk holds, and each chunk goes through the
    head once (its gradients are found in the same pass); a model whose loss cannot be chunked computes every
    position at once (the control)."""
    model = TINY_MODELS["llama"]()
    attach_adapters(model, "masklora", rank=2)
    select_trainable(model, ("norms",))
    tokens = random_tokens(4, 17)  # 64 predicted positions
    loss_of = CausalLMLoss(model, chunk_logits=8 * VOCAB)
    loss_of.chunked = chunk_rows is not None
    rows = []
    model.get_output_embeddings().register_forward_hook(lambda m, a, out: rows.append(out.shape[:-1].numel()))
    loss_of(tokens).backward()
    assert max(rows) == (chunk_rows or 4 * 17)
    assert len(rows) == expected_calls


def test_a_model_that_transforms_its_logits_keeps_its_own_loss():
    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=3.0)
    model = Gemma2ForCausalLM(config)
    tokens = random_tokens(2, 8)
    loss_of = CausalLMLoss(model)
    assert not loss_of.chunked
    torch.testing.assert_close(loss_of(tokens), model(input_ids=tokens, labels=tokens).loss)
