"""Compare: the charts of the selected runs on top, then the runs table (filter, select, open, download)."""

import streamlit as st

from app import accuracy_figures, figures, run_sources, runs, state, widgets, zero_shot_rows
from app.texts import CHARTS

KEEP = "session"

st.title("Compare runs")
sources = state.runs()
rows = sources.list_runs()
if not rows:
    widgets.getting_started()
    st.stop()

f1, f2, f3, f4, f5, f6 = st.columns(6)
statuses = f1.multiselect("Status", ["done", "running", "queued", "failed", "cancelled"], key="cmp_status",
                          persist_state=KEEP)
models = f2.multiselect("Model", sorted({r.config.get("model") for r in rows}), key="cmp_model", persist_state=KEEP,
                        format_func=runs.model_label)
methods = f3.multiselect("Method", sorted({runs.method_label(r.config) for r in rows}), key="cmp_method",
                         persist_state=KEEP, help="the pruning method with its allocation (OWL) and refinement (DSnoT)")
recipes = f4.multiselect("Retraining", sorted({runs.retraining_label(r.config) for r in rows}), key="cmp_recipe",
                         persist_state=KEEP)
tags = f5.multiselect("Tag", sorted({t for r in rows for t in r.tags}), key="cmp_tags", persist_state=KEEP)
origins = f6.multiselect("Source", run_sources.SOURCES, key="cmp_source", persist_state=KEEP,
                         help="your own runs, or the gallery's (shipped with PERP Lab, read-only; ids g1, g2, ...)")
shown = run_sources.of_sources(
    runs.filter_rows(rows, statuses=statuses, models=models, methods=methods, retrainings=recipes, tags=tags), origins)
table = runs.runs_frame(shown)
table.insert(1, "gallery", [r.gallery for r in shown])
charts = st.container()

st.subheader("Runs")
st.caption("Tick rows to chart only them (no selection charts every finished run shown); **open** shows a run's "
           "page: config, timings, log, layers, export.")
previous = {str(ref) for ref in st.session_state.get(state.SELECTED, [])}
listing = table.copy()
listing.insert(1, "open", [f"run?{widgets.RUN_QUERY}={r.ref}" for r in shown])
event = st.dataframe(
    listing, key="cmp_table", hide_index=True, on_select="rerun", selection_mode="multi-row", placeholder="–",
    selection_default={"selection": {"rows": [i for i, r in enumerate(shown) if r.ref in previous]}},
    column_config={**widgets.RUN_COLUMN_CONFIG,
                   "gallery": st.column_config.CheckboxColumn("gallery", help="a gallery run (read-only): g12"),
                   "open": st.column_config.LinkColumn("open", display_text="open", help="the run's own page")},
)
selected_ids = [shown[i].ref for i in event.selection.rows]
st.session_state[state.SELECTED] = selected_ids
st.download_button("Download table (CSV)", runs.runs_csv(table), "perp-runs.csv", "text/csv", icon=":material/download:")
for r in [r for r in shown if r.ref in selected_ids][:4]:
    widgets.details_link(r)

charted = [r for r in shown if r.ref in selected_ids] if selected_ids else shown
with charts:
    failed = [r for r in charted if r.status == "failed"]
    if failed:
        with st.expander(f"{len(failed)} failed run(s)"):
            for r in failed:
                st.error(f"**{runs.run_label(r)}**: {r.error}")
    done = [r for r in charted if r.status == "done"]
    left_out = [(r, runs.diverged(r)) for r in done if runs.diverged(r)]
    if left_out:
        st.caption(":material/warning: Left out of the charts: "
                   + "; ".join(f"{runs.run_label(r)} diverged ({why})" for r, why in left_out) + ".")
    drawn = figures.charted(done)
    if not drawn:
        st.info("None of these runs has finished yet: charts appear when one is done.")
        st.stop()
    for note in [*runs.fairness_notes(drawn), zero_shot_rows.protocol_note(drawn)]:
        if note:
            st.warning(note, icon=":material/balance:")

    (sparsity_tab, perp_tab, bars_tab, acc_sparsity_tab, acc_perp_tab, acc_tasks_tab, curve_tab,
     loss_tab) = st.tabs(["Perplexity vs sparsity", "Perplexity vs trainable parameters", "Per run",
                          "Accuracy vs sparsity", "Accuracy vs trainable parameters", "Accuracy per task",
                          "Learning curves", "Training loss"])
    with sparsity_tab:
        widgets.chart(figures.ppl_vs_sparsity(drawn), "ppl_vs_sparsity")
    with perp_tab:
        if any(r.final_ppl is not None for r in drawn):
            widgets.chart(figures.ppl_vs_trainable(drawn), "ppl_vs_trainable")
        else:
            st.info("Only prune-only runs here: retrain a run (any recipe but none) to see this chart.")
            st.caption(CHARTS["ppl_vs_trainable"])
    with bars_tab:
        widgets.chart(figures.ppl_bars(drawn), "ppl_bars")
    scored = accuracy_figures.scored_runs(drawn)

    def accuracy_header(task_key: str | None) -> str | None:
        """The notes over an accuracy chart and its task choice (``mean`` without ``task_key``); None when no run
        here has zero-shot scores (then it says how to get them)."""
        if not scored:
            st.info("None of these runs was scored zero-shot: choose tasks under **Zero-shot accuracy** on Experiment "
                    "(or `perp run --zero-shot paper`) to see accuracy beside perplexity.")
            return None
        if note := zero_shot_rows.unscored_note(drawn):
            st.caption(f":material/info: {note}")
        if task_key is None:
            return zero_shot_rows.MEAN
        return st.selectbox("Task", zero_shot_rows.task_choices(scored), key=task_key, persist_state=KEEP,
                            format_func=zero_shot_rows.task_title,
                            help="a task's headline metric (acc, or acc_norm where the papers report it), or the "
                                 "mean over each run's tasks")

    with acc_sparsity_tab:
        if task := accuracy_header("cmp_acc_sparsity_task"):
            widgets.chart(accuracy_figures.accuracy_vs_sparsity(scored, task), "accuracy_vs_sparsity")
    with acc_perp_tab:
        if task := accuracy_header("cmp_acc_trainable_task"):
            fig = accuracy_figures.accuracy_vs_trainable(scored, task)
            if fig.data:
                widgets.chart(fig, "accuracy_vs_trainable")
            else:
                st.info("No retrained run here has a zero-shot score of its final model on this task.")
                st.caption(CHARTS["accuracy_vs_trainable"])
    with acc_tasks_tab:
        if accuracy_header(None):
            widgets.chart(accuracy_figures.accuracy_per_task(scored), "accuracy_per_task")
    with curve_tab:
        retrained = {runs.run_label(r): r.result.get("curve") for r in drawn if r.result and r.result.get("curve")}
        rebuilt = {runs.run_label(r): curves for r in drawn if (curves := runs.block_curves(r))}
        if retrained:
            against = st.segmented_control("Against", ["step", "seconds"], default="step", key="cmp_curve_x",
                                           persist_state=KEEP) or "step"
            widgets.chart(figures.learning_curves(retrained, against), "learning_curves")
        if rebuilt:
            widgets.chart(figures.block_learning_curves(rebuilt), "block_learning_curves")
        if not retrained and not rebuilt:
            st.info("No learning curve among these runs: a run records one with **Learning curve every** on "
                    "Experiment, or `perp run --eval-every K`.")
    with loss_tab:
        curves = {runs.run_label(r): sources.curve(r) for r in drawn if r.final_ppl is not None}
        if any(curves.values()):
            window = st.slider("Smoothing (steps)", 1, 25, 1, key="cmp_smooth", persist_state=KEEP)
            widgets.chart(figures.loss_curves(curves, window), "loss_curves")
        else:
            st.info("No training-loss curve among these runs (prune-only runs do not train).")
