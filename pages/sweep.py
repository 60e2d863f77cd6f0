"""Sweep: build a grid of runs from widgets, queue it, and watch the results fill in.

Every setting lives in the page address (widgets bound to query parameters; the model, the text and the sweep
watched as ``model``, ``text`` and ``sweep``, written as they are, not as their boxes show them), so a reload
keeps the grid instead of going back to the default one."""

import streamlit as st

from app import forms, state, widgets
from perp_engine.config import (
    ALLOCATIONS,
    DEFAULT_MODEL,
    METHODS,
    NAMED_DATASETS,
    REFINES,
    SEQUENTIAL_MODES,
    RunConfig,
)
from perp_engine.errors import PerpError
from perp_engine.presets import DESCRIPTIONS, PRESETS
from perp_engine.resources.estimate import format_seconds
from perp_engine.run.sweep import queue_sweep

KEEP = "session"
URL = "query-params"  # a reload keeps the value: it is in the page address
MODEL_QUERY, TEXT_QUERY, SWEEP_QUERY = "model", "text", "sweep"
SPARSITIES = [round(0.1 * i, 1) for i in range(1, 10)]
DEFAULT_METHODS, DEFAULT_SPARSITIES, DEFAULT_RECIPES = ["magnitude", "wanda"], [0.5, 0.7], ["none", "perp"]
ESTIMATED_POINTS = 40  # configs estimated one by one; a larger grid is extrapolated from them



def from_address(key: str, query: str) -> None:
    """A value the page address holds fills the widget ``key`` when this session has none (a reload)."""
    if key not in st.session_state and st.query_params.get(query):
        st.session_state[key] = st.query_params[query]


def to_address(query: str, value: str, default: str) -> None:
    """Write ``value`` to the page address as it is, or leave it out when it is the default."""
    if value == default:
        st.query_params.pop(query, None)
    else:
        st.query_params[query] = value


st.title("Sweep")
st.caption("Every combination of the values below becomes one run. Runs queue and execute one after another in "
           "the background; identical dense and pruned models are computed once and reused. The default grid is "
           "teaching-sized: magnitude against Wanda at 50% and 70% sparsity, each pruned only and repaired by PERP, "
           "8 runs of a few minutes in all on a laptop CPU at the default run size (the estimate below says how "
           "long). Each value added multiplies the runs.")
store = state.store()
used = store.list_runs(limit=50)

with st.container(border=True):
    c1, c2 = st.columns(2)
    from_address("sw_model", MODEL_QUERY)
    from_address("sw_dataset", TEXT_QUERY)
    model = c1.selectbox("Model", widgets.choices("sw_model", DEFAULT_MODEL, *(r.config["model"] for r in used)),
                         key="sw_model", persist_state=KEEP, accept_new_options=True)
    dataset = c2.selectbox("Text", widgets.choices("sw_dataset", *NAMED_DATASETS, *(r.config["dataset"] for r in used)),
                           key="sw_dataset", persist_state=KEEP, accept_new_options=True,
                           format_func=widgets.dataset_label)
    to_address(MODEL_QUERY, model, DEFAULT_MODEL)
    to_address(TEXT_QUERY, dataset, NAMED_DATASETS[0])
    methods = st.multiselect("Pruning methods", METHODS, default=DEFAULT_METHODS, key="sw_methods",
                             persist_state=KEEP, bind=URL, help=forms.help_text(forms.METHOD_HELP))
    pattern = st.segmented_control("Pattern", forms.PATTERNS, default="unstructured", required=True, key="sw_pattern",
                                   persist_state=KEEP, bind=URL)
    c9, c10 = st.columns(2)
    allocations = c9.multiselect("Allocations", ALLOCATIONS, default=["uniform"], key="sw_allocations",
                                 persist_state=KEEP, bind=URL, help="How the sparsity is shared among the blocks. "
                                 + forms.help_text(forms.ALLOCATION_HELP))
    refines = c10.multiselect("Refinements", REFINES, default=["none"], key="sw_refines", persist_state=KEEP,
                              bind=URL,
                              help="What reworks each pruned layer's mask afterwards. "
                                   + forms.help_text(forms.REFINE_HELP))
    sequentials = st.multiselect("Orders in a block", SEQUENTIAL_MODES, default=["block"], key="sw_sequentials",
                                 persist_state=KEEP, bind=URL,
                                 help="What each layer is pruned on. " + forms.help_text(forms.SEQUENTIAL_HELP))
    sparsities = st.multiselect("Sparsities", SPARSITIES, default=DEFAULT_SPARSITIES, key="sw_sparsities",
                                persist_state=KEEP, bind=URL, format_func=lambda s: f"{s:.0%}",
                                disabled=pattern != "unstructured",
                                help="An N:M pattern fixes the sparsity to N/M.")
    recipes = st.multiselect("Retraining recipes", list(PRESETS), default=DEFAULT_RECIPES, key="sw_recipes",
                             persist_state=KEEP, bind=URL,
                             help=" · ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()))
    c3, c4 = st.columns(2)
    n_seeds = c3.number_input("Seeds", 1, 10, 1, key="sw_seeds", persist_state=KEEP, bind=URL,
                              help="Repeats with seeds 0, 1, ...; charts average them.")
    size = c4.segmented_control("Run size", list(forms.RUN_SIZES), default=forms.DEFAULT_SIZE, required=True,
                                key="sw_size", persist_state=KEEP, bind=URL, format_func=str.capitalize,
                                help=" · ".join(f"{k.capitalize()}: {v}" for k, v in forms.SIZE_HELP.items()))
    c5, c6, c7, c8 = st.columns(4)
    run_size = {  # each size's own fields: switching sizes shows that size's values
        "steps": c5.number_input("Training steps", 1, 100_000, forms.RUN_SIZES[size]["steps"], key=f"sw_steps_{size}",
                                 persist_state=KEEP, bind=URL),
        "seqlen": c6.number_input("Sequence length", 8, 8192, forms.RUN_SIZES[size]["seqlen"],
                                  key=f"sw_seqlen_{size}", persist_state=KEEP, bind=URL),
        "calib_samples": c7.number_input("Calibration sequences", 1, 4096, forms.RUN_SIZES[size]["calib_samples"],
                                         key=f"sw_calib_{size}", persist_state=KEEP, bind=URL),
        "eval_tokens": c8.number_input("Evaluation tokens", 64, 10_000_000, forms.RUN_SIZES[size]["eval_tokens"],
                                       step=1024, key=f"sw_eval_tokens_{size}", persist_state=KEEP, bind=URL),
    }
    run_size["eval_every"] = st.number_input(
        "Learning curve every", 0, 100_000, RunConfig.eval_every, key="sw_eval_every", persist_state=KEEP,
        bind=URL,
        help="0: off. K: each run that trains measures its held-out perplexity (reconstruction: each block's held-out "
             "error) every K steps; Compare draws the curves. Each point costs one evaluation.")
    trains = any(PRESETS[r]["mode"] != "none" for r in recipes)
    st.caption(forms.size_caption(size, int(run_size["eval_tokens"]), int(run_size["calib_samples"]),
                                  int(run_size["seqlen"]), int(run_size["steps"]) if trains else None))
    seeds = list(range(int(n_seeds)))
    axes_name = (forms.sweep_name(methods, sparsities, recipes, seeds, pattern, allocations, refines, sequentials)
                 if methods and recipes and allocations and refines and sequentials else "")
    name = st.text_input("Name", key="sw_name", persist_state=KEEP, bind=URL,
                         placeholder=f"{axes_name} (named by what varies when empty)" if axes_name else
                         "named by what varies when empty")

try:
    spec = forms.sweep_spec(name=name, fixed={"model": model, "dataset": dataset,
                                              **{k: int(v) for k, v in run_size.items()}},
                            methods=methods, sparsities=sparsities, recipes=recipes, seeds=seeds, pattern=pattern,
                            allocations=allocations, refines=refines,
                            sequentials=sequentials)
    configs, skipped = forms.sweep_configs(spec)
except PerpError as err:
    st.warning(str(err), icon=":material/warning:")
    spec = None
if spec is not None:
    estimates = [state.estimate(c.to_json())[0] for c in configs[:ESTIMATED_POINTS]]
    known = [e for e in estimates if e is not None]
    total = forms.sweep_seconds(configs, [e.breakdown if e else None for e in estimates])
    st.markdown(f"**{len(configs)} runs**" + (f", about **{format_seconds(total)}** in all on {known[0].device}, "
                                              "counting dense and pruned models shared between runs once" if known else ""))
    for line in skipped:
        st.caption(f":material/block: {line}")
    if st.button("Launch sweep", type="primary", icon=":material/rocket_launch:"):
        try:
            sweep_id, run_ids, _ = queue_sweep(spec, state.executor(), store, skip_invalid=True)
        except PerpError as err:  # e.g. PERP_EXECUTOR=ray without Ray installed
            st.error(str(err), icon=":material/error:")
        else:
            st.session_state[state.SWEEP] = sweep_id
            st.toast(f"Sweep #{sweep_id}: {len(run_ids)} runs queued")

st.divider()
sweeps = store.list_sweeps()
if not sweeps:
    st.caption("Launched sweeps appear here and fill in as their runs finish.")
    st.stop()
names = {s["id"]: f"#{s['id']} {s['name']} ({s['runs']} runs)" for s in sweeps}
asked = st.query_params.get(SWEEP_QUERY, "")
watched = st.session_state.get(state.SWEEP) or (int(asked) if asked.isdigit() else None)
sweep_id = st.selectbox("Sweep", list(names), format_func=names.get,
                        index=list(names).index(watched) if watched in names else 0, key="sw_watch")
st.session_state[state.SWEEP] = sweep_id
st.query_params[SWEEP_QUERY] = str(sweep_id)

sweep_rows = store.sweep_runs(sweep_id)
widgets.resume_queue(sweep_rows)
widgets.live(widgets.sweep_progress, any(not r.finished for r in sweep_rows), sweep_id)
