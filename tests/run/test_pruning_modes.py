"""The newer pruning modes through the whole pipeline: OWL's allocation, RIA and DSnoT, with every method."""

import math

import pytest
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)

from perp_engine.config import RunConfig
from perp_engine.run.pipeline import run_pipeline

BASE = dict(seqlen=16, calib_samples=8, eval_tokens=256, batch_size=4, seed=0, device="cpu", mode="none")


def config(model_dir, text_file, **fields):
    return RunConfig.create(None, model=str(model_dir), dataset=str(text_file), **{**BASE, **fields})


@pytest.mark.parametrize("fields", [
    {"method": "wanda", "allocation": "owl", "sparsity": 0.6},
    {"method": "magnitude", "allocation": "owl", "sparsity": 0.5, "owl_lambda": 0.1},
    {"method": "sparsegpt", "allocation": "owl", "sparsity": 0.7},
    {"method": "ria", "allocation": "owl", "sparsity": 0.5},
    {"method": "ria", "sparsity": 0.5},
    {"method": "ria", "pattern": "2:4", "ria_permute": "lsa"},
    {"method": "wanda", "sparsity": 0.5},
    {"method": "wanda", "sparsity": 0.6, "refine": "dsnot"},
    {"method": "magnitude", "allocation": "owl", "sparsity": 0.6, "refine": "dsnot", "dsnot_skip_layer": "no_skip"},
    {"method": "sparsegpt", "pattern": "2:4", "refine": "dsnot"},
    {"method": "ria", "pattern": "4:8", "ria_permute": "reallocation", "refine": "dsnot", "dsnot_same_sign": "off"},
], ids=lambda f: "-".join(str(v) for v in f.values()))
def test_each_block_gets_its_allocated_sparsity_and_the_run_records_it(tiny_model_dir, tiny_text_file, fields):
    cfg = config(tiny_model_dir, tiny_text_file, **fields)
    result = run_pipeline(cfg)
    assert len(result.block_sparsity) == 2
    assert sum(result.block_sparsity) / 2 == pytest.approx(cfg.sparsity, abs=1e-12)
    if cfg.allocation == "owl":  # two blocks: one at the fewest outliers, one at the most
        assert len(result.outlier_share) == 2 and all(0 < s < 100 for s in result.outlier_share)
        low, high = sorted(result.block_sparsity)
        assert high - low == pytest.approx(2 * cfg.owl_lambda, abs=1e-12)
        assert result.block_sparsity[result.outlier_share.index(max(result.outlier_share))] == low
    else:
        assert result.outlier_share == [] and result.block_sparsity == [cfg.sparsity] * 2
    for rec in result.layers:  # counts are floored per row of at least 32 inputs
        assert rec.sparsity == pytest.approx(result.block_sparsity[rec.block], abs=1 / 32)
    assert result.sparsity == pytest.approx(cfg.sparsity, abs=0.02)
    assert math.isfinite(result.pruned_ppl)


def test_cached_pruned_weights_bring_their_allocation_back(tiny_model_dir, tiny_text_file, tmp_path):
    cfg = config(tiny_model_dir, tiny_text_file, method="wanda", allocation="owl", sparsity=0.6)
    first = run_pipeline(cfg, cache_dir=str(tmp_path))
    second = run_pipeline(cfg, cache_dir=str(tmp_path))
    assert "pruned_model" in second.reused
    assert (second.block_sparsity, second.outlier_share) == (first.block_sparsity, first.outlier_share)
    uniform = run_pipeline(cfg.replace(allocation="uniform"), cache_dir=str(tmp_path))
    assert "pruned_model" not in uniform.reused and uniform.block_sparsity == [0.6, 0.6]


def test_dsnot_keeps_every_count_and_reworks_the_attention_linears(tiny_model_dir, tiny_text_file):
    base = config(tiny_model_dir, tiny_text_file, method="wanda", sparsity=0.6)
    plain = run_pipeline(base)
    refined = run_pipeline(base.replace(refine="dsnot"))
    assert [r.sparsity for r in refined.layers] == [r.sparsity for r in plain.layers]
    q_plain, q_refined = ([r.recon_error for r in run.layers if r.name.endswith("q_proj")] for run in (plain, refined))
    assert q_refined[0] != q_plain[0]  # block 0's q_proj sees the same inputs in both: only its mask differs
