"""The Streamlit side of the Inside a layer page: the model, and each block's captured inputs, cached per server.

Loading a model and capturing what a block's linears see take seconds; one DenseWalk per model and windows keeps
what entered the blocks it ran, so another block costs the blocks in between, not the whole depth again.
Everything after (pruning one matrix by each method, the curves, the adapter demo) is cached per setting, so
moving a slider back is instant.
Inputs are the plain values the page's widgets hold, so every cache key is hashable and readable.
"""

from __future__ import annotations

import threading

import streamlit as st

from perp_engine.inspect_layer import (
    DEMO_RANK,
    AdapterOutcome,
    DenseWalk,
    ErrorCurves,
    LayerCapture,
    LayerInspection,
    adapter_zeros,
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
    """Held while a capture walks the shared model with its hooks on, so two sessions' captures never mix."""
    return threading.Lock()


@st.cache_resource(show_spinner=False, max_entries=1)
def walk(name: str, dataset: str, windows: int, seqlen: int) -> DenseWalk:
    """The dense model's walk over ``windows`` calibration and held-out windows of ``dataset``; used under the lock.
    One at a time, as the model: it holds the model and up to DenseWalk's budget of block inputs."""
    loaded, tokenizer = model(name)
    calib, heldout = layer_windows(tokenizer, dataset, windows, seqlen)
    return DenseWalk(loaded, calib, heldout)


@st.cache_resource(show_spinner=False, max_entries=4)
def capture(name: str, dataset: str, windows: int, seqlen: int, block: int) -> dict[str, LayerCapture]:
    with _hooks():
        return walk(name, dataset, windows, seqlen).capture(block)


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
