"""bench/one_pass_phases_bench.py times SparseGPT's phases where the engine looks them up: a timer that lands on a
name the engine no longer calls would read zero and the bench would credit the forward with that phase's seconds."""

from collections import Counter

import pytest
import torch
from tiny_models import TINY_MODELS, random_tokens

from perp_engine.model.capture import capture_block_inputs
from perp_engine.pruning.sequential import prune_model


@pytest.fixture
def bench(bench_module):
    return bench_module("one_pass_phases_bench")


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_every_phase_is_timed_and_the_timed_run_prunes_as_the_untimed_one(bench, monkeypatch, pattern):
    def pruned(timers: Counter | None):
        model = TINY_MODELS["llama"]()
        inputs = capture_block_inputs(model, random_tokens(4, 16), batch_size=2)
        if timers is not None:
            bench.install_timers(timers, monkeypatch.setattr)
        with torch.no_grad():
            prune_model(model, inputs, method="sparsegpt", sparsity=0.5, pattern=pattern, sequential="layer")
        return [p.detach().clone() for p in model.parameters()]

    untimed = pruned(None)
    phases = Counter()
    timed = pruned(phases)
    assert all(torch.equal(a, b) for a, b in zip(untimed, timed))
    seconds = bench.phase_seconds(phases)
    expected = set(bench.PHASES) - ({"mask thresholds"} if pattern == "2:4" else set())  # N:M has no block threshold
    assert {phase for phase, value in seconds.items() if value > 0} == expected
