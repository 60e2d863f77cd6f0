"""Compare: the runs table (filter, select) and the charts of the selected runs."""

import streamlit as st

from app import figures, runs, state, widgets
from app.texts import CHARTS

st.title("Compare runs")
store = state.store()
rows = store.list_runs()
if not rows:
    widgets.getting_started()
    st.stop()

st.caption("Filter the table, tick rows to chart them (no selection charts every finished run shown).")
f1, f2, f3, f4 = st.columns(4)
statuses = f1.multiselect("Status", ["done", "running", "queued", "failed", "cancelled"], key="cmp_status",
                          persist_state="session")
models = f2.multiselect("Model", sorted({r.config.get("model") for r in rows}), key="cmp_model", persist_state="session",
                        format_func=runs.model_label)
methods = f3.multiselect("Method", sorted({r.config.get("method") for r in rows}), key="cmp_method",
                         persist_state="session")
recipes = f4.multiselect("Retraining", sorted({runs.retraining_label(r.config) for r in rows}), key="cmp_recipe",
                         persist_state="session")
shown = runs.filter_rows(rows, statuses=statuses, models=models, methods=methods, retrainings=recipes)
table = runs.runs_frame(shown)
previous = set(st.session_state.get(state.SELECTED, []))
event = st.dataframe(
    table, key="cmp_table", hide_index=True, on_select="rerun", selection_mode="multi-row", placeholder="–",
    selection_default={"selection": {"rows": [i for i, run_id in enumerate(table["id"]) if run_id in previous]}},
    column_config={
        "recovery": st.column_config.ProgressColumn("recovery", min_value=0.0, max_value=1.0, format="percent",
                                                    help="share of the pruning damage undone (log-perplexity)"),
        "trainable %": st.column_config.NumberColumn(format="%.3g%%"),
        "trainable params": st.column_config.NumberColumn(format="localized"),
        "dense ppl": st.column_config.NumberColumn(format="%.2f"),
        "pruned ppl": st.column_config.NumberColumn(format="%.2f"),
        "final ppl": st.column_config.NumberColumn(format="%.2f"),
    },
)
selected_ids = [int(table["id"].iloc[i]) for i in event.selection.rows]
st.session_state[state.SELECTED] = selected_ids
charted = [r for r in shown if r.id in selected_ids] if selected_ids else shown
st.download_button("Download table (CSV)", table.to_csv(index=False), "perp-runs.csv", "text/csv", icon=":material/download:")

failed = [r for r in charted if r.status == "failed"]
if failed:
    with st.expander(f"{len(failed)} failed run(s)", expanded=True):
        for r in failed:
            st.error(f"**{runs.run_label(r)}**: {r.error}")

done = [r for r in charted if r.status == "done"]
if not done:
    st.info("None of these runs has finished yet: charts appear when one is done.")
    st.stop()

sparsity_tab, perp_tab, bars_tab, loss_tab = st.tabs(
    ["Perplexity vs sparsity", "Perplexity vs trainable parameters", "Per run", "Training loss"])
with sparsity_tab:
    widgets.chart(figures.ppl_vs_sparsity(done), "ppl_vs_sparsity")
with perp_tab:
    if any(r.final_ppl is not None for r in done):
        widgets.chart(figures.ppl_vs_trainable(done), "ppl_vs_trainable")
    else:
        st.info("Only prune-only runs here: retrain a run (any recipe but none) to see this chart.")
        st.caption(CHARTS["ppl_vs_trainable"])
with bars_tab:
    widgets.chart(figures.ppl_bars(done), "ppl_bars")
with loss_tab:
    curves = {runs.run_label(r): store.curve(r.id) for r in done if r.final_ppl is not None}
    if any(curves.values()):
        window = st.slider("Smoothing (steps)", 1, 25, 1, key="cmp_smooth", persist_state="session")
        widgets.chart(figures.loss_curves(curves, window), "loss_curves")
    else:
        st.info("No training-loss curve among these runs (prune-only runs do not train).")
