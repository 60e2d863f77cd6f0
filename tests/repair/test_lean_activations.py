"""Lean norm and MLP forwards: the model's own outputs and gradients, fewer activations kept for backward."""

import pytest
import torch
from norm_close import assert_close_in_norm
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.repair.adapters import attach_adapters
from perp_engine.repair.lean_activations import use_lean_activations
from perp_engine.repair.retrain import retrain
from perp_engine.repair.subsets import select_trainable

# families with an RMSNorm and a SiLU-gated MLP get lean forwards (two norms per block, the final norm, one MLP
# per block); OPT and GPT-2 (LayerNorm, GELU MLP) keep their own
LEAN = {"llama": 2 * 2 + 1 + 2, "mistral": 7, "qwen2": 7, "opt": 0, "gpt2": 0}
# what trains: a PERP subset, every weight, a PERP subset beside MaskLoRA adapters (which keep their inputs)
SETUPS = {"perp": (("norms", "head-lora"), None), "full": (("full",), None), "masklora": (("norms",), "masklora")}


def _model(family, setup, dtype=torch.float32):
    model = TINY_MODELS[family]().to(dtype)
    subsets, adapter = SETUPS[setup]
    if adapter:
        attach_adapters(model, adapter, rank=2)
    select_trainable(model, subsets)
    return model.train()


def _loss_and_grads(model, tokens):
    model.zero_grad(set_to_none=True)
    kept = {}

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    torch.manual_seed(0)  # the same dropout masks (GPT-2, OPT) in both runs
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=tokens, labels=tokens)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()} | {
        b.untyped_storage().data_ptr() for b in model.buffers()}
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads, sum(v for k, v in kept.items() if k not in params)


def _changed(model):
    return [m for m in model.modules() if "forward" in vars(m)]


@pytest.mark.parametrize("setup", sorted(SETUPS))
@pytest.mark.parametrize("family", sorted(TINY_MODELS))
def test_same_outputs_and_gradients_fewer_kept_activations(family, setup):
    model = _model(family, setup)
    tokens = random_tokens(3, 16, seed=2)
    logits, reference, kept = _loss_and_grads(model, tokens)
    restore = use_lean_activations(model)
    assert len(_changed(model)) == LEAN[family]
    lean_logits, grads, lean_kept = _loss_and_grads(model, tokens)
    restore()
    assert _changed(model) == []
    assert torch.equal(lean_logits, logits)  # the same operations in the same order
    assert grads.keys() == reference.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference[name], rtol=1e-5, atol=1e-6, msg=name)
    if LEAN[family]:
        # no longer kept: silu(gate) of every block and the normalised hidden states of every norm but the first
        # (under frozen embeddings plain autograd keeps only that one, the lean norm its input instead), float32
        cfg = model.config
        widths = (2 * cfg.num_hidden_layers - 1) * cfg.hidden_size + cfg.num_hidden_layers * cfg.intermediate_size
        assert kept - lean_kept >= tokens.numel() * 4 * widths
    else:
        assert lean_kept == kept


def test_half_precision_gradients_match_plain_autograd():
    model = _model("llama", "perp", torch.bfloat16)
    with torch.no_grad():  # B = 0 would leave the head LoRA's A without a gradient to compare
        model.lm_head.lora_B["perp"].weight.normal_(std=0.02)
    tokens = random_tokens(2, 16, seed=3)
    logits, reference, _ = _loss_and_grads(model, tokens)
    restore = use_lean_activations(model)
    lean_logits, grads, _ = _loss_and_grads(model, tokens)
    restore()
    assert torch.equal(lean_logits, logits)
    assert grads.keys() == reference.keys() and grads
    for name, grad in grads.items():  # the lean backward works in float32: closer to exact than bf16 autograd
        assert grad.dtype == torch.bfloat16
        assert_close_in_norm(grad, reference[name], share=0.01, msg=name)  # measured: at most 0.5%


def test_a_module_with_its_own_instance_forward_is_left_alone():
    """An offloading hook wraps ``forward`` on the instance; a lean forward would skip it."""
    model = _model("llama", "perp")
    norm = model.model.norm
    calls = []
    own = norm.forward

    def hooked(x):
        calls.append(1)
        return own(x)

    norm.forward = hooked
    restore = use_lean_activations(model)
    assert norm.forward is hooked and len(_changed(model)) == LEAN["llama"]  # the 6 others and the hooked one
    model(input_ids=random_tokens(1, 8))
    restore()
    assert calls == [1] and norm.forward is hooked


@pytest.mark.parametrize("checkpointing", [False, True])
def test_retraining_uses_them_and_gives_the_modules_their_own_back(checkpointing):
    tokens = random_tokens(8, 16, seed=5)
    results = []
    for lean in (False, True):
        model = _model("llama", "perp")
        if not lean:  # an instance forward on every module blocks the lean ones: plain autograd throughout
            for m in model.modules():
                m.forward = m.forward
        retrain(model, tokens, steps=3, lr=1e-2, batch_size=4, grad_checkpointing=checkpointing)
        results.append({n: p.detach().clone() for n, p in model.named_parameters()})
        if lean:
            assert _changed(model) == []
    for name, value in results[1].items():
        torch.testing.assert_close(value, results[0][name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(not torch.equal(results[1][n], TINY_MODELS["llama"]().state_dict()[n]) for n in results[1]
               if "norm" in n)
