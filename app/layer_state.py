"""The Streamlit side of the Inside a layer page: the model, and each block's captured inputs, cached per server.

Loading a model and capturing what a block's linears see take seconds; everything after (pruning one matrix by
each method, the curves, the adapter demo) is cached per setting, so moving a slider back is instant.
Inputs are the plain values the page's widgets hold, so every cache key is hashable and readable.
"""

from __future__ import annotations

import threading

import streamlit as st

from perp_engine.inspect_layer import (
    DEMO_RANK,
    AdapterOutcome,
    ErrorCurves,
    LayerCapture,
    LayerInspection,
    adapter_zeros,
    capture_block,
    error_curves,
    inspect_layer,
    layer_windows,
)
from perp_engine.model.load import load_model


@st.cache_resource(show_spinner=False, max_entries=1)
def model(name: str):
    """``(model, tokenizer)`` on the device runs use (``auto``); one model at a time."""
    return load_model(name, device="auto")


@st.cache_resource(show_spinner=False)
def _hooks() -> threading.Lock:
    """Held while a capture has its hooks on the shared model, so two sessions' captures never mix."""
    return threading.Lock()


@st.cache_resource(show_spinner=False, max_entries=4)
def capture(name: str, dataset: str, windows: int, seqlen: int, block: int) -> dict[str, LayerCapture]:
    loaded, tokenizer = model(name)
    calib, heldout = layer_windows(tokenizer, dataset, windows, seqlen)
    with _hooks():
        return capture_block(loaded, block, calib, heldout)


@st.cache_resource(show_spinner=False, max_entries=32)
def inspection(name: str, dataset: str, windows: int, seqlen: int, block: int, linear: str, sparsity: float,
               pattern: str) -> LayerInspection:
    return inspect_layer(capture(name, dataset, windows, seqlen, block)[linear], sparsity, pattern)


@st.cache_resource(show_spinner=False, max_entries=32)
def curves(name: str, dataset: str, windows: int, seqlen: int, block: int, linear: str) -> ErrorCurves:
    return error_curves(capture(name, dataset, windows, seqlen, block)[linear])


@st.cache_resource(show_spinner=False, max_entries=16)
def adapters(name: str, dataset: str, windows: int, seqlen: int, block: int, linear: str, sparsity: float,
             pattern: str, method: str, steps: int) -> dict[str, AdapterOutcome]:
    """LoRA and MaskLoRA trained on the layer as ``method`` pruned it (rank DEMO_RANK, or less on a smaller layer)."""
    layer = capture(name, dataset, windows, seqlen, block)[linear]
    start = inspection(name, dataset, windows, seqlen, block, linear, sparsity, pattern).weights[method]
    return adapter_zeros(layer, start, rank=min(DEMO_RANK, *layer.weight.shape), steps=steps)
