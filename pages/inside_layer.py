"""Inside a layer: one linear up close: what magnitude, Wanda, SparseGPT, RIA and Wanda + DSnoT keep, what it costs,
and what a merge of LoRA and of MaskLoRA does to the zeros (trained on request: seconds per setting).

Every setting lives in the page address (widgets bound to query parameters, the model and text as ``model`` and
``text`` when they are not the defaults), so a reload or a shared link shows the same layer."""

import streamlit as st

from app import forms, layer_state, state, widgets
from app.inside_layer_figures import (
    CROP,
    LABELS,
    adapter_zero_maps,
    agreement_bars,
    crop_at,
    dsnot_swaps,
    error_curve_figure,
    jaccard_heatmap,
    local_error_bars,
    mask_heatmaps,
    score_heatmaps,
    update_heatmap,
)
from app.texts import INSIDE_LAYER
from perp_engine.config import DEFAULT_MODEL, RunConfig
from perp_engine.errors import PerpError
from perp_engine.inspect_layer import INSPECT_METHODS, block_count, linear_shapes
from perp_engine.model.blocks import linear_kind

KEEP = "session"  # widget values survive a visit to another page
URL = "query-params"  # ... and a reload: the value is in the page address
MODEL_QUERY, TEXT_QUERY = "model", "text"
TRAINED = "inside_trained"  # the adapter settings trained on request in this session


def chart(fig, name: str) -> None:
    widgets.chart(fig, name, key=f"inside_{name}", caption=False)
    st.caption(INSIDE_LAYER[name])


def notes(lines) -> None:
    for line in lines:
        st.caption(f":material/info: {line}")


def clamp(key: str, top: int) -> None:
    """A remembered slider value beyond this model's or layer's range moves to the range's end."""
    if st.session_state.get(key, 0) > top:
        st.session_state[key] = top


def chosen_on_experiment(key: str, query: str, default: str) -> str:
    """The Experiment form's choice in this session, else the page address's, else the default; kept in the
    address unless it is the default."""
    value = st.session_state.get(key) or st.query_params.get(query) or default
    if value == default:
        st.query_params.pop(query, None)
    else:
        st.query_params[query] = value
    return value


st.title("Inside a layer")
st.caption(INSIDE_LAYER["intro"])
model_name = chosen_on_experiment("exp_model", MODEL_QUERY, DEFAULT_MODEL)
dataset = chosen_on_experiment("exp_dataset", TEXT_QUERY, RunConfig.dataset)
try:
    with st.spinner(f"Loading {model_name}…"):
        model, _ = layer_state.model(model_name)
except PerpError as err:
    st.error(f"{err} (the model and text are the ones chosen on Experiment)", icon=":material/error:")
    st.stop()
st.caption(f"Model **{model_name}**, text **{dataset}** (chosen on Experiment) · {state.device_label()}")

blocks = block_count(model)
clamp("inside_block", blocks - 1)
block_col, linear_col, pattern_col, sparsity_col = st.columns([2, 3, 3, 2], gap="medium")
block = block_col.slider("Block", 0, blocks - 1, blocks // 2, key="inside_block", persist_state=KEEP, bind=URL,
                         help="Which transformer block, from the input (0) to the output.") if blocks > 1 else 0
shapes = linear_shapes(model, block)
if st.session_state.get("inside_linear", next(iter(shapes))) not in shapes:  # remembered from another model
    del st.session_state["inside_linear"]
linear = linear_col.selectbox(
    "Linear layer", list(shapes), key="inside_linear", persist_state=KEEP, bind=URL,
    index=next((i for i, name in enumerate(shapes) if linear_kind(name) == "q_proj"), 0),
    format_func=lambda name: f"{name} ({shapes[name][0]} × {shapes[name][1]})",
    help="(outputs × inputs) of the weight matrix.")
pattern = pattern_col.segmented_control(
    "Pattern", forms.PATTERNS, default="unstructured", required=True, key="inside_pattern", persist_state=KEEP,
    bind=URL,
    help="unstructured: any weights. N:M: N of every M neighbouring weights in a row are pruned.")
chosen = sparsity_col.slider("Sparsity", 0.05, 0.9, 0.5, 0.05, key="inside_sparsity", persist_state=KEEP, bind=URL,
                             format="%.2f", disabled=pattern != "unstructured",
                             help="Share of this layer's weights set to zero. An N:M pattern fixes it to N/M.")
sparsity = forms.pattern_sparsity(pattern, chosen)

rows, cols = shapes[linear]
clamp("inside_row", rows - CROP)
clamp("inside_col", cols - CROP)
longest = min(4096, getattr(model.config, "max_position_embeddings", None) or 4096)
clamp("inside_seqlen", longest)
with st.expander("Crop position and calibration text"):
    row_col, col_col, windows_col, seqlen_col = st.columns(4)
    row = row_col.slider("Crop: first row", 0, rows - CROP, 0, 8, key="inside_row",
                         persist_state=KEEP, bind=URL) if rows > CROP else 0
    col = col_col.slider("Crop: first column", 0, cols - CROP, 0, 8, key="inside_col",
                         persist_state=KEEP, bind=URL) if cols > CROP else 0
    windows = int(windows_col.number_input(
        "Windows", 1, 256, 16, key="inside_windows", persist_state=KEEP, bind=URL,
        help="Calibration windows (for the statistics of Wanda, SparseGPT, RIA and DSnoT) and as many held-out "
             "windows of the same text, which no calibration window overlaps (for the errors)."))
    seqlen = int(seqlen_col.number_input("Tokens per window", 8, longest, min(128, longest), key="inside_seqlen",
                                         persist_state=KEEP, bind=URL,
                                         help=f"At most {longest:,}: the model's context."))
crop = crop_at((rows, cols), row, col)

key = (model_name, dataset, windows, seqlen, block)
try:
    with st.spinner(f"Recording what block {block}'s layers see on {windows} calibration and {windows} "
                    "held-out windows (once per block)…"):
        layer = layer_state.capture(*key)[linear]
    inspection = layer_state.inspection(*key, linear, sparsity, pattern)
except PerpError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()

st.caption(f"The methods' statistics come from {layer.calib.nsamples:,} calibration tokens; the errors "
           f"are measured on {layer.heldout.nsamples:,} held-out tokens of the same text (no calibration window overlaps them).")
st.subheader("What each method looks at")
chart(score_heatmaps(inspection, crop), "scores")
st.subheader("What each method keeps")
chart(mask_heatmaps(inspection, crop), "masks")
swaps = dsnot_swaps(inspection)
st.caption(f"{INSIDE_LAYER['dsnot']} Here it swapped {swaps:,} of Wanda's pruned weights for kept ones "
           f"({swaps / inspection.weight.numel():.2%} of the layer).")
notes(inspection.notes)
jaccard_col, agreement_col = st.columns([2, 3], gap="large")
with jaccard_col:
    widgets.chart(jaccard_heatmap(inspection), "overlap", key="inside_jaccard", caption=False)
with agreement_col:
    widgets.chart(agreement_bars(inspection), "overlap", key="inside_agreement", caption=False)
st.caption(INSIDE_LAYER["overlap"])

st.subheader("What it costs")
bars_col, curve_col = st.columns([2, 3], gap="large")
with bars_col:
    chart(local_error_bars(inspection), "local_error")
curve_spot = curve_col.container()  # filled after SparseGPT's map: the curves take longest, so that shows first

st.subheader("How SparseGPT compensates")
chart(update_heatmap(inspection, crop), "sparsegpt_update")

with curve_spot, st.spinner("Pruning this layer by each method at 0% to 90% (once per layer)…"):
    curves = layer_state.curves(*key, linear)
    chart(error_curve_figure(curves, inspection), "error_curves")
    notes(note for note in curves.notes if note not in inspection.notes)

st.subheader("Adapters and the zeros")
method_col, steps_col, train_col = st.columns(3, vertical_alignment="bottom")
method = method_col.selectbox("Start from the layer pruned by", INSPECT_METHODS, index=1, key="inside_adapter_method",
                              persist_state=KEEP, bind=URL, format_func=LABELS.get)
steps = int(steps_col.number_input("Training steps", 1, 500, 30, key="inside_adapter_steps", persist_state=KEEP,
                                   bind=URL))
setting = (*key, linear, sparsity, pattern, method, steps)
trained = st.session_state.setdefault(TRAINED, set())
train_col.button("Train the adapters", icon=":material/model_training:", disabled=setting in trained,
                 on_click=trained.add, args=(setting,),
                 help="LoRA and MaskLoRA on this layer as pruned above: seconds on a large layer. A setting trained "
                      "before shows again without a click.")
if setting not in trained:
    st.caption(f":material/info: Press **Train the adapters** to train LoRA and MaskLoRA for {steps} steps on this "
               f"layer as {LABELS[method]} pruned it, and see which zeros each merge keeps. The rest of the page "
               "never waits for it.")
else:
    with st.spinner(f"Training LoRA and MaskLoRA for {steps} steps on this layer…"):
        outcomes = layer_state.adapters(*key, linear, sparsity, pattern, method, steps)
    chart(adapter_zero_maps(inspection.weights[method], method, outcomes, crop), "adapters")
    metrics = st.columns(len(outcomes))
    for slot, (kind, out) in zip(metrics, outcomes.items()):
        slot.metric(f"{LABELS[kind]}: zeros left after the merge", f"{out.pruned - out.revived:,} of {out.pruned:,}",
                    help="Pruned weights that are still exactly zero once the adapter is merged into the layer.")
        slot.caption(f"Local error on held-out text: {out.local_error_before:.3g} pruned → "
                     f"{out.local_error_after:.3g} after {steps} steps and the merge.")
    st.caption("A run never merges plain LoRA into a pruned layer: it keeps it beside the sparse layer and says so.")
