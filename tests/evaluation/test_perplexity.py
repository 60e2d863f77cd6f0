"""perp_engine.evaluation.perplexity on tiny models of every family."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import random_tokens

from perp_engine.errors import PerpError
from perp_engine.evaluation.perplexity import perplexity


def reference_ppl(model, windows: torch.Tensor) -> float:
    """exp of the mean NLL, computed another way: per window, log-softmax in float64, gathered targets."""
    nlls = []
    with torch.no_grad():
        for window in windows:
            logits = model(input_ids=window[None]).logits[0, :-1].double()
            logp = torch.log_softmax(logits, dim=-1)
            nlls.append(-logp.gather(1, window[1:, None]).squeeze(1))
    return math.exp(torch.cat(nlls).mean().item())


def test_perplexity_equals_exp_of_mean_nll(tiny_model):
    windows = random_tokens(5, 24, seed=1)
    ppl = perplexity(tiny_model, windows, batch_size=2)
    assert ppl == pytest.approx(reference_ppl(tiny_model, windows), rel=1e-5)
    assert 1.0 < ppl < 10 * 128  # a random model over a 128-token vocabulary


@pytest.mark.parametrize("positions", [1, 5, 22, 23, 24])
def test_loss_chunks_of_any_length_give_the_same_perplexity(tiny_model, positions, monkeypatch):
    """Windows of 24 tokens (23 predicted) in chunks of ``positions`` (a vocabulary this small fits one chunk):
    one position, uneven chunks, one short of a window, exactly a window, more than a window."""
    import perp_engine.evaluation.perplexity as metrics

    monkeypatch.setattr(metrics, "chunk_positions", lambda vocabulary: positions)
    windows = random_tokens(3, 24, seed=4)
    assert perplexity(tiny_model, windows, batch_size=2) == pytest.approx(reference_ppl(tiny_model, windows), rel=1e-5)


def test_perplexity_matches_the_transformers_loss(tiny_model):
    windows = random_tokens(4, 16, seed=2)
    with torch.no_grad():
        loss = tiny_model(input_ids=windows, labels=windows).loss
    assert perplexity(tiny_model, windows, batch_size=4) == pytest.approx(math.exp(loss.item()), rel=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 64])
def test_batch_size_does_not_change_perplexity(batch_size):
    from tiny_models import tiny_llama

    model = tiny_llama()
    windows = random_tokens(7, 20, seed=3)
    assert perplexity(model, windows, batch_size=batch_size) == pytest.approx(perplexity(model, windows, 1), rel=1e-5)


def test_perplexity_reports_progress_and_restores_training_mode():
    from tiny_models import tiny_opt

    model = tiny_opt().train()  # OPT has dropout: eval mode must be used for scoring
    seen = []
    ppl = perplexity(model, random_tokens(5, 12, seed=4), batch_size=2, progress=seen.append)
    assert seen == pytest.approx([0.4, 0.8, 1.0])
    assert model.training
    assert ppl == pytest.approx(perplexity(model.eval(), random_tokens(5, 12, seed=4), batch_size=5), rel=1e-5)


def test_perplexity_in_bfloat16_is_close_to_float32():
    from tiny_models import tiny_qwen2

    model = tiny_qwen2()
    windows = random_tokens(3, 16, seed=5)
    ppl32 = perplexity(model, windows)
    assert perplexity(model.to(torch.bfloat16), windows) == pytest.approx(ppl32, rel=0.05)


@pytest.mark.parametrize(
    "windows, batch_size, field",
    [
        (torch.zeros(0, 8, dtype=torch.long), 4, "eval_tokens"),
        (torch.zeros(3, 1, dtype=torch.long), 4, "eval_tokens"),
        (torch.zeros(8, dtype=torch.long), 4, "eval_tokens"),
        (torch.zeros(2, 8, dtype=torch.long), 0, "eval_batch_size"),
        (torch.zeros(2, 8, dtype=torch.long), 2.5, "eval_batch_size"),
    ],
)
def test_bad_perplexity_inputs_name_the_field(windows, batch_size, field):
    from tiny_models import tiny_llama

    with pytest.raises(PerpError) as err:
        perplexity(tiny_llama(), windows, batch_size=batch_size)
    assert err.value.field == field
