"""End to end on a tiny saved LLaMA and a tiny text file: every mode, caching, saving."""

import json
import math
from dataclasses import asdict

import pytest
import torch
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from perp_engine.config import REPAIR_FIELDS, RunConfig
from perp_engine.errors import PerpError
from perp_engine.model.parameters import count_parameters
from perp_engine.run.pipeline import run_pipeline

BASE = dict(seqlen=16, calib_samples=8, eval_tokens=256, batch_size=4, steps=4, seed=0, device="cpu")


def config(model_dir, text_file, preset=None, **fields):
    return RunConfig.create(preset, model=str(model_dir), dataset=str(text_file), **{**BASE, **fields})


@pytest.mark.parametrize(
    "preset, fields",
    [
        ("none", {"method": "wanda"}),
        ("perp", {"method": "magnitude", "lr": 1e-2}),
        ("perp-masklora", {"method": "sparsegpt", "lr": 1e-2}),
        ("perp-scalelora", {"method": "wanda", "pattern": "2:4", "lr": 1e-2}),
        ("perp-scalelora-paper", {"method": "magnitude", "lr": 1e-2}),
        ("full-ft", {"method": "magnitude", "lr": 1e-3}),
        ("recon-masklora", {"method": "wanda", "lr": 1e-2}),
    ],
)
def test_modes_end_to_end(tiny_model_dir, tiny_text_file, preset, fields):
    stages = []
    result = run_pipeline(config(tiny_model_dir, tiny_text_file, preset, **fields),
                          progress=lambda stage, fraction, message="": stages.append(stage))
    assert result.sparsity == pytest.approx(0.5, abs=0.02)
    assert math.isfinite(result.dense_ppl) and math.isfinite(result.pruned_ppl)
    assert all(math.isfinite(r.recon_error) and math.isfinite(r.drift) for r in result.layers)
    assert len(result.blocks) == 2
    assert result.blocks[0].loss_before == pytest.approx(result.blocks[0].drift_before, rel=1e-6)
    assert result.measure_windows["count"] == 8 and result.measure_windows["held_out"]
    assert {"load", "data", "dense_eval", "prune", "pruned_eval"} <= set(stages)
    assert list(result.stage_seconds) == list(dict.fromkeys(stages))  # every stage's wall clock, in run order
    assert result.stage_seconds["prune"] >= result.timings["prune"]  # the stage holds its pruning and its measuring
    assert result.estimate["seconds"] == pytest.approx(sum(result.estimate["breakdown"].values()), abs=0.5)
    assert set(result.estimate["breakdown"]) == set(result.stage_seconds)
    if preset == "none":
        assert result.final_ppl is None and result.train_loss == []
        return
    assert "train" in stages and "final_eval" in stages
    assert math.isfinite(result.final_ppl)
    assert 0 < result.trainable_params <= result.total_params
    assert (result.trainable_params == result.total_params) == (preset == "full-ft")
    own = count_parameters(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    assert result.model_params == own  # the share's denominator: the model's own parameters
    assert result.model_params + result.adapter_params + result.head_copy_params == result.total_params
    by_category = result.trainable_by_category
    assert result.adapter_params == by_category.get("adapter", 0) + by_category.get("head-lora", 0)
    assert result.trainable_fraction == pytest.approx(result.trainable_params / own)
    assert len(result.train_loss) >= BASE["steps"]
    assert all(r.recon_error_after is not None and r.drift_after is not None for r in result.layers)
    assert all(r.loss_after is not None and r.drift_after is not None for r in result.blocks)
    for rec in result.layers:  # pruning masks survive repair and merging
        assert rec.sparsity == pytest.approx(0.5, abs=1 / 16)


def test_reconstruct_lowers_every_block_objective(tiny_model_dir, tiny_text_file):
    result = run_pipeline(config(tiny_model_dir, tiny_text_file, "recon-masklora", method="magnitude", steps=20, lr=2e-2))
    for rec in result.blocks:
        assert rec.train_loss_after < rec.train_loss_before


def test_cache_reuses_dense_ppl_and_pruned_weights(tiny_model_dir, tiny_text_file, tmp_path):
    cfg = config(tiny_model_dir, tiny_text_file, method="sparsegpt")
    first = run_pipeline(cfg, cache_dir=str(tmp_path))
    second = run_pipeline(cfg, cache_dir=str(tmp_path))
    assert first.reused == [] and set(second.reused) == {"dense_ppl", "pruned_model", "pruned_ppl", "layer_errors"}
    assert second.dense_ppl == first.dense_ppl and second.pruned_ppl == first.pruned_ppl
    assert [r.sparsity for r in second.layers] == [r.sparsity for r in first.layers]
    assert [(r.recon_error, r.drift) for r in second.layers] == [(r.recon_error, r.drift) for r in first.layers]
    assert second.timings["measure"] < first.timings["measure"] + 1.0  # nothing measured again, no dense copy made
    other = run_pipeline(cfg.replace(sparsity=0.3), cache_dir=str(tmp_path))
    assert other.reused == ["dense_ppl"]


def test_saved_model_reloads_with_same_perplexity_and_masks(tiny_model_dir, tiny_text_file, tmp_path):
    cfg = config(tiny_model_dir, tiny_text_file, "perp-masklora", method="wanda", lr=1e-2)
    result = run_pipeline(cfg, output_dir=str(tmp_path / "out"))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    masks = load_file(str(tmp_path / "out" / "masks.safetensors"))
    assert len(masks) == len(result.layers)
    for name, mask in masks.items():
        torch.testing.assert_close(reloaded.get_submodule(name).weight != 0, mask)
    again = run_pipeline(cfg.replace(model=str(tmp_path / "out"), mode="none", train=(), adapter="none", preset=None, sparsity=0.0))
    assert again.dense_ppl == pytest.approx(result.final_ppl, rel=1e-5)


def test_same_seed_same_numbers(tiny_model_dir, tiny_text_file):
    cfg = config(tiny_model_dir, tiny_text_file, "perp", method="wanda", lr=1e-2)
    a, b = run_pipeline(cfg), run_pipeline(cfg)
    assert a.final_ppl == pytest.approx(b.final_ppl, rel=1e-6)
    assert a.train_loss == pytest.approx(b.train_loss, rel=1e-6)


# Every repair field but train and adapter (which a run without repair must leave empty), changed from its default
UNREAD = {"rank": 4, "alpha": 8.0, "target_modules": ("q_proj",), "untie_head": False, "steps": 7, "lr": 1e-3,
          "grad_accum": 2, "warmup_ratio": 0.3, "weight_decay": 0.1, "max_grad_norm": 0.5, "grad_checkpointing": True,
          "master_weights": False, "train_samples": 64, "eval_every": 2}


def test_a_run_without_repair_computes_the_same_whatever_the_repairs_fields_hold(tiny_model_dir, tiny_text_file):
    """What lets the run store key such runs without REPAIR_FIELDS (an identical run is offered, its result reused)."""
    assert set(UNREAD) == set(REPAIR_FIELDS) - {"train", "adapter"}
    plain = run_pipeline(config(tiny_model_dir, tiny_text_file, "none", method="sparsegpt"))
    changed = run_pipeline(config(tiny_model_dir, tiny_text_file, "none", method="sparsegpt", **UNREAD))
    assert (changed.dense_ppl, changed.pruned_ppl, changed.final_ppl) == (plain.dense_ppl, plain.pruned_ppl,
                                                                          plain.final_ppl)
    layers = [[json.dumps(asdict(layer)) for layer in result.layers] for result in (plain, changed)]
    assert layers[0] == layers[1]
    assert changed.trainable_params == plain.trainable_params == 0


def test_text_too_short_is_a_clear_error(tmp_path, tiny_model_dir):
    short = tmp_path / "short.txt"
    short.write_text("Too short.\n\nReally.")
    with pytest.raises(PerpError) as info:
        run_pipeline(RunConfig(model=str(tiny_model_dir), dataset=str(short), **BASE))
    assert info.value.field in {"dataset", "eval_tokens", "calib_samples", "seqlen"}


@pytest.mark.parametrize("fields, field", [({"rank": 64}, "rank"), ({"target_modules": ("c_attn",)}, "target_modules")])
def test_adapter_that_does_not_fit_fails_before_pruning(tiny_model_dir, tiny_text_file, fields, field):
    stages = []
    with pytest.raises(PerpError) as info:
        run_pipeline(config(tiny_model_dir, tiny_text_file, "perp-masklora", **fields),
                     progress=lambda stage, fraction, message="": stages.append(stage))
    assert info.value.field == field
    assert "prune" not in stages


def test_a_tied_head_stays_tied_while_its_lora_trains_and_gets_its_copy_at_the_merge(tiny_model_dir, tiny_text_file, tmp_path):
    result = run_pipeline(config(tiny_model_dir, tiny_text_file, "perp", method="wanda", lr=1e-2),
                          output_dir=str(tmp_path / "out"))
    assert any("its own copy when the LoRA merges" in n for n in result.notes)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert saved.lm_head.weight is not saved.model.embed_tokens.weight and not saved.config.tie_word_embeddings
    dense = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert torch.equal(saved.model.embed_tokens.weight, dense.model.embed_tokens.weight)  # embeddings untouched
    assert not torch.equal(saved.lm_head.weight, dense.lm_head.weight)  # the merged LoRA moved the head only
