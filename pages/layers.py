"""Layers: inside one or two runs, layer by layer: the local or the accumulated error after pruning and after
repair (or their change), sparsity, and block outputs."""

import streamlit as st

from app import layer_figures as lf
from app import runs, state, widgets
from app.depth_trend import trend_sentences
from app.run_details import measure_note

KEEP = "session"

st.title("Layers")
sources = state.runs()
done = sources.list_runs(status="done")
if not done:
    if sources.list_runs(limit=1):
        st.info("No run has finished yet: the layer charts need a finished run. Follow the running ones on Experiment.")
    else:
        widgets.getting_started()
    st.stop()

rows = {r.ref: r for r in done}
labels = {r.ref: runs.run_label(r) for r in done}
wanted = ([i for i in widgets.query_run_refs() if i in labels]
          or [i for i in map(str, st.session_state.get(state.SELECTED, [])) if i in labels])
pick_col, error_col, view_col = st.columns([4, 3, 3])
picked = pick_col.multiselect("Runs (one or two)", list(labels), default=wanted[:2] or [done[0].ref], max_selections=2,
                              key="layers_runs", format_func=labels.get, help="Starts from the runs selected on Compare.")
quantity = error_col.segmented_control(
    "Error", list(lf.QUANTITIES), format_func=lambda k: lf.QUANTITIES[k].short, default="local", required=True,
    key="layers_quantity", persist_state=KEEP,
    help="local: this layer's own error on the inputs it sees. accumulated (drift): how far the model's state has "
         "moved from the dense model's, all upstream damage included (About explains both).")
view = view_col.selectbox("Show", list(lf.VIEW_CHOICES), format_func=lf.VIEW_CHOICES.get, key="layers_view",
                          persist_state=KEEP, help="the error after pruning, after repair, both, or how repair changed it")
if not picked:
    st.info("Pick a run to look inside it.")
    st.stop()

layers = {labels[i]: sources.layers(rows[i]) for i in picked}
blocks = {labels[i]: sources.blocks(rows[i]) for i in picked}
if not any(layers.values()):
    st.info("These runs recorded no per-layer measurements.")
    st.stop()

error_tab, depth_tab, sparsity_tab, block_tab = st.tabs(
    ["Error heatmaps", "Error by depth", "Sparsity", "Block outputs"])
with error_tab:
    for note in lf.missing_notes(layers, quantity, view):
        st.info(note, icon=":material/info:")
    widgets.chart(lf.error_heatmaps(layers, quantity, view), "error_heatmaps")
with depth_tab:
    for note in lf.missing_notes(layers, quantity, view):
        st.info(note, icon=":material/info:")
    widgets.chart(lf.layer_lines(layers, quantity, view), "error_lines")
    for sentence in trend_sentences(blocks, lf.QUANTITIES[quantity].block_fields, "block output's " +
                                    lf.QUANTITIES[quantity].title, view):
        st.caption(f":material/trending_up: {sentence}")
with sparsity_tab:
    allocations = {labels[i]: lf.block_allocation(rows[i].config, rows[i].result, layers[labels[i]]) for i in picked}
    widgets.chart(lf.block_sparsity_figure(allocations), "block_sparsity")
    for note in filter(None, (lf.allocation_note(label, a) for label, a in allocations.items())):
        st.caption(f":material/tune: {note}")
    for label, records in layers.items():
        uniform = lf.uniform_sparsity(records)
        if uniform:
            st.markdown(f"**{label}**: {uniform}.")
    if not all(lf.uniform_sparsity(records) for records in layers.values()):
        widgets.chart(lf.sparsity_heatmaps(layers), "sparsity", key="sparsity_heatmaps", caption=False)
    widgets.chart(lf.sparsity_lines(layers), "sparsity", key="sparsity_lines")
with block_tab:
    for note in lf.missing_notes(blocks, quantity, view, blocks=True):
        st.info(note, icon=":material/info:")
    widgets.chart(lf.block_errors(blocks, quantity, view), "block_losses")
    for sentence in trend_sentences(blocks, lf.QUANTITIES[quantity].block_fields, lf.QUANTITIES[quantity].title, view):
        st.caption(f":material/trending_up: {sentence}")
for i in picked:
    st.caption(f":material/straighten: #{i}: {measure_note(rows[i].result)}")
