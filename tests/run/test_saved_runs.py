"""A saved run reloads as what was measured: every preset and every adapter kind, the same perplexity from the
files alone (plain LoRA through peft's own loader), masks that list only the pruned weights."""

import pytest
import torch
from fixtures_tiny import perp_home, tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from perp_engine.config import ADAPTERS, RunConfig
from perp_engine.data.corpora import load_corpus
from perp_engine.data.sampling import eval_windows
from perp_engine.evaluation.perplexity import perplexity
from perp_engine.evaluation.sparsity import model_sparsity
from perp_engine.paths import ADAPTER_DIR, MASKS_FILE
from perp_engine.presets import PRESETS
from perp_engine.run.pipeline import run_pipeline

BASE = dict(seqlen=16, calib_samples=8, eval_tokens=256, batch_size=4, steps=3, seed=0, device="cpu", lr=1e-2,
            method="wanda")
CASES = [(preset, {}) for preset in PRESETS] + [
    (None, {"mode": "retrain", "train": ("norms",), "adapter": kind}) for kind in ADAPTERS if kind != "none"]


def reloaded_perplexity(folder, text_file, seqlen, eval_tokens):
    model = AutoModelForCausalLM.from_pretrained(folder)
    if (folder / ADAPTER_DIR).is_dir():
        model = PeftModel.from_pretrained(model, folder / ADAPTER_DIR)
    windows = eval_windows(AutoTokenizer.from_pretrained(folder), load_corpus(str(text_file)).eval_text, seqlen,
                           eval_tokens, home=False)
    return perplexity(model, windows, 4)


@pytest.mark.parametrize("preset, fields", CASES, ids=[p or f["adapter"] for p, f in CASES])
def test_saved_run_reloads_with_its_perplexity(tiny_model_dir, tiny_text_file, tmp_path, preset, fields, perp_home):
    config = RunConfig.create(preset, model=str(tiny_model_dir), dataset=str(tiny_text_file), **{**BASE, **fields})
    out = tmp_path / "saved"
    result = run_pipeline(config, output_dir=str(out))
    expected = result.final_ppl if result.final_ppl is not None else result.pruned_ppl
    assert reloaded_perplexity(out, tiny_text_file, BASE["seqlen"], BASE["eval_tokens"]) == pytest.approx(expected, rel=1e-5)
    assert (out / ADAPTER_DIR).is_dir() == (config.adapter == "lora")
    masks = load_file(str(out / MASKS_FILE))
    assert sorted(masks) == sorted(r.name for r in result.layers)  # the pruned weights, no adapter factors
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert model_sparsity(plain)["overall"] == pytest.approx(result.sparsity)
    for name, mask in masks.items():
        assert torch.equal(plain.get_submodule(name).weight != 0, mask)
