"""Inside a layer on the real embedded model: a mid-depth q_proj, pruned by each method, gives sane numbers."""

import math

import pytest

from perp_engine.inspect_layer import (
    INSPECT_METHODS,
    adapter_zeros,
    capture_block,
    error_curves,
    inspect_layer,
    layer_windows,
)
from perp_engine.model.load import load_model

pytestmark = pytest.mark.slow


def test_a_mid_depth_q_proj_of_the_embedded_model():
    model, tokenizer = load_model("smollm2-135m", device="cpu")
    calib, heldout = layer_windows(tokenizer, "wiki-embedded", 16, 128)
    layer = capture_block(model, 15, calib, heldout)["self_attn.q_proj"]
    assert layer.weight.shape == (576, 576) and layer.calib.nsamples == layer.heldout.nsamples == 16 * 128
    ins = inspect_layer(layer, 0.5)
    assert all(int((~ins.masks[m]).sum()) == 576 * 288 for m in INSPECT_METHODS)
    assert all(0 < ins.local_error[m] < 0.2 for m in INSPECT_METHODS)
    assert ins.local_error["wanda"] < ins.local_error["magnitude"]  # measured 0.009 against 0.040
    assert all(0.5 < ins.overlap[a][b] < 1 for a in INSPECT_METHODS for b in INSPECT_METHODS if a != b)
    curves = error_curves(layer)
    for method in INSPECT_METHODS:
        errors = curves.errors[method]
        assert errors[0] == 0 and all(math.isfinite(e) for e in errors) and errors[-1] > errors[5] > 0
    outcomes = adapter_zeros(layer, ins.weights["wanda"])
    assert outcomes["lora"].revived == outcomes["lora"].pruned == 576 * 288
    assert outcomes["masklora"].revived == 0
    assert all(out.local_error_after < out.local_error_before for out in outcomes.values())
