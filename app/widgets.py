"""Streamlit pieces the pages share: run cards with live progress, result metrics, charts with their captions,
the runs table's column formats, the empty state, and the sidebar."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from perp_engine.cli.config_flags import HELP as FLAG_HELP
from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.resources.estimate import format_seconds
from perp_engine.result import notices
from perp_engine.store import RunRow

from . import figures, forms, memory_view, run_details, run_sources, state
from .forms import DATASET_HELP, DATASET_TAGS
from .progress_view import STAGE_TITLES, current_step, overall_fraction, remaining_seconds, stage_bars
from .runs import RECOVERED, RECOVERED_LINEAR, recovery, recovery_words, run_label, runs_frame, trainable_words
from .texts import CHARTS, GETTING_STARTED

LIVE_REFRESH_S = 1.0
PAGES = {  # page files relative to app/main.py
    "experiment": "../pages/experiment.py",
    "compare": "../pages/compare.py",
    "layers": "../pages/layers.py",
    "inside_layer": "../pages/inside_layer.py",
    "sweep": "../pages/sweep.py",
    "paper": "../pages/paper.py",
    "about": "../pages/about.py",
    "run": "../pages/run.py",
}
RUN_QUERY = "run"  # ?run=12 opens run 12 on the run page (and preselects it on Layers)
RECENT_RUNS = 3  # Experiment shows this browser's newest runs as cards (and every queued or running one of it)
EARLIER_LINKS = 30  # and links to this many of its earlier runs
RUN_COLUMN_CONFIG = {  # how the runs tables of Compare and Sweep show their columns
    "id": st.column_config.NumberColumn(format="%d"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    RECOVERED: st.column_config.ProgressColumn(
        RECOVERED, min_value=0.0, max_value=1.0, format="percent",
        help="share of the log-perplexity gap between pruned and dense that the repair closed (the loss gap)"),
    RECOVERED_LINEAR: st.column_config.NumberColumn(
        format="percent", help="the same share on the perplexities themselves: (pruned - final) / (pruned - dense)"),
    "mean accuracy": st.column_config.NumberColumn(
        format="percent", help="mean zero-shot accuracy over the run's tasks, of the model it ends with; compare "
                              "only runs of the same zero-shot protocol (next column)"),
    "trainable %": st.column_config.NumberColumn(
        format="%.3g%%", help="what trains (adapter weights included) as a share of the model's own parameters; runs "
                              "recorded before this was kept show their share of every parameter"),
    "trainable params": st.column_config.NumberColumn(format="localized"),
    "eval tokens": st.column_config.NumberColumn(format="localized"),
    "dense ppl": st.column_config.NumberColumn(format="%.2f"),
    "pruned ppl": st.column_config.NumberColumn(format="%.2f"),
    "final ppl": st.column_config.NumberColumn(format="%.2f"),
    "lr": st.column_config.NumberColumn(format="%.0e"),
    "time (s)": st.column_config.NumberColumn(format="%.0f"),
    "sweep": st.column_config.NumberColumn(format="%d"),
    "created": st.column_config.DatetimeColumn(format="distance"),
}
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/autorenew:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/cancel:"}


def sidebar() -> None:
    """Which device and executor runs use, where runs are stored, and what is running now."""
    store = state.store()  # an unusable store is the page's one error (app/main.py), not one here too
    with st.sidebar:
        st.caption(f"Device: **{state.device_label()}** (device=auto)")
        try:
            st.caption(f"Executor: **{state.executor().describe()}**")
        except PerpError as err:  # e.g. Ray chosen but not installed: the page still works with the store
            st.error(str(err), icon=":material/error:")
        active = store.list_runs(status=("queued", "running"))
        if active:
            st.caption(f"{len(active)} run(s) queued or running")
        st.caption(f"Runs stored in `{store.path}`")
        gallery = state.gallery()
        if gallery is not None:
            st.caption(f"Gallery (read-only, runs g1, g2, …): `{gallery.path}`")


def getting_started() -> None:
    """The empty state: how to start, never an error."""
    st.info(GETTING_STARTED, icon=":material/waving_hand:")
    st.page_link(PAGES["experiment"], label="Open Experiment", icon=":material/science:")


def config_knob(slot, knob: dataclasses.Field, key: str, persist: str):
    """An input for one RunConfig field in ``slot`` (a column), chosen by :func:`forms.knob_kind`, labelled by the
    field's name without its prefix (``dsnot_max_cycles`` -> ``max cycles``), starting at the field's default,
    with the command line's help for the field."""
    label, help_ = knob.name.split("_", 1)[-1].replace("_", " "), FLAG_HELP.get(knob.name)
    kind = forms.knob_kind(knob)
    if kind == "toggle":
        return slot.toggle(label, knob.default, key=key, persist_state=persist, help=help_)
    if kind == "int":
        return int(slot.number_input(label, value=knob.default, step=1, key=key, persist_state=persist, help=help_))
    if kind == "float":
        return float(slot.number_input(label, value=float(knob.default), format="%g", key=key, persist_state=persist,
                                       help=help_))
    if kind == "choice":
        choices = forms.knob_choices(knob)
        return slot.selectbox(label, choices, index=choices.index(knob.default), key=key, persist_state=persist,
                              help=help_)
    return slot.text_input(label, knob.default, key=key, persist_state=persist, help=help_)


def chart(fig: go.Figure, name: str, key: str | None = None, caption: bool = True) -> None:
    """A figure with its explanation (``texts.CHARTS[name]``) underneath."""
    st.plotly_chart(fig, key=key or name, config={"displaylogo": False})
    if caption:
        st.caption(CHARTS[name])


def estimate_box(config: RunConfig) -> None:
    """What the run will train and roughly how long it will take, before it is launched."""
    estimate, error = state.estimate(config.to_json())
    if estimate is None:
        st.warning(f"No estimate for this configuration: {error}", icon=":material/warning:")
        return
    left, right = st.columns(2)
    if estimate.trainable:
        left.metric("Trainable parameters", f"{estimate.trainable_params:,}",
                    help=estimate.trainable_text)
        left.caption(f"**{100 * estimate.trainable_fraction:.3g}%** of the model's own parameters: "
                     + ", ".join(f"{k} {v:,}" for k, v in estimate.trainable.by_category.items() if v))
        for warning in estimate.trainable.warnings:  # nothing of a chosen subset trains: something to fix
            st.warning(warning, icon=":material/warning:")
    else:
        left.metric("Trainable parameters", "none", help="prune only: nothing is retrained")
        left.caption(f"{estimate.total_params:,} parameters in the model")
    right.metric("Estimated time", format_seconds(estimate.seconds), help="a rough cost model, within ~2x")
    right.caption(f"on **{estimate.device}**")
    st.caption(" · ".join(f"{STAGE_TITLES[s]} {format_seconds(v)}" for s, v in estimate.breakdown.items()))
    for note in estimate.notes:
        st.caption(note)
    memory_box(config)


def memory_box(config: RunConfig) -> None:
    """Whether the run fits the device it would use now, with its offload choice and with the others."""
    plan, error = state.memory_plan(config.to_json())
    if plan is None:
        st.caption(f":material/memory: No memory prediction: {error}")
        return
    mode = plan.auto if config.offload == "auto" else config.offload
    summary = memory_view.fit_summary(plan, config.offload)
    if plan.fits_here(mode):
        st.caption(f":material/memory: {summary}")
    else:
        st.warning(summary, icon=":material/memory:")
    st.caption(memory_view.mode_line(plan))


def choices(key: str, *options: str) -> list[str]:
    """Options of a selectbox that accepts typed values: the given ones, plus the value typed earlier (kept in
    the widget's state), so it stays selectable."""
    current = st.session_state.get(key)
    return list(dict.fromkeys([*options, *([current] if current else [])]))


def dataset_label(value: str) -> str:
    """Short enough for a half-width select box: ``wiki-embedded · works offline``, ``notes.txt · your file``."""
    if value in DATASET_HELP:
        return f"{value} · {DATASET_TAGS[value]}"
    return f"{Path(value).name} · your file"


def query_run_refs() -> list[str]:
    """The runs in the page URL (``?run=12``, ``?run=g12`` for a gallery run, or several), ignoring what names no
    run."""
    return run_sources.query_refs(st.query_params.get_all(RUN_QUERY))


def load_run_from_query() -> str | None:
    """When the page address says ``?from=12`` (or ``?from=g12``, a gallery run), put that run's settings in the
    Experiment form, once per session and run (later edits stay); return the run shown (``12``, ``g12``), or None."""
    refs = run_sources.query_refs([st.query_params.get(state.FROM_QUERY, "")])
    if not refs:
        return None
    run_ref = refs[0]
    if str(st.session_state.get(state.LOADED)) != run_ref:
        try:
            row = state.runs().get_run(run_ref)
        except PerpError as err:
            st.warning(f"Cannot load the settings of run #{run_ref}: {err}", icon=":material/warning:")
            return None
        st.session_state.update(forms.widget_values(row.config))
        st.session_state[state.LOADED] = run_ref
    return run_ref


def details_link(row: RunRow, label: str | None = None) -> None:
    """A link to the run's own page (config, timings, log, layers, export), which a URL can reopen."""
    st.page_link(PAGES["run"], label=label or f"Run #{row.ref}: details, log, export", icon=":material/open_in_new:",
                 query_params={RUN_QUERY: row.ref})


def save_upload(uploader_key: str, target_key: str) -> None:
    """Callback: keep an uploaded text file next to the store and select it as the data set."""
    upload = st.session_state.get(uploader_key)
    if upload is None:
        return
    data = upload.getvalue()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", upload.name)
    path = state.store().root / "uploads" / f"{hashlib.sha256(data).hexdigest()[:12]}-{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    uploads = state.session_list(state.UPLOADS)
    if str(path) not in uploads:
        uploads.append(str(path))
    st.session_state[target_key] = str(path)


def _breakdown(row: RunRow) -> dict[str, float]:
    try:
        config_json = RunConfig.from_dict(row.config).to_json()
    except PerpError:
        return {}
    estimate, _ = state.estimate(config_json)
    return estimate.breakdown if estimate else {}


def run_card(row: RunRow) -> None:
    """One run: its stages as progress bars while it runs, its results or its error when it ends."""
    with st.container(border=True):
        st.markdown(f"{STATUS_ICONS.get(row.status, '')} **{run_label(row)}** · {row.config.get('model')} · *{row.status}*")
        if row.status in ("queued", "running"):
            _progress(row)
        elif row.status == "done":
            run_result(row)
        elif row.status == "failed":
            st.error(f"This run failed: {row.error}", icon=":material/error:")
        else:
            cancelled_note(row)
        if row.status != "queued":
            with st.expander("Log", expanded=row.status in ("running", "failed")):
                st.code("\n".join(state.store().logs(row.id, tail=200)) or "(no log yet)", language=None, height=200,
                        wrap_lines=True)
        details_link(row)


def _progress(row: RunRow) -> None:
    if row.status == "queued":
        ahead = [r for r in state.store().list_runs(status=("queued", "running")) if r.id < row.id]
        st.caption(f"Queued: {len(ahead)} run(s) ahead of it. It starts by itself; you can leave this page.")
    else:
        left = remaining_seconds(row, _breakdown(row))
        elapsed = f"running for {format_seconds(row.duration)}" if row.duration is not None else "starting"
        st.caption(elapsed + (f", about {format_seconds(left)} left (estimate)" if left else "")
                   + ". You can leave this page; the run goes on.")
        for bar in stage_bars(row):
            st.progress(bar.value, text=bar.text)
    if st.button("Cancel", key=f"cancel-{row.id}", icon=":material/stop_circle:"):
        status = state.executor().cancel(row.id)
        st.toast(f"Run #{row.id}: {'cancelled' if status.finished else 'stopping…'}")


def cancelled_note(row: RunRow) -> None:
    """A cancelled run as what it is: stopped on request, not an error."""
    st.info(run_details.cancelled_text(row), icon=":material/stop_circle:")


def run_result(row: RunRow) -> None:
    """The headline numbers of a finished run (lower perplexity is better: deltas are coloured inversely), the
    recovery and the trainable share in words that name their scale, the estimate beside the time taken, then
    the run's notes (informational) and warnings (something to look at)."""
    metrics = st.container(horizontal=True, gap="medium")
    metrics.metric("Dense perplexity", _num(row.dense_ppl), width="content")
    metrics.metric("Pruned", _num(row.pruned_ppl), _delta(row.pruned_ppl, row.dense_ppl), delta_color="inverse",
                   help=f"at sparsity {row.sparsity:.1%}" if row.sparsity is not None else None, width="content")
    recovered = recovery_words(row)
    if row.final_ppl is not None:
        metrics.metric("Retrained", _num(row.final_ppl), _delta(row.final_ppl, row.pruned_ppl), delta_color="inverse",
                       width="content")
        metrics.metric("Recovered (log-ppl gap)", "–" if recovered is None else f"{recovery(row):.0%}",
                       width="content", help=(recovered or "– : pruning cost under 1% perplexity") + ". The share "
                       "of the gap between the pruned and the dense log-perplexity (the loss) that the repair closed.")
    trained = trainable_words(row)
    if trained:
        metrics.metric("Trained parameters", f"{row.trainable_params:,}", width="content", help=trained)
    details = [recovered, f"trained {trained}" if trained else None,
               run_details.estimate_words(row) or (f"took {format_seconds(row.duration)}" if row.duration else None),
               f"on {row.environment.get('device')}" if row.environment.get("device") else None,
               f"peak memory {row.peak_memory_mb:,.0f} MB" if row.peak_memory_mb else None,
               f"reused from cache: {', '.join(row.reused)}" if row.reused else None]
    st.caption(" · ".join(d for d in details if d))
    for notice in notices({**(row.result or {}), "warnings": row.warnings, "trainable_params": row.trainable_params}):
        if notice.level == "note":
            st.caption(f":material/info: {notice.text}")
        else:
            st.warning(notice.text, icon=":material/warning:")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _delta(value: float | None, reference: float | None) -> str | None:
    if value is None or reference is None or reference == 0:
        return None
    return f"{100 * (value / reference - 1):+.1f}%"


@st.fragment(run_every=LIVE_REFRESH_S)
def _polling(render: Callable[..., bool], *args) -> None:
    if not render(*args):
        st.rerun()  # the whole page: finished results show everywhere on it, and polling stops


def live(render: Callable[..., bool], active: bool, *args) -> None:
    """Draw ``render(*args)``, which returns whether something it shows is still queued or running. While
    ``active``, draw it in a fragment that redraws itself every second without rerunning the page."""
    if active:
        _polling(render, *args)
    else:
        render(*args)


def _cards(run_ids: tuple[int, ...]) -> bool:
    store = state.store()
    store.recover()  # a run whose worker died shows as failed, with the reason, instead of running forever
    rows = [store.get_run(i) for i in run_ids]
    for row in rows:
        run_card(row)
    return any(not r.finished for r in rows)


SWEEP_COLUMNS = ("id", "status", "progress", "now", "pruning", "retraining", "dense ppl", "pruned ppl", "final ppl",
                 RECOVERED, "trainable params", "time (s)", "message")


def sweep_progress(sweep_id: int) -> bool:
    """A sweep's progress (overall, and each run's stage), its perplexity-vs-sparsity chart and its runs;
    True while runs remain."""
    store = state.store()
    rows = store.sweep_runs(sweep_id)
    finished = sum(r.finished for r in rows)
    counts = ", ".join(f"{n} {s}" for s, n in store.get_sweep(sweep_id)["counts"].items())
    done_share = sum(overall_fraction(r) if r.status == "running" else float(r.finished) for r in rows)
    st.progress(done_share / len(rows) if rows else 1.0, text=f"{finished} of {len(rows)} finished ({counts})")
    for r in rows:
        if r.status == "running":
            st.progress(overall_fraction(r), text=f"{run_label(r)}: {current_step(r)}")
    active = [r for r in rows if not r.finished]
    if active and st.button("Cancel the rest", key=f"sweep-cancel-{sweep_id}", icon=":material/stop_circle:"):
        for r in active:
            state.executor().cancel(r.id)
    if any(r.status == "done" for r in rows):
        chart(figures.ppl_vs_sparsity(rows), "ppl_vs_sparsity", key=f"sweep-chart-{sweep_id}")
    table = runs_frame(rows)
    table.insert(2, "progress", [overall_fraction(r) for r in rows])
    table.insert(3, "now", [current_step(r) for r in rows])
    st.dataframe(table, hide_index=True, key=f"sweep-table-{sweep_id}", placeholder="–", column_order=SWEEP_COLUMNS,
                 column_config=RUN_COLUMN_CONFIG)
    return bool(active)


def your_runs(run_ids: list[int]) -> None:
    """Experiment's list of the runs launched from this browser (``run_ids``, newest first; deleted ones are
    skipped): the queued and running ones and the newest others as cards, links to the earlier ones, a link to
    every run (Compare), and how many runs from elsewhere are queued or running."""
    store = state.store()
    rows = []
    for run_id in run_ids:
        try:
            rows.append(store.get_run(run_id))
        except PerpError:  # deleted since
            continue
    elsewhere = [r for r in store.list_runs(status=("queued", "running")) if r.id not in set(run_ids)]
    if not rows:
        st.caption("Runs you launch from this browser appear here with a progress bar per stage, and stay listed "
                   "after a reload. They run in the background: you can open other pages meanwhile. Compare lists "
                   "every run.")
    cards = [r.id for i, r in enumerate(rows) if i < RECENT_RUNS or not r.finished]
    if cards:
        run_cards(cards)
    earlier = [r for r in rows if r.id not in cards]
    if earlier:
        st.caption(f"Earlier from this browser ({len(earlier)}):")
        with st.container(horizontal=True, gap="small"):
            for r in earlier[:EARLIER_LINKS]:
                st.page_link(PAGES["run"], label=f"#{r.id} · {r.status}", query_params={RUN_QUERY: str(r.id)})
    if elsewhere:
        st.caption(f"{len(elsewhere)} other run(s) queued or running (another browser, a sweep or the command "
                   "line); yours wait behind the older ones.")
    st.page_link(PAGES["compare"], label="Every run: Compare", icon=":material/monitoring:")


def run_cards(run_ids: list[int]) -> None:
    """Cards for these runs, refreshed every second while any of them is queued or running."""
    ids = tuple(dict.fromkeys(run_ids))
    rows = [state.store().get_run(i) for i in ids]
    resume_queue(rows)
    live(_cards, any(not r.finished for r in rows), ids)


def resume_queue(rows: list[RunRow]) -> None:
    """Start a worker when some of these runs are queued and none is alive (after a crash or a reboot)."""
    if any(r.status == "queued" for r in rows):
        state.executor().ensure_workers()
