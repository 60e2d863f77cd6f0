"""Experiment: choose a model, a pruning and a retraining recipe, see what it costs, launch it, watch it run.

Launch queues exactly what the form shows: number fields have no bounds of their own (a typed value out of a
widget's range would be refused silently by the browser and the previous one kept), so every value reaches the
config and the pre-run checks, whose refusal names the field and disables Launch. An identical queued, running or
finished run is offered instead of a copy. The runs listed are this browser's (app/launches.py).
"""

import streamlit as st

from app import forms, state, widgets
from app.forms import LABELS
from perp_engine.config import (
    ADAPTERS,
    ALLOCATIONS,
    DEFAULT_MODEL,
    DEVICES,
    DTYPES,
    METHODS,
    MODES,
    NAMED_DATASETS,
    OFFLOADS,
    REFINES,
    RIA_PERMUTATIONS,
    SEQUENTIAL_MODES,
    SUBSETS,
    ZERO_SHOT_LIMIT,
    ZERO_SHOT_MODELS,
    RunConfig,
)
from perp_engine.errors import PerpError

KEEP = "session"  # widget values survive a visit to another page

st.title("Experiment")
st.caption("Prune a small language model, repair it by retraining a few parameters, and measure what was lost "
           "and what came back. Every choice has a default that works on a laptop CPU.")

store = state.store()
loaded = widgets.load_run_from_query()
if loaded:
    st.caption(f":material/history: The form shows the settings of run #{loaded} (from the page address).")
recent = store.list_runs(limit=50)
used_models = [r.config["model"] for r in recent]
used_data = [r.config["dataset"] for r in recent]

form_col, cost_col = st.columns([3, 2], gap="large")
with form_col:
    st.subheader("1 · Model and text")
    model = st.selectbox(
        LABELS["model"], widgets.choices("exp_model", DEFAULT_MODEL, *used_models), key="exp_model", persist_state=KEEP,
        accept_new_options=True,
        help=f"{DEFAULT_MODEL} is embedded in the install (no download). Type a Hugging Face id "
             "(e.g. HuggingFaceTB/SmolLM2-360M) or the path of a local model folder.")
    st.file_uploader("…or use your own text file as data", type=["txt"], key="exp_upload",
                     on_change=widgets.save_upload, args=("exp_upload", "exp_dataset"))
    dataset = st.selectbox(
        LABELS["dataset"],
        widgets.choices("exp_dataset", *NAMED_DATASETS, *used_data, *state.session_list(state.UPLOADS)),
        key="exp_dataset", persist_state=KEEP, accept_new_options=True, format_func=widgets.dataset_label,
        help="wiki-embedded works offline. Type the path of a .txt file to use your own text.")

    st.subheader("2 · Pruning")
    method = st.segmented_control(
        LABELS["method"], METHODS, default=forms.DEFAULT_METHOD, required=True, key="exp_method", persist_state=KEEP,
        help=forms.help_text(forms.METHOD_HELP))
    pattern = st.segmented_control(
        LABELS["pattern"], forms.PATTERNS, default="unstructured", required=True, key="exp_pattern", persist_state=KEEP,
        help="unstructured: any weights. N:M: N of every M consecutive weights are pruned (2:4 runs fast on GPUs).")
    if pattern == "unstructured":
        sparsity = st.slider(
            LABELS["sparsity"], 0.05, 0.95, 0.5, 0.05, key="exp_sparsity", persist_state=KEEP, format="%.2f",
            help="Share of the weights of every linear layer set to zero. An N:M pattern fixes it to N/M.")
    else:  # a slider of its own, fixed at N/M: the unstructured choice is kept for when the pattern changes back
        sparsity = st.slider(LABELS["sparsity"], 0.05, 0.95, forms.pattern_sparsity(pattern, 0.5), 0.05,
                             key=f"exp_sparsity_{pattern}", format="%.2f", disabled=True,
                             help="An N:M pattern fixes the sparsity to N/M.")
        st.caption(f"{pattern} prunes exactly {sparsity:.0%} of the weights.")
    pruning = {}
    if forms.ria_permutes(method, pattern):
        pruning["ria_permute"] = st.segmented_control(
            LABELS["ria_permute"], RIA_PERMUTATIONS, default="none", required=True, key="exp_ria_permute",
            persist_state=KEEP, help=forms.help_text(forms.RIA_PERMUTE_HELP))
    allocation_col, refine_col = st.columns(2)
    if forms.allows_allocation(pattern):
        pruning["allocation"] = allocation_col.segmented_control(
            LABELS["allocation"], ALLOCATIONS, default="uniform", required=True, key="exp_allocation",
            persist_state=KEEP,
            help="How the sparsity is shared among the blocks. " + forms.help_text(forms.ALLOCATION_HELP))
    else:  # a control of its own, fixed at uniform: the unstructured choice is kept for when the pattern changes back
        allocation_col.segmented_control(LABELS["allocation"], ALLOCATIONS, default="uniform", required=True,
                                         key=f"exp_allocation_{pattern}", disabled=True)
        allocation_col.caption(forms.NM_ALLOCATION)
    pruning["refine"] = refine_col.segmented_control(
        LABELS["refine"], REFINES, default="none", required=True, key="exp_refine", persist_state=KEEP,
        help="What reworks each pruned layer's mask afterwards. " + forms.help_text(forms.REFINE_HELP))
    pruning["sequential"] = st.segmented_control(
        LABELS["sequential"], SEQUENTIAL_MODES, default="block", required=True, key="exp_sequential",
        persist_state=KEEP, help="What each layer is pruned on. " + forms.help_text(forms.SEQUENTIAL_HELP))
    if pruning.get("allocation") == "owl":
        m_col, lambda_col = st.columns(2)
        pruning["owl_m"] = m_col.number_input(
            LABELS["owl_m"], value=RunConfig.owl_m, step=1.0, key="exp_owl_m", persist_state=KEEP,
            help="A weight is an outlier when its Wanda score is above M times its block's mean score.")
        pruning["owl_lambda"] = lambda_col.number_input(
            LABELS["owl_lambda"], value=RunConfig.owl_lambda, step=0.01, key="exp_owl_lambda", persist_state=KEEP,
            help="The block sparsities spread over a range of 2λ around the target (more outliers, lower "
                 "sparsity); 2λ may not exceed the smaller of sparsity and 1 − sparsity.")

    st.subheader("3 · Retraining")
    recipe = st.selectbox(LABELS["preset"], forms.RECIPES, index=forms.RECIPES.index(forms.DEFAULT_RECIPE),
                          key="exp_recipe", persist_state=KEEP,
                          help="Presets from the PERP paper, or your own combination.")
    st.caption(forms.recipe_summary(recipe))
    custom = {}
    if recipe == forms.CUSTOM:
        mode = st.segmented_control(LABELS["mode"], MODES, default="retrain", required=True, key="exp_mode",
                                    persist_state=KEEP,
                                    help="retrain: the whole model on the language-modelling loss. "
                                         "reconstruct: block by block, matching the dense block's outputs.")
        custom = {
            "mode": mode,
            "train": st.multiselect(LABELS["train"], SUBSETS, default=["biases", "norms"], key="exp_train",
                                    persist_state=KEEP, disabled=mode == "none",
                                    help="full retrains every weight (pruned ones stay zero)."),
            "adapter": st.selectbox(LABELS["adapter"], ADAPTERS, key="exp_adapter", persist_state=KEEP,
                                    disabled=mode == "none",
                                    help="masklora and scalelora keep the zeros when merged; lora does not."),
            "rank": st.number_input(LABELS["rank"], value=RunConfig.rank, key="exp_rank", persist_state=KEEP,
                                    disabled=mode == "none", help="At most the smaller side of a pruned layer."),
        }
    retrains = (custom.get("mode") if recipe == forms.CUSTOM else forms.recipe_fields(recipe)["mode"]) != "none"
    steps, lr, eval_every = None, None, RunConfig.eval_every
    if retrains:
        steps_col, lr_col, curve_col = st.columns(3)
        steps = steps_col.number_input(
            LABELS["steps"], value=forms.RUN_SIZES[forms.DEFAULT_SIZE]["steps"], key=forms.SIZE_KEYS["steps"],
            persist_state=KEEP, help="Each step sees batch size x sequence length tokens. The run size sets it.")
        preset_lr = forms.recipe_fields(recipe).get("lr", RunConfig.lr)
        lr = lr_col.number_input(LABELS["lr"], value=preset_lr, format="%.1e", step=1e-4,
                                 key=f"exp_lr_{recipe}", persist_state=KEEP,
                                 help="The presets' values were tuned on the embedded model.")
        eval_every = curve_col.number_input(
            LABELS["eval_every"], value=RunConfig.eval_every, key="exp_eval_every", persist_state=KEEP,
            help="0: off. K: every K steps (and before the first, after the last) measure the held-out perplexity "
                 "(reconstruction: each block's held-out error), never on training windows. Each point costs one "
                 "evaluation; Compare and the Run page draw the curve.")

    st.subheader("4 · Zero-shot accuracy")
    zero_shot = st.multiselect(
        LABELS["zero_shot"], forms.ZERO_SHOT_CHOICES, key="exp_zs_tasks", persist_state=KEEP,
        format_func=forms.task_choice_label, placeholder="off: perplexity only",
        help="Accuracy as the pruning papers report it (lm-eval's prompts and metrics, task data shipped offline). "
             "'all seven (paper)': BoolQ, RTE, HellaSwag, WinoGrande, ARC-Easy, ARC-Challenge, OpenBookQA.")
    zero_shot_fields = {}
    if zero_shot:
        limit_col, all_col = st.columns(2)
        every = all_col.checkbox("All docs of each task", key="exp_zs_all", persist_state=KEEP,
                                 help="Every doc of the split (HellaSwag has 10,042): tight numbers, much slower.")
        limit = limit_col.number_input(LABELS["zero_shot_limit"], value=ZERO_SHOT_LIMIT, key="exp_zs_limit",
                                       persist_state=KEEP, disabled=every,
                                       help="A subset drawn with the run's seed: the same seed scores the same docs.")
        scored_on = st.pills(LABELS["zero_shot_on"], ZERO_SHOT_MODELS, selection_mode="multi", default=ZERO_SHOT_MODELS,
                             key="exp_zs_on", persist_state=KEEP,
                             help="dense: before pruning (computed once per task set and cached); pruned: before "
                                  "repair; final: after repair. Dense -> pruned -> final shows what pruning cost and "
                                  "what the repair won back.")
        zero_shot_fields = {"zero_shot": zero_shot, "zero_shot_limit": 0 if every else int(limit),
                            "zero_shot_on": scored_on}

    with st.expander(forms.ADVANCED):
        size = st.segmented_control(
            "Run size", list(forms.RUN_SIZES), default=forms.DEFAULT_SIZE, required=True, key="exp_size",
            persist_state=KEEP, format_func=str.capitalize,
            on_change=lambda: st.session_state.update(forms.size_values(st.session_state["exp_size"])),
            help=" · ".join(f"{k.capitalize()}: {v}." for k, v in forms.SIZE_HELP.items()))
        size_note = st.empty()
        a, b, c = st.columns(3)
        first = forms.RUN_SIZES[forms.DEFAULT_SIZE]
        advanced = {
            "eval_tokens": a.number_input(LABELS["eval_tokens"], value=first["eval_tokens"], step=1024,
                                          key=forms.SIZE_KEYS["eval_tokens"], persist_state=KEEP),
            "calib_samples": b.number_input(LABELS["calib_samples"], value=first["calib_samples"],
                                            key=forms.SIZE_KEYS["calib_samples"], persist_state=KEEP),
            "seqlen": c.number_input(LABELS["seqlen"], value=first["seqlen"], key=forms.SIZE_KEYS["seqlen"],
                                     persist_state=KEEP, help="Tokens per window: calibration, training and "
                                                              "evaluation. At most the model's context."),
            "batch_size": a.number_input(LABELS["batch_size"], value=RunConfig.batch_size, key="exp_batch",
                                         persist_state=KEEP),
            "seed": b.number_input(LABELS["seed"], value=RunConfig.seed, key="exp_seed", persist_state=KEEP),
            "device": c.selectbox(LABELS["device"], DEVICES, key="exp_device", persist_state=KEEP,
                                  help=f"auto uses a GPU when there is one; here: {state.device_label()}"),
            "dtype": a.selectbox(LABELS["dtype"], DTYPES, key="exp_dtype", persist_state=KEEP),
            "offload": c.selectbox(LABELS["offload"], OFFLOADS, key="exp_offload", persist_state=KEEP,
                                   help="Where the decoder blocks wait between uses: none keeps the whole model on the "
                                        "device; cpu (GPU runs) keeps them in CPU memory and disk in files, each block "
                                        "visiting the device in turn; auto picks the first that the memory prediction "
                                        "says fits."),
        }
        advanced["max_grad_norm"] = b.number_input(
            LABELS["max_grad_norm"], value=float(RunConfig.max_grad_norm), step=0.5, key="exp_max_grad_norm",
            persist_state=KEEP, help="Gradients are clipped to this norm while retraining, as in the paper (1.0); "
                                     "0 turns clipping off.")
        pruning["ria_power"] = a.number_input(
            LABELS["ria_power"], value=RunConfig.ria_power, step=0.1, key="exp_ria_power", persist_state=KEEP,
            disabled=method != "ria", help="RIA multiplies the relative importance by the input's norm to this "
                                           "power (0: relative importance alone). Used by method ria only.")
        if pruning["refine"] == "dsnot" and forms.dsnot_fields():
            st.caption("DSnoT's settings (the defaults are the official code's):")
            knob_cols = st.columns(3)
            for i, knob in enumerate(forms.dsnot_fields()):
                advanced[knob.name] = widgets.config_knob(knob_cols[i % 3], knob, f"exp_{knob.name}", KEEP)
        size_note.caption(forms.size_caption(size, int(advanced["eval_tokens"]), int(advanced["calib_samples"]),
                                             int(advanced["seqlen"]), None if steps is None else int(steps)))

form = forms.ExperimentForm(model=model or "", dataset=dataset or "", method=method, sparsity=sparsity, pattern=pattern,
                            recipe=recipe, steps=None if steps is None else int(steps), lr=lr,
                            eval_every=int(eval_every), size=size, advanced=advanced, **pruning,
                            **{k: v for k, v in custom.items() if v is not None}, **zero_shot_fields)
with cost_col:
    st.subheader("Before you launch")
    warnings, twin = [], None
    try:
        config = form.to_config()
        warnings, refusal = state.preflight(config.to_json())
    except PerpError as err:
        config, refusal = None, (err.field, str(err))
    if refusal:
        st.error(refusal[1], icon=":material/warning:")
        hint = forms.field_hint(refusal[0])
        if hint:
            st.caption(hint)
    else:
        widgets.estimate_box(config)
        twin = state.runs().twin(config, forms.TWIN_STATUSES)
    for warning in warnings:
        st.caption(f":material/info: {warning}")
    if twin is not None and twin.gallery:
        st.info(f"**Identical to gallery run #{twin.ref}**: the same settings give the same numbers, and that run "
                "shipped with PERP Lab already has them. Launch runs it again in your own store (to export it or "
                "watch it run).", icon=":material/photo_library:")
    elif twin is not None:
        st.info(f"**Identical to run #{twin.id}** ({twin.status}): the same settings give the same numbers, so "
                "Launch would only queue a copy. Change a setting to launch a new run.", icon=":material/content_copy:")
    if twin is not None:
        widgets.details_link(twin, label=f"Open run #{twin.ref}")
    copies = twin is not None and not twin.gallery  # a gallery twin may be run again: its copy lands in your store
    reason = refusal[1] if refusal else f"identical to run #{twin.id}" if copies else None
    launch = st.button("Launch", type="primary", icon=":material/rocket_launch:", disabled=reason is not None,
                       help=f"Cannot launch: {reason}" if reason else None, width="stretch")
    if launch and reason is None:  # a click sent before this rerun found a reason does not queue
        run_id = state.executor().submit(config, checked=True)  # the checks above just passed
        state.remember_launch(run_id)
        st.toast(f"Run #{run_id} queued")
        st.rerun()  # the form now shows the identical run just queued, and its card

    st.subheader("Your runs")
    widgets.your_runs(state.browser_runs())
    state.keep_browser_id()
