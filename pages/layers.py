"""Layers: inside one or two runs, layer by layer: reconstruction error before and after retraining, sparsity."""

import streamlit as st

from app import figures, runs, state, widgets

st.title("Layers")
store = state.store()
done = store.list_runs(status="done")
if not done:
    if store.list_runs(limit=1):
        st.info("No run has finished yet: the layer charts need a finished run. Follow the running ones on Experiment.")
    else:
        widgets.getting_started()
    st.stop()

labels = {r.id: runs.run_label(r) for r in done}
wanted = [i for i in st.session_state.get(state.SELECTED, []) if i in labels][:2] or [done[0].id]
picked = st.multiselect("Runs (one or two)", list(labels), default=wanted, max_selections=2, key="layers_runs",
                        format_func=labels.get, help="Starts from the runs selected on Compare.")
if not picked:
    st.info("Pick a run to look inside it.")
    st.stop()

layers = {labels[i]: store.layers(i) for i in picked}
blocks = {labels[i]: store.blocks(i) for i in picked}
if not any(layers.values()):
    st.info("These runs recorded no per-layer measurements.")
    st.stop()

error_tab, depth_tab, sparsity_tab, block_tab = st.tabs(
    ["Error heatmaps", "Error by depth", "Sparsity", "Block outputs"])
with error_tab:
    widgets.chart(figures.error_heatmaps(layers), "error_heatmaps")
with depth_tab:
    widgets.chart(figures.layer_lines(layers, "recon_error"), "error_lines")
with sparsity_tab:
    widgets.chart(figures.sparsity_heatmaps(layers), "sparsity", key="sparsity_heatmaps", caption=False)
    widgets.chart(figures.layer_lines(layers, "sparsity"), "sparsity", key="sparsity_lines")
with block_tab:
    widgets.chart(figures.block_losses(blocks), "block_losses")
