"""A DenseWalk captures any block exactly as a fresh capture_block does, in any order, while running only the
blocks between the nearest input it kept and the block asked for."""

from __future__ import annotations

import pytest
import torch
from tiny_models import random_tokens
from transformers import MistralConfig, MistralForCausalLM

from perp_engine.inspect_layer import DenseWalk, capture_block

BLOCKS = 6


@pytest.fixture(scope="module")
def deep():
    """A 6-block tiny Mistral and its calibration and held-out windows."""
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=BLOCKS,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, sliding_window=None)
    return MistralForCausalLM(cfg).eval(), random_tokens(4, 16, seed=0), random_tokens(3, 16, seed=1)


def per_block_bytes(calib: torch.Tensor, heldout: torch.Tensor) -> int:
    """What one block's inputs of both window sets take: (tokens, hidden 32) float32."""
    return (calib.numel() + heldout.numel()) * 32 * 4


def assert_same_capture(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name, layer in got.items():
        assert layer.name == expected[name].name and torch.equal(layer.weight, expected[name].weight)
        torch.testing.assert_close(layer.calib_inputs, expected[name].calib_inputs, rtol=0, atol=0)
        torch.testing.assert_close(layer.calib.H, expected[name].calib.H, rtol=0, atol=0)
        torch.testing.assert_close(layer.heldout.H, expected[name].heldout.H, rtol=0, atol=0)


def test_a_walk_captures_blocks_in_any_order_as_a_fresh_capture_does(deep):
    model, calib, heldout = deep
    walk = DenseWalk(model, calib, heldout, batch_size=2, budget=BLOCKS * per_block_bytes(calib, heldout))
    assert walk.stride == 1
    for block in (3, 4, 2, 5, 0):
        assert_same_capture(walk.capture(block), capture_block(model, block, calib, heldout, batch_size=2))


def test_a_walk_runs_only_the_blocks_since_the_nearest_kept_input(deep):
    model, calib, heldout = deep
    walk = DenseWalk(model, calib, heldout, batch_size=2, budget=BLOCKS * per_block_bytes(calib, heldout))
    ran = []
    for block in (3, 4, 2, 5, 1):
        before = walk.blocks_run
        walk.capture(block)
        ran.append(walk.blocks_run - before)
    assert ran == [3, 1, 0, 1, 0]  # every block reached is kept


def test_a_smaller_budget_keeps_fewer_inputs_and_reruns_more(deep):
    model, calib, heldout = deep
    walk = DenseWalk(model, calib, heldout, batch_size=2, budget=BLOCKS * per_block_bytes(calib, heldout) // 2)
    assert walk.stride == 2
    walk.capture(5)
    assert sorted(walk.kept) == [0, 2, 4, 5]  # every second block and the last one captured
    before = walk.blocks_run
    walk.capture(3)  # from block 2's input
    assert walk.blocks_run - before == 1 and sorted(walk.kept) == [0, 2, 3, 4]
    frugal = DenseWalk(model, calib, heldout, batch_size=2, budget=0)
    frugal.capture(4)
    assert sorted(frugal.kept) == [0, 4]
