"""On a CUDA device: runs equal the CPU's (to float tolerance), offloading to CPU memory changes nothing, and
half precision keeps exact sparsity patterns. Skipped without CUDA; bench/gpu_check.sh runs them (``-m cuda``)."""

import math

import pytest
import torch
from fixtures_tiny import perp_home, save_tiny_model, tiny_preset_config, tiny_text_file  # noqa: F401  (pytest fixtures)
from safetensors.torch import load_file

from perp_engine.run.pipeline import run_pipeline

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICE = "cuda"
METHODS = [("magnitude", "perp"), ("wanda", "perp-masklora"), ("sparsegpt", "recon-masklora")]


def _run(tmp_path, model_dir, text, name, preset, **fields):
    return run_pipeline(tiny_preset_config(model_dir, text, preset, steps=3, **fields), output_dir=str(tmp_path / name))


@pytest.mark.parametrize("method, preset", METHODS)
def test_a_cuda_run_equals_the_cpu_run(method, preset, tmp_path, tiny_text_file, perp_home):  # noqa: F811
    model_dir = save_tiny_model(tmp_path / "llama")
    runs = {d: _run(tmp_path, model_dir, tiny_text_file, d, preset, method=method, device=d) for d in ("cpu", DEVICE)}
    assert runs[DEVICE].environment["device"].startswith("cuda")
    for field in ("dense_ppl", "pruned_ppl", "final_ppl"):
        assert math.isclose(getattr(runs["cpu"], field), getattr(runs[DEVICE], field), rel_tol=1e-3)
    assert runs["cpu"].sparsity == pytest.approx(runs[DEVICE].sparsity, abs=1e-3)


@pytest.mark.parametrize("method, preset", METHODS)
def test_cpu_offload_on_cuda_gives_the_same_run(method, preset, tmp_path, tiny_text_file, perp_home):  # noqa: F811
    model_dir = save_tiny_model(tmp_path / "llama")
    runs = {m: _run(tmp_path, model_dir, tiny_text_file, m, preset, method=method, device=DEVICE, offload=m)
            for m in ("none", "cpu")}
    assert runs["cpu"].environment["offload"] == "cpu"
    for field in ("dense_ppl", "pruned_ppl", "final_ppl"):
        assert math.isclose(getattr(runs["none"], field), getattr(runs["cpu"], field), rel_tol=1e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_on_cuda_keeps_exact_2_4_patterns(dtype, tmp_path, tiny_text_file, perp_home):  # noqa: F811
    model_dir = save_tiny_model(tmp_path / "llama")
    result = _run(tmp_path, model_dir, tiny_text_file, dtype, "perp-masklora", method="sparsegpt", pattern="2:4",
                  device=DEVICE, dtype=dtype)
    assert math.isfinite(result.final_ppl)
    weights = load_file(str(tmp_path / dtype / "model.safetensors"))
    pruned = [w for name, w in weights.items() if name.endswith("proj.weight") and "layers" in name]
    assert pruned
    for w in pruned:
        groups = (w.float() != 0).reshape(w.shape[0], -1, 4).sum(-1)
        assert bool((groups <= 2).all())
