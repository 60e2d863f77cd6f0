"""Run: one run on its own page, reachable by its address (``?run=12``): results, configuration, stage timings,
per-layer data (CSV), log, and managing it: name and tags, export (as ``perp export``), delete."""

import json

import streamlit as st

from app import figures, run_details, runs, state, widgets, zero_shot_rows
from app.progress_view import STAGE_TITLES
from perp_engine.errors import PerpError
from perp_engine.resources.estimate import format_seconds
from perp_engine.run.export import export_run
from perp_engine.run.export_roots import EXPORT_ROOTS_ENV, export_roots
from perp_engine.run.trust import TRUST_FLAG

CONFIRM_DELETE = "confirm_delete"  # the run whose deletion waits for a confirmation
DELETED = "deleted_run"  # the run just deleted, said once on the next page

store = state.store()
sources = state.runs()
if DELETED in st.session_state:
    st.success(f"Run #{st.session_state.pop(DELETED)} was deleted.", icon=":material/delete:")
listed = sources.list_runs(limit=500)
if not listed:
    st.title("Run")
    widgets.getting_started()
    st.stop()

title = st.empty()  # the title comes first on the page; which run it names is known below
labels = {r.ref: runs.run_label(r) for r in listed}
asked = widgets.query_run_refs()
run_id = asked[0] if asked else None
options = list(labels) if run_id in labels or run_id is None else [run_id, *labels]
choice = st.selectbox("Open a run", options, index=options.index(run_id) if run_id is not None else None,
                      format_func=lambda i: labels.get(i, f"#{i}"), placeholder="Pick a run to open",
                      help="Each run has its own address (…/run?run=12): bookmark it or share it.")
if choice is None:
    title.title("Run")
    st.info("Pick a run above, or open one from Experiment or Compare.")
    st.stop()
if choice != run_id:
    st.query_params[widgets.RUN_QUERY] = choice
try:
    row = sources.get_run(choice)
except PerpError:
    title.title(f"Run #{choice}")
    st.info(f"There is no run #{choice} here: it was deleted, or the address names a run of another store.",
            icon=":material/search_off:")
    st.page_link(widgets.PAGES["compare"], label="See every run on Compare", icon=":material/compare_arrows:")
    st.stop()

title.title(f"Run #{row.ref}" + (f": {row.name}" if row.name else ""))
facts = [runs.pruning_label(row.config), runs.retraining_label(row.config), runs.model_label(row.config["model"]),
         runs.protocol_label(row.config), f"*{row.status}*",
         f"created {runs.iso_time(row.created_at)}", *(f"`{tag}`" for tag in row.tags)]
st.caption(" · ".join(facts))
if row.gallery:
    st.info("A gallery run: shipped with PERP Lab, read-only (your runs never go there). **Load into Experiment** "
            "runs it again in your own store.", icon=":material/photo_library:")

if not row.finished:
    widgets.run_cards([row.id])
elif row.status == "done":
    widgets.run_result(row)
    reason = runs.diverged(row)
    if reason:
        st.warning(f"This run diverged ({reason}): Compare leaves it out of the charts.", icon=":material/warning:")
elif row.status == "cancelled":
    widgets.cancelled_note(row)
else:
    st.error(f"This run failed: {row.error}", icon=":material/error:")

config_tab, timing_tab, curve_tab, layers_tab, accuracy_tab, log_tab, manage_tab = st.tabs(
    ["Configuration", "Stage timings", "Learning curve", "Layers", "Zero-shot accuracy", "Log", "Name, export, delete"])

with config_tab:
    st.dataframe(run_details.config_frame(row.config), hide_index=True, height=300)
    left, middle, right = st.columns(3)
    left.download_button("Config (JSON)", json.dumps(row.config, indent=2, sort_keys=True), f"perp-run-{row.ref}-config.json",
                         "application/json", icon=":material/download:")
    with middle:
        st.session_state.pop(state.LOADED, None)  # the link below loads the settings even if they were loaded before
        st.page_link(widgets.PAGES["experiment"], label="Load into Experiment", icon=":material/science:",
                     query_params={state.FROM_QUERY: row.ref})
    with right:
        st.page_link(widgets.PAGES["layers"], label="Open in Layers", icon=":material/view_module:",
                     query_params={widgets.RUN_QUERY: row.ref}, disabled=row.status != "done")

with timing_tab:
    timings = run_details.timings_frame(row)
    if timings.empty:
        st.caption("No stage has finished yet.")
    else:
        st.dataframe(timings, hide_index=True, column_config={"seconds": st.column_config.NumberColumn(format="%.1f")})
    extra = [run_details.estimate_words(row) or (f"took {format_seconds(row.duration)}" if row.duration else None),
             f"peak memory {row.peak_memory_mb:,.0f} MB" if row.peak_memory_mb else None,
             f"on {row.environment.get('device')}" if row.environment.get("device") else None]
    st.caption(" · ".join(e for e in extra if e))

with curve_tab:
    result = row.result or {}
    if result.get("curve"):
        against = st.segmented_control("Against", ["step", "seconds"], default="step", key="run_curve_x") or "step"
        widgets.chart(figures.learning_curves({runs.run_label(row): result["curve"]}, against), "learning_curves")
        points, cost = len(result["curve"]), result.get("curve_seconds", 0.0)
        st.caption(f"{points} points, {cost:.1f} s of measuring ({cost / points:.2f} s per point, one perplexity of "
                   f"the {result.get('eval_tokens', 0):,} evaluation tokens each), not counted in the seconds axis.")
    elif runs.block_curves(row):
        widgets.chart(figures.block_curves_of_run(result["blocks"]), "block_curves")
        st.caption(f"{result.get('curve_seconds', 0.0):.1f} s of measuring.")
    else:
        st.caption("No learning curve: a run records one with **Learning curve every** on Experiment, or "
                   "`perp run --eval-every K`.")

with layers_tab:
    layers, blocks = sources.layers(row), sources.blocks(row)
    if not layers:
        st.caption("No per-layer measurements (they are recorded when a run finishes).")
    else:
        st.caption(run_details.measure_note(row.result))
        frame = run_details.layers_frame(layers)
        st.dataframe(frame, hide_index=True, height=320)
        left, right = st.columns(2)
        left.download_button("Layers (CSV)", frame.to_csv(index=False), f"perp-run-{row.ref}-layers.csv", "text/csv",
                             icon=":material/download:")
        right.download_button("Blocks (CSV)", run_details.blocks_frame(blocks).to_csv(index=False),
                              f"perp-run-{row.ref}-blocks.csv", "text/csv", icon=":material/download:")

with accuracy_tab:
    accuracy = zero_shot_rows.task_frame(row)
    if accuracy.empty:
        st.caption("Not scored zero-shot" + (" yet" if not row.finished and row.config.get("zero_shot") else "")
                   + ". Choose tasks under **Zero-shot accuracy** on Experiment, or `perp run --zero-shot paper`.")
    else:
        st.caption(f"Zero-shot accuracy through lm-eval, {zero_shot_rows.protocol_text(row)}: each task's headline "
                   "metric on the dense, pruned and final (after repair) models, ± its standard error in points; the "
                   "mean is over the tasks. Compare shows it against sparsity and trainable parameters.")
        st.dataframe(accuracy, hide_index=True, key="run-zero-shot")

with log_tab:
    log = "\n".join(sources.logs(row))
    st.code(log or "(no log yet)", language=None, height=400, wrap_lines=True)
    if log:
        st.download_button("Log (text)", log, f"perp-run-{row.ref}.log", "text/plain", icon=":material/download:")

with manage_tab:
    if row.gallery:
        st.caption("A gallery run cannot be renamed, tagged, exported or deleted: the gallery is read-only. Load it "
                   "into Experiment (Configuration tab) to run it in your own store, then manage that run.")
        st.stop()
    st.markdown("**Name and tags**")
    known_tags = sorted({t for r in listed for t in r.tags})
    with st.form(f"label-{row.id}", border=False):
        name = st.text_input("Name", row.name or "", placeholder="e.g. baseline for the lecture")
        tags = st.multiselect("Tags", sorted({*known_tags, *row.tags}), default=row.tags, accept_new_options=True,
                              help="Type a new tag and press Enter. Compare filters by tag.")
        if st.form_submit_button("Save name and tags", icon=":material/save:"):
            try:
                store.rename_run(row.id, name)
                store.set_tags(row.id, tags)
            except PerpError as err:
                st.error(str(err), icon=":material/warning:")
            else:
                st.rerun()

    st.markdown("**Export** (as `perp export`): the model in Hugging Face format, its masks, the config and a "
                "model card.")
    roots = export_roots()
    folder = st.text_input("Export folder", str(run_details.export_folder(roots[0], row)), key=f"export-dir-{row.id}",
                           help=f"A new or empty folder inside {' or '.join(str(r) for r in roots)} (more with "
                                f"{EXPORT_ROOTS_ENV}); anywhere else: perp export.")
    trusted = False
    if row.status == "done" and not row.artifact:
        st.caption(":material/info: This run did not keep its model, so Export recomputes it from its config and seed "
                   "(as long as the run took) and checks the perplexity matches.")
        if row.config.get("trust_remote_code"):
            trusted = st.checkbox(f"Run the model's own code to recompute it (trust_remote_code, as {TRUST_FLAG})",
                                  key=f"export-trust-{row.id}")
    if row.status != "done":
        st.caption(f":material/info: {run_details.export_unavailable(row)}")
    if st.button("Export", icon=":material/ios_share:", disabled=row.status != "done", key=f"export-{row.id}",
                 help=None if row.status == "done" else run_details.export_unavailable(row)):
        bar = st.progress(0.0, text="Exporting…")

        def report(stage: str, fraction: float, message: str = "") -> None:
            bar.progress(min(max(fraction, 0.0), 1.0), text=f"{STAGE_TITLES.get(stage, stage)}: {message}")

        try:
            with st.spinner("Exporting…"):
                exported = export_run(store, row.id, folder, roots=roots, trust_remote_code=trusted, progress=report)
        except PerpError as err:
            bar.empty()
            st.error(str(err), icon=":material/warning:")
        else:
            bar.empty()
            st.success(f"Exported to `{exported.path}` ({'kept model copied' if exported.source == 'kept' else 'recomputed'}, "
                       f"sparsity {exported.sparsity:.2%} from its masks).", icon=":material/check_circle:")
            if exported.mismatch:
                st.warning(exported.mismatch, icon=":material/warning:")

    st.markdown("**Delete**")
    if not row.finished:
        st.caption("A queued or running run cannot be deleted: cancel it first.")
    elif st.session_state.get(CONFIRM_DELETE) != row.id:
        if st.button("Delete this run…", icon=":material/delete:", key=f"delete-{row.id}"):
            st.session_state[CONFIRM_DELETE] = row.id
            st.rerun()
    else:
        st.warning(f"Delete run #{row.id} with its results, per-layer data, curves and log"
                   + (" and its kept model" if row.artifact else "") + "? This cannot be undone. The shared cache of "
                   "dense and pruned models stays, so other runs are not affected.", icon=":material/warning:")
        yes, no = st.columns(2)
        if yes.button(f"Yes, delete run #{row.id}", type="primary", key=f"delete-yes-{row.id}"):
            store.delete_run(row.id)
            st.session_state.pop(CONFIRM_DELETE, None)
            st.session_state[DELETED] = row.id
            st.query_params.clear()
            st.rerun()
        if no.button("Keep it", key=f"delete-no-{row.id}"):
            st.session_state.pop(CONFIRM_DELETE, None)
            st.rerun()
