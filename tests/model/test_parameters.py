"""perp_engine.model.parameters: every parameter counted once, whichever modules share it."""

import pytest
from tiny_models import TINY_MODELS
from torch import nn

from perp_engine.model.parameters import (
    compact_count,
    count_parameters,
    recorded_trainable_text,
    trainable_share,
    trainable_text,
)
from perp_engine.repair.adapters import attach_adapters
from perp_engine.repair.subsets import select_trainable


@pytest.mark.parametrize("family", ["gpt2", "mistral"])
def test_a_tied_head_is_counted_once(family):
    model = TINY_MODELS[family]()
    every = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    tied = head.weight is embeddings.weight
    assert tied == (family == "gpt2")
    assert count_parameters(model) == every - (head.weight.numel() if tied else 0)


def test_a_module_used_twice_is_counted_once():
    layer = nn.Linear(4, 3)
    assert count_parameters(nn.Sequential(layer, nn.ReLU(), layer)) == count_parameters(layer) == 4 * 3 + 3


@pytest.mark.parametrize("n, text", [(134_515_008, "134.5M"), (28_311_552, "28.3M"), (795_648, "795.6k"), (576, "576"),
                                     (2_000_000_000, "2.0B")])
def test_compact_counts(n, text):
    assert compact_count(n) == text


def test_the_share_is_of_the_models_own_parameters():
    """The issue's run: 830,784 trained of SmolLM2's 134.5M is 0.618%, with the head LoRA and the head copy beside."""
    assert trainable_text(830_784, 134_515_008, 795_648, 28_311_552) == (
        "0.618% of the model's 134.5M parameters (+ 795.6k adapter weights, + untied head 28.3M)")
    assert trainable_text(1_000, 1_000) == "100% of the model's 1.0k parameters"
    assert trainable_share(5, 0) == 0.0


def test_a_stored_result_old_or_new():
    new = {"trainable_params": 830_784, "total_params": 163_622_208, "model_params": 134_515_008,
           "adapter_params": 795_648, "head_copy_params": 28_311_552}
    assert recorded_trainable_text(new).startswith("0.618% of the model's 134.5M parameters")
    old = {"trainable_params": 830_784, "total_params": 163_622_208}  # recorded before model_params existed
    assert recorded_trainable_text(old).startswith("0.508% of 163.6M parameters, adapters and any untied head copy")
    assert recorded_trainable_text({"trainable_params": 0, "total_params": 10}) is None


@pytest.mark.parametrize("family", ["gpt2", "mistral"])
def test_select_trainable_keeps_the_adapters_and_the_head_copy_apart(family):
    model = TINY_MODELS[family]()
    own = count_parameters(model)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    attach_adapters(model, "masklora", rank=2, alpha=4.0, target_modules=(), seed=0)
    report = select_trainable(model, ("norms", "head-lora"), untie=True)
    assert report.model_params == own
    assert report.adapter_params > report.by_category["adapter"] > 0  # the head LoRA is an adapter too
    assert report.head_copy_params == (model.get_input_embeddings().weight.numel() if tied else 0)
    assert report.model_params + report.adapter_params + report.head_copy_params == report.total
    assert report.fraction == pytest.approx(report.trainable / own)
