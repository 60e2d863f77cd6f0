"""Paper: PERP's three claims, the shipped results of `perp reproduce` (docs/paper/report.json, read offline),
and the same set of runs on this machine, queued from here, shown beside the shipped results once done."""

from pathlib import Path

import streamlit as st

from app import paper_view, state, widgets
from perp_engine.errors import PerpError
from perp_engine.reproduce import claims_of, latest_rows, queue_set, run_numbers
from perp_engine.reproduce.figures import build_figures
from perp_engine.reproduce.report import load_line, rates_lines, sizes_line
from perp_engine.resources.estimate import format_seconds, sweep_seconds
from perp_engine.run.preflight import Preflight

st.title("The paper, reproduced")
st.caption("PERP (Zimmer et al., arXiv:2312.15230) makes three claims about repairing pruned language models. "
           "`perp reproduce` tests each one on the embedded model with a fixed set of runs; every verdict below is "
           "computed from the measured numbers with thresholds written in the code, and says so where a claim does "
           "not hold on this small model.")


@st.cache_data(show_spinner=False)
def shipped(path: str, modified: float) -> tuple[dict | None, str | None]:
    return paper_view.read_shipped(Path(path))


path = paper_view.shipped_path()
report, why = shipped(str(path), path.stat().st_mtime if path.is_file() else 0.0)
runset = paper_view.runset_of(report)
store = state.store()
rows = latest_rows(store, runset)
here = paper_view.local_report(runset, rows)
gallery = state.gallery()
in_gallery = latest_rows(gallery, runset) if gallery is not None else {}  # the shipped runs, read-only
if report is None:  # no shipped report file: the gallery's runs of the set make it, when they are all there
    report = paper_view.local_report(runset, in_gallery)
sources = [(name, r) for name, r in (("Shipped results", report), ("This machine", here)) if r]

if report:
    st.caption(f"Shipped: made by `{report['command']}` on {report['created']}. {sizes_line(report)} "
               f"{report['compute_seconds'] / 60:.0f} min of compute. {load_line(report)}")
else:
    st.info(why, icon=":material/info:")
figures = {name: build_figures(run_numbers(r)) for name, r in sources}
if sources:
    st.plotly_chart(figures[sources[0][0]]["overview"], key="paper-overview", config={"displaylogo": False})

claims = {name: claims_of(r) for name, r in sources}
for number in (1, 2, 3) if sources else ():
    first = claims[sources[0][0]][number - 1]
    st.subheader(f"Claim {number}: {first.title}")
    st.markdown(f"> {first.statement}")
    shipped_runs = [row for p in runset.runs if number in p.claims and (row := in_gallery.get(p.key))]
    if shipped_runs:
        st.caption(":material/photo_library: Its runs in the gallery (read-only; Compare and Layers show them too): "
                   + ", ".join(f"[#{r.ref}](run?{widgets.RUN_QUERY}={r.ref})" for r in shipped_runs))
    for column, (name, _) in zip(st.columns(len(sources)), sources):
        verdict = claims[name][number - 1].verdict
        with column:
            getattr(st, paper_view.VERDICT_STYLE[verdict.status])(
                f"**{name}: {verdict.status}.** {verdict.text}", icon=paper_view.VERDICT_ICONS[verdict.status])
            if verdict.rule:
                st.caption(f"Rule: {verdict.rule}")
    for tab, (name, _) in zip(st.tabs([name for name, _ in sources]), sources):
        with tab:
            claim = claims[name][number - 1]
            st.dataframe(paper_view.table_frame(claim.table), hide_index=True, key=f"paper-{name}-{number}")
            for i, accuracy in enumerate(claim.zero_shot):
                st.caption(f"Zero-shot accuracy in points, ± standard error: {accuracy.note}.")
                st.dataframe(paper_view.table_frame(accuracy.table), hide_index=True,
                             key=f"paper-{name}-{number}-zero-shot-{i}")
            st.plotly_chart(figures[name][f"claim{number}"], key=f"paper-{name}-claim{number}",
                            config={"displaylogo": False})
            st.plotly_chart(figures[name][f"curves{number}"], key=f"paper-{name}-curves{number}",
                            config={"displaylogo": False})

if sources:
    with st.expander("How the verdicts are computed, and where the learning rates come from"):
        shown = sources[0][1]
        st.markdown("\n".join(f"- `{name}` = {t['value']:g}: {t['meaning']}" for name, t in shown["thresholds"].items()))
        st.markdown("\n".join(rates_lines(shown)))

st.divider()
st.subheader("Run it on this machine")
which = "the quick set on the tiny model" if runset.quick else "the shipped results' set" if report else "the full set"
st.caption(f"The same {len(runset.runs)} runs ({which}), "
           "queued like any other run: finished runs are reused, you can leave this page, and the runs appear on "
           "Compare. When all are done, their verdicts appear above beside the shipped ones.")


def run_progress() -> bool:
    """The set's progress on this machine and its running runs; True while some run is queued or running."""
    latest = latest_rows(store, runset)
    counts = paper_view.progress(latest)
    total = len(latest)
    st.progress(counts["done"] / total, text=f"{counts['done']} of {total} runs done here ("
                + ", ".join(f"{n} {'not run here yet' if status == 'missing' else status}"
                            for status, n in sorted(counts.items())) + ")")
    active = [row for row in latest.values() if row is not None and row.status in ("queued", "running")]
    for row in active:
        if row.status == "running":
            widgets.run_card(row)
    if active and st.button("Cancel the rest", key="paper-cancel", icon=":material/stop_circle:"):
        for row in active:
            state.executor().cancel(row.id)
    return bool(active)


counts = paper_view.progress(rows)
active = counts["queued"] + counts["running"] > 0
remaining = [p for p in runset.runs if rows[p.key] is None or rows[p.key].status != "done"]
if remaining and not active:
    estimates = [state.estimate(p.config.to_json())[0] for p in remaining]
    seconds = sweep_seconds([p.config for p in remaining], [e.breakdown if e else None for e in estimates])
    st.markdown(f"**{len(remaining)} runs** to go, about **{format_seconds(seconds)}** on "
                f"{next((e.device for e in estimates if e), 'this machine')} by the cost model.")
    if st.button(f"Run the {len(remaining)} runs here", type="primary", icon=":material/rocket_launch:", key="paper-run"):
        try:
            queued = queue_set(runset, state.executor(), store, check=Preflight().check)
        except PerpError as err:
            st.error(str(err), icon=":material/error:")
        else:
            st.toast(f"{len(queued.submitted)} runs queued" + (f" (sweep #{queued.sweep_id})" if queued.sweep_id else ""))
            st.rerun()
if active:
    widgets.resume_queue([row for row in rows.values() if row is not None])
if remaining or active:
    widgets.live(run_progress, active)
else:
    st.success(f"All {len(runset.runs)} runs are done on this machine: their verdicts are above.",
               icon=":material/check_circle:")
