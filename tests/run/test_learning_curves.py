"""Learning curves (eval_every): the held-out perplexity during retraining and each block's held-out error during
reconstruction, taken on windows training never sees, their ends agreeing with what the run measures apart."""

import pytest
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.run.pipeline import run_pipeline

BASE = dict(seqlen=16, calib_samples=8, eval_tokens=256, batch_size=4, seed=0, device="cpu", method="magnitude")


def run(model_dir, text_file, preset, **fields):
    return run_pipeline(RunConfig.create(preset, model=str(model_dir), dataset=str(text_file), **{**BASE, **fields}))


@pytest.mark.parametrize("preset, lr", [("perp", 1e-2), ("full-ft", 1e-3), ("perp-masklora", 1e-2)])
def test_retraining_curve_starts_at_the_pruned_and_ends_at_the_final_perplexity(tiny_model_dir, tiny_text_file,
                                                                                 preset, lr):
    result = run(tiny_model_dir, tiny_text_file, preset, steps=7, lr=lr, eval_every=3)
    assert [p["step"] for p in result.curve] == [0, 3, 6, 7]
    assert result.curve[0]["ppl"] == pytest.approx(result.pruned_ppl, rel=1e-5)  # adapters start as the identity
    assert result.curve[-1]["ppl"] == pytest.approx(result.final_ppl, rel=1e-4)  # merged: the same model
    assert result.curve[-1]["ppl"] < result.curve[0]["ppl"]
    seconds = [p["seconds"] for p in result.curve]
    assert seconds == sorted(seconds) and seconds[-1] <= result.timings["train"]
    assert 0 < result.curve_seconds < result.timings["train"]


def test_a_curve_does_not_change_the_trained_model(tiny_model_dir, tiny_text_file):
    plain = run(tiny_model_dir, tiny_text_file, "perp-masklora", steps=5, lr=1e-2)
    probed = run(tiny_model_dir, tiny_text_file, "perp-masklora", steps=5, lr=1e-2, eval_every=2)
    assert plain.curve == [] and plain.curve_seconds == 0
    assert probed.final_ppl == plain.final_ppl and probed.train_loss == plain.train_loss


def test_each_reconstructed_block_ends_its_curve_at_its_measured_error(tiny_model_dir, tiny_text_file):
    result = run(tiny_model_dir, tiny_text_file, "recon-masklora", steps=6, lr=2e-2, eval_every=2)
    for rec in result.blocks:
        assert [p["step"] for p in rec.curve] == [0, 2, 4, 6]
        # the held-out windows are the measurement windows, their inputs through the reconstructed blocks upstream:
        # the curve's last point is the block's local error the run measures after the merge
        assert rec.curve[-1]["error"] == pytest.approx(rec.loss_after, rel=1e-3)
    assert result.blocks[0].curve[0]["error"] == pytest.approx(result.blocks[0].loss_before, rel=1e-4)
    assert result.curve == [] and result.curve_seconds > 0


def test_the_final_sparsity_is_counted_from_the_final_weights(tiny_model_dir, tiny_text_file):
    result = run(tiny_model_dir, tiny_text_file, "perp-scalelora", steps=2, lr=1e-2)
    assert result.final_sparsity == pytest.approx(result.sparsity, abs=1e-12) and result.final_sparsity > 0.45
    assert run(tiny_model_dir, tiny_text_file, "none").final_sparsity is None


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_eval_every_must_be_a_whole_number_of_steps(value):
    with pytest.raises(PerpError, match="eval_every"):
        RunConfig(eval_every=value)


@pytest.mark.parametrize("steps, every", [(7, 3), (6, 2), (4, 9), (100, 20)])
def test_the_estimate_counts_the_points_the_loop_takes(steps, every):
    from perp_engine.repair.training_loop import Probe
    from perp_engine.resources.estimate import curve_points

    probe = Probe(every, lambda: 0.0)
    assert curve_points(steps, every) == sum(probe.due(step, steps) for step in range(steps + 1))
    assert curve_points(steps, 0) == 0
