"""perp_engine.model.parameters: every parameter counted once, whichever modules share it."""

import pytest
from tiny_models import TINY_MODELS
from torch import nn

from perp_engine.model.parameters import count_parameters


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
