"""The app's plain helpers: widget values -> RunConfig, sweep grids, run labels and table, stage progress."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime

import pandas as pd
import pytest
from app_fixtures import made_up, record

from app import forms, progress_view, runs
from perp_engine.config import ZERO_SHOT_MODELS, ZERO_SHOT_TASKS, RunConfig
from perp_engine.errors import PerpError
from perp_engine.presets import PRESETS
from perp_engine.resources.estimate import format_seconds
from perp_engine.store import RunStore


@pytest.mark.parametrize("recipe", list(PRESETS))
def test_preset_recipe_gives_the_presets_fields(recipe):
    config = forms.ExperimentForm(recipe=recipe, steps=12, method="sparsegpt", sparsity=0.6).to_config()
    assert config.preset == recipe
    for key, value in PRESETS[recipe].items():
        assert getattr(config, key) == value
    assert (config.method, config.sparsity) == ("sparsegpt", 0.6)
    assert config.steps == (12 if PRESETS[recipe]["mode"] != "none" else RunConfig.steps)


def test_custom_recipe_and_overrides():
    form = forms.ExperimentForm(recipe=forms.CUSTOM, mode="reconstruct", train=["norms"], adapter="scalelora", rank=4,
                                steps=9, lr=1e-3, size="thorough", advanced={"seqlen": 64, "seed": 3})
    config = form.to_config()
    assert config.preset is None
    assert (config.mode, config.train, config.adapter, config.rank) == ("reconstruct", ("norms",), "scalelora", 4)
    assert (config.steps, config.lr, config.seqlen, config.seed) == (9, 1e-3, 64, 3)
    assert config.eval_tokens == forms.RUN_SIZES["thorough"]["eval_tokens"]


def test_custom_mode_none_drops_training_fields():
    config = forms.ExperimentForm(recipe=forms.CUSTOM, mode="none", train=["norms"], adapter="lora").to_config()
    assert (config.mode, config.train, config.adapter) == ("none", (), "none")


def test_a_learning_curve_is_asked_for_only_when_the_recipe_trains():
    assert forms.ExperimentForm(recipe="perp", eval_every=5).to_config().eval_every == 5
    assert forms.ExperimentForm(recipe="none", eval_every=5).to_config().eval_every == 0


def test_advanced_values_win_over_the_run_size():
    config = forms.ExperimentForm(size="quick", advanced={"eval_tokens": 1024, "calib_samples": 4}).to_config()
    assert (config.eval_tokens, config.calib_samples) == (1024, 4)


@pytest.mark.parametrize("pattern, expected", [("unstructured", 0.7), ("2:4", 0.5), ("4:8", 0.5)])
def test_nm_pattern_fixes_the_sparsity(pattern, expected):
    config = forms.ExperimentForm(pattern=pattern, sparsity=0.7).to_config()
    assert (config.pattern, config.sparsity) == (pattern, expected)


@pytest.mark.parametrize("change, field", [({"model": "  "}, "model"), ({"advanced": {"seqlen": 2}}, "seqlen"),
                                           ({"recipe": forms.CUSTOM, "train": []}, "train"),
                                           ({"dataset": "/no/such/file.txt"}, "dataset"),
                                           ({"eval_every": -1}, "eval_every")])
def test_bad_values_name_their_field(change, field):
    with pytest.raises(PerpError) as err:
        forms.ExperimentForm(**change).to_config()
    assert err.value.field == field


def test_sweep_spec_crosses_the_chosen_axes():
    spec = forms.sweep_spec(name="", fixed={"model": "m", "steps": 5}, methods=["magnitude", "wanda"],
                            sparsities=[0.5, 0.3], recipes=["none", "perp"], seeds=[0])
    configs, skipped = spec.configs()
    assert len(configs) == 8 and not skipped
    assert {(c.method, c.sparsity, c.preset) for c in configs} == {
        (m, s, p) for m in ("magnitude", "wanda") for s in (0.3, 0.5) for p in ("none", "perp")}
    assert all(c.model == "m" and c.steps == 5 and c.seed == 0 for c in configs)


def test_sweep_spec_nm_pattern_ignores_sparsities():
    spec = forms.sweep_spec(name="nm", fixed={}, methods=["wanda", "sparsegpt"], sparsities=[0.3, 0.7],
                            recipes=["perp"], seeds=[0, 1], pattern="2:4")
    configs, _ = spec.configs()
    assert len(configs) == 4
    assert {(c.pattern, c.sparsity) for c in configs} == {("2:4", 0.5)}
    assert spec.name == "nm"


def test_sweep_seconds_count_shared_dense_and_pruned_models_once():
    stages = {"load": 1.0, "dense_eval": 10.0, "prune": 100.0, "pruned_eval": 10.0, "train": 1000.0}
    configs = [RunConfig.create(p, method=m) for m in ("magnitude", "wanda") for p in ("none", "perp")]
    prune_only = {k: v for k, v in stages.items() if k != "train"}
    breakdowns = [prune_only, stages, prune_only, stages]
    # dense once; each method's pruning once; load and training every time
    assert forms.sweep_seconds(configs, breakdowns) == pytest.approx(4 * 1 + 10 + 2 * 110 + 2 * 1000)
    assert forms.sweep_seconds(configs, breakdowns[:2]) == pytest.approx(4 * 1 + 10 + 2 * 110 + 1000 + 2 * 500)
    assert forms.sweep_seconds(configs, []) == 0.0


@pytest.mark.parametrize("axes, field", [({"methods": []}, "method"), ({"methods": ["wanda"]}, "grid")])
def test_sweep_spec_needs_a_real_grid(axes, field):
    values = {"methods": ["wanda"], "sparsities": [0.5], "recipes": ["perp"], **axes}
    with pytest.raises(PerpError) as err:
        forms.sweep_spec(name="", fixed={}, **values)
    assert err.value.field == field


@pytest.mark.parametrize("config, label", [
    ({"mode": "none"}, "prune only"),
    ({**PRESETS["perp-masklora"], "preset": "perp-masklora"}, "perp-masklora"),
    ({**PRESETS["perp"], "preset": "perp", "lr": 1e-3}, "perp, lr 0.001"),
    ({**PRESETS["perp"], "preset": "perp", "adapter": "lora", "rank": 8, "lr": 5e-3},
     "retrain: biases + norms + head-lora + lora r8, lr 0.005"),
    ({"mode": "reconstruct", "train": ["norms"], "adapter": "none", "lr": 2e-3}, "reconstruct: norms, lr 0.002"),
])
def test_retraining_label(config, label):
    assert runs.retraining_label(config) == label


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def test_recovery_on_the_log_scale(store):
    config = RunConfig.create("perp")
    row = store.get_run(record(store, config, made_up(config, 10.0, 40.0, 20.0, 0.01)))
    assert runs.recovery(row) == pytest.approx(0.5)
    flat = store.get_run(record(store, config, made_up(config, 10.0, 10.0, 9.0, 0.01)))
    assert runs.recovery(flat) is None
    prune_only = store.get_run(record(store, RunConfig.create("none"), made_up(RunConfig.create("none"), 10.0, 40.0)))
    assert runs.recovery(prune_only) is None and runs.end_ppl(prune_only) == 40.0


def test_block_curves_of_a_run_only_when_a_block_recorded_one(store):
    config = RunConfig.create("recon-masklora", eval_every=2)
    result = made_up(config, 10.0, 40.0, 20.0, 0.01)
    assert runs.block_curves(store.get_run(record(store, config, result))) == []
    point = {"step": 0, "seconds": 0.0, "error": 0.3}
    result.blocks[1].curve = [point]
    curves = runs.block_curves(store.get_run(record(store, config, result)))
    assert len(curves) == len(result.blocks) and curves[1] == [point] and curves[0] == []


def test_runs_frame_and_filters(store, tmp_path):
    done = store.get_run(record(store, RunConfig.create("perp", method="magnitude", seqlen=128, eval_tokens=2048),
                                made_up(RunConfig.create("perp"), 10.0, 40.0, 20.0, 0.004)))
    store.set_tags(done.id, ["lecture"])
    failed_id = store.create_run(RunConfig.create("none", model="some/dir/model"))
    store.start_run(failed_id)
    store.fail_run(failed_id, "model: cannot load it")
    rows = store.list_runs()
    frame = runs.runs_frame(rows)
    assert list(frame.columns) == list(runs.RUN_COLUMNS)
    assert list(frame["id"]) == [failed_id, done.id]
    failed, ok = frame.iloc[0], frame.iloc[1]
    assert (failed["status"], failed["model"], failed["message"]) == ("failed", "some/dir/model", "model: cannot load it")
    assert (ok["pruning"], ok["retraining"], ok["final ppl"]) == ("magnitude 50%", "perp", 20.0)
    assert ok["trainable %"] == pytest.approx(0.4) and ok[runs.RECOVERED] == pytest.approx(0.5)
    assert ok[runs.RECOVERED_LINEAR] == pytest.approx((40.0 - 20.0) / (40.0 - 10.0))
    assert (ok["data"], ok["seqlen"], ok["eval tokens"], ok["calib windows"], ok["steps"], ok["lr"]) == (
        "wiki-embedded", 128, 2048, 32, 30, 5e-3)
    assert pd.isna(failed["steps"]) and pd.isna(failed["lr"])  # nothing retrained, no recipe size
    assert ok["tags"] == "lecture"
    assert [r.id for r in runs.filter_rows(rows, statuses=["failed"])] == [failed_id]
    assert [r.id for r in runs.filter_rows(rows, methods=["magnitude"], retrainings=["perp"])] == [done.id]
    assert [r.id for r in runs.filter_rows(rows, tags=["lecture", "other"])] == [done.id]
    assert runs.filter_rows(rows, models=["elsewhere"]) == []


def test_runs_csv_has_iso_times_and_integer_counts(store):
    config = RunConfig.create("perp")
    result = made_up(config, 10.0, 40.0, 20.0, 0.830784)
    run_id = record(store, config, result)
    queued = store.create_run(RunConfig.create("none"))
    table = list(csv.DictReader(io.StringIO(runs.runs_csv(runs.runs_frame(store.list_runs())))))
    done = next(r for r in table if r["id"] == str(run_id))
    assert done["trainable params"] == "830784" and done["eval tokens"] == "16384" and done["steps"] == "30"
    created = datetime.fromisoformat(done["created"])
    assert created.tzinfo is not None and abs(created.timestamp() - store.get_run(run_id).created_at) < 1
    pending = next(r for r in table if r["id"] == str(queued))
    assert (pending["trainable params"], pending["steps"], pending["final ppl"]) == ("", "", "")


@pytest.mark.parametrize("model, label", [("smollm2-135m", "smollm2-135m"), ("HuggingFaceTB/SmolLM2-360M", "HuggingFaceTB/SmolLM2-360M"),
                                          ("some/dir/model", "some/dir/model"), ("/tmp/some/model", "/tmp/some/model"),
                                          ("/data/" + "x" * 40 + "/checkpoints/run-3/model", "…/checkpoints/run-3/model")])
def test_model_label_keeps_a_path_that_names_no_folder(model, label):
    assert runs.model_label(model) == label


def test_model_label_of_an_existing_folder_is_its_name(tmp_path):
    (tmp_path / "my-model").mkdir()
    assert runs.model_label(str(tmp_path / "my-model")) == "my-model"


def test_fairness_notes_flag_protocols_and_differing_dense_perplexities(store):
    def add(dense, **fields):
        config = RunConfig.create("none", **fields)
        return store.get_run(record(store, config, made_up(config, dense, 2 * dense)))

    same = [add(25.35), add(25.36)]
    assert runs.fairness_notes(same) == []  # 0.04% apart: the same protocol and model
    other = add(28.0, seqlen=128, eval_tokens=2048)
    (protocols,) = runs.fairness_notes([*same, other])
    assert "2 protocols" in protocols and "seqlen 128, 2,048 tokens" in protocols and "seqlen 256, 16,384 tokens" in protocols
    drifted = add(26.31)
    (dense,) = runs.fairness_notes([*same, drifted])
    assert f"#{same[0].id}: 25.35" in dense and f"#{drifted.id}: 26.31" in dense


def test_widget_values_name_the_run_size_and_recipe():
    thorough = forms.RUN_SIZES["thorough"]
    preset = RunConfig.create("perp-masklora", method="sparsegpt", sparsity=0.6, lr=1e-3, **thorough).to_dict()
    values = forms.widget_values(preset)
    assert (values["exp_recipe"], values["exp_size"], values["exp_lr_perp-masklora"]) == (
        "perp-masklora", "thorough", 1e-3)
    assert {field: values[key] for field, key in forms.SIZE_KEYS.items()} == thorough
    assert "exp_mode" not in values
    values = forms.widget_values({**preset, "steps": 7, "seqlen": 64})  # a custom size: the fields keep its values
    assert (values["exp_size"], values["exp_steps"], values["exp_seqlen"]) == (forms.DEFAULT_SIZE, 7, 64)
    custom = RunConfig.create(None, mode="reconstruct", train=("norms",), adapter="lora", rank=4, eval_tokens=1000).to_dict()
    values = forms.widget_values(custom)
    assert (values["exp_recipe"], values["exp_mode"], values["exp_train"], values["exp_adapter"], values["exp_rank"]) == (
        forms.CUSTOM, "reconstruct", ["norms"], "lora", 4)
    assert (values["exp_size"], values["exp_eval_tokens"]) == (forms.DEFAULT_SIZE, 1000)


def test_zero_shot_choices_reach_the_config_and_come_back():
    assert forms.ExperimentForm().to_config().zero_shot == ()  # off by default
    form = forms.ExperimentForm(zero_shot=["paper"], zero_shot_limit=0, zero_shot_on=["pruned", "final"])
    config = form.to_config()
    assert config.zero_shot == ZERO_SHOT_TASKS and config.zero_shot_limit == 0
    assert config.zero_shot_on == ("pruned", "final")
    values = forms.widget_values(config.to_dict())
    assert (values["exp_zs_tasks"], values["exp_zs_all"], values["exp_zs_on"]) == (["paper"], True, ["pruned", "final"])
    assert "exp_zs_limit" not in values  # 'all': the count field keeps what it had
    two = forms.ExperimentForm(zero_shot=["arc_easy", "rte"], zero_shot_limit=25).to_config()
    assert (two.zero_shot, two.zero_shot_limit, two.zero_shot_on) == (("rte", "arc_easy"), 25, ZERO_SHOT_MODELS)
    values = forms.widget_values(two.to_dict())
    assert (values["exp_zs_tasks"], values["exp_zs_limit"], values["exp_zs_all"]) == (["rte", "arc_easy"], 25, False)
    assert forms.widget_values(RunConfig().to_dict())["exp_zs_tasks"] == []  # a run without tasks clears them
    with pytest.raises(PerpError, match="zero_shot_on"):
        forms.ExperimentForm(zero_shot=["rte"], zero_shot_on=[]).to_config()
    assert [forms.task_choice_label(c) for c in forms.ZERO_SHOT_CHOICES[:3]] == [
        "all seven (paper)", "BoolQ (validation)", "RTE (validation)"]


def test_size_caption_follows_the_fields():
    assert forms.size_caption("quick", 4096, 16) == "Quick: 4,096 evaluation tokens, 16 calibration sequences."
    assert forms.size_caption("quick", 512, 8).startswith("Custom size: 512 evaluation tokens, 8 calibration "
                                                          "sequences (Quick is 4,096 evaluation tokens, 16 calibration "
                                                          "sequences)")
    demo = forms.RUN_SIZES["demo"]
    assert forms.size_caption("demo", **demo) == (f"Demo: {demo['eval_tokens']:,} evaluation tokens, "
                                                  f"{demo['calib_samples']} calibration sequences of {demo['seqlen']} "
                                                  f"tokens, {demo['steps']} training steps.")
    longer = forms.size_caption("demo", **{**demo, "steps": demo["steps"] + 1})
    assert longer.startswith("Custom size:") and f"{demo['steps'] + 1} training steps (Demo is" in longer
    assert forms.size_caption("demo", **{**demo, "steps": None}).startswith("Demo:")  # prune only: steps not counted


def test_the_first_run_is_a_demo_that_says_what_it_gives_up():
    assert forms.DEFAULT_SIZE == "demo"
    config = forms.ExperimentForm().to_config()
    demo = forms.RUN_SIZES["demo"]
    assert {k: getattr(config, k) for k in demo} == demo  # every field the size sets, steps included
    assert forms.size_of(config.to_dict()) == "demo"
    for smaller in ("eval_tokens", "calib_samples", "seqlen", "steps"):
        assert demo[smaller] < forms.RUN_SIZES["quick"][smaller]
    assert all(word in forms.SIZE_HELP["demo"] for word in ("70 s on 2 quiet CPU cores", "gives up", "evaluation tokens", "calibration"))


def test_a_run_size_sets_steps_only_where_the_recipe_trains():
    assert forms.ExperimentForm(recipe="none").to_config().steps == RunConfig.steps  # untouched: same config key
    prune_only = forms.ExperimentForm(recipe="none", size="demo").to_config().to_dict()
    assert forms.size_of(prune_only) == "demo"
    assert forms.ExperimentForm(size="quick").to_config().steps == forms.RUN_SIZES["quick"]["steps"]
    assert forms.ExperimentForm(size="demo", steps=7).to_config().steps == 7
    assert forms.size_of(forms.ExperimentForm(size="demo", steps=7).to_config().to_dict()) is None
    assert forms.size_values("quick") == {forms.SIZE_KEYS[k]: v for k, v in forms.RUN_SIZES["quick"].items()}


@pytest.mark.parametrize("field, hint", [("seqlen", "Change **Sequence length** (under Run size and advanced settings)."),
                                         ("rank", "Change **Adapter rank**."),
                                         ("dsnot_max_cycles", "Change DSnoT's **max cycles** (under Run size and "
                                                              "advanced settings)."),
                                         ("percdamp", None)])
def test_a_refusal_says_which_input_to_change(field, hint):
    assert forms.field_hint(field) == hint


@pytest.mark.parametrize("axes, name", [
    ({"methods": ["magnitude"], "sparsities": [0.5], "recipes": ["none", "perp"]}, "magnitude 50% x {none, perp}"),
    ({"methods": ["magnitude", "wanda"], "sparsities": [0.7, 0.3], "recipes": ["perp"], "seeds": [0, 1]},
     "{magnitude, wanda} {30%, 70%} x perp x seeds {0, 1}"),
    ({"methods": ["wanda"], "sparsities": [0.3], "recipes": ["none", "perp"], "pattern": "2:4"}, "wanda 2:4 x {none, perp}"),
])
def test_sweeps_are_named_by_what_varies(axes, name):
    assert forms.sweep_name(**axes) == name
    assert forms.sweep_spec(name="", fixed={}, **{"seeds": [0], **axes}).name == name


@pytest.mark.parametrize("seconds, text", [(4.4, "4 s"), (89, "89 s"), (210, "3.5 min"), (9000, "2.5 h")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def running(store, preset="perp", stage=None, fraction=0.0):
    run_id = store.create_run(RunConfig.create(preset))
    store.start_run(run_id)
    if stage:
        store.progress(run_id, stage, fraction, f"{stage} at {fraction}")
    return store.get_run(run_id)


def test_stage_bars_while_running(store):
    bars = progress_view.stage_bars(running(store, stage="prune", fraction=0.25))
    assert [b.stage for b in bars] == ["load", "data", "dense_eval", "prune", "pruned_eval", "train", "final_eval"]
    assert [b.state for b in bars] == ["done"] * 3 + ["active"] + ["waiting"] * 3
    assert bars[3].value == 0.25 and "prune at 0.25" in bars[3].text


def test_stage_bars_prune_only_done_and_failed(store):
    config = RunConfig.create("none")
    result = made_up(config, 10.0, 20.0)
    result.timings = {"load": 1.5, "prune": 3.0}
    result.reused = ["dense_ppl"]
    done = progress_view.stage_bars(store.get_run(record(store, config, result)))
    assert [b.stage for b in done] == ["load", "data", "dense_eval", "prune", "pruned_eval"]
    assert all(b.value == 1.0 for b in done)
    assert "in 1.5 s" in done[0].text and "reused" in done[2].text
    row = running(store, stage="train", fraction=0.5)
    store.fail_run(row.id, "boom")
    failed = progress_view.stage_bars(store.get_run(row.id))
    assert failed[5].state == "stopped" and failed[6].state == "waiting"
    assert progress_view.stage_title("train", {"mode": "reconstruct"}) == "Reconstruct block by block"


def test_overall_fraction_and_remaining_time(store):
    row = running(store, preset="none", stage="dense_eval", fraction=0.5)
    assert progress_view.overall_fraction(row) == pytest.approx(2.5 / 5)
    weights = {"load": 10, "data": 0, "dense_eval": 20, "prune": 50, "pruned_eval": 20}
    assert progress_view.overall_fraction(row, weights) == pytest.approx(20 / 100)
    started = row.stage_started_at
    # half of dense_eval took 30 s: its pace says 30 s more, then the estimates of the stages not started
    assert progress_view.remaining_seconds(row, weights, now=started + 30) == pytest.approx(30 + 50 + 20)
    queued = store.get_run(store.create_run(RunConfig.create("none")))
    assert progress_view.remaining_seconds(queued, weights) is None
    assert math.isclose(progress_view.overall_fraction(queued), 0.0)


def test_remaining_time_counts_down_while_a_stage_reports_nothing(store):
    row = running(store, preset="none", stage="prune", fraction=0.0)
    weights = {"prune": 60, "pruned_eval": 20}
    left = [progress_view.remaining_seconds(row, weights, now=row.stage_started_at + t) for t in (0, 10, 30, 90)]
    assert left == pytest.approx([80, 70, 50, 20])  # never stuck at one number; the stage's estimate floors at 0


def test_stage_bars_show_the_durations_of_finished_stages_and_no_contradicting_percentage(store):
    run_id = store.create_run(RunConfig.create("perp"))
    store.start_run(run_id)
    for stage in ("load", "data", "dense_eval"):
        store.progress(run_id, stage, 0.0)
    store.progress(run_id, "prune", 0.54, "block 19/30 pruned")
    row = store.get_run(run_id)
    bars = progress_view.stage_bars(row)
    assert all(" in " in b.text and b.text.endswith(" s") for b in bars[:3])  # load, data, dense_eval: done in x s
    assert bars[3].text == "Prune: block 19/30 pruned" and bars[3].value == 0.54  # no "54%" beside "19/30"
    assert progress_view.current_step(row) == "Prune: block 19/30 pruned"
    store.progress(run_id, "prune", 0.9, "layer errors")
    assert progress_view.stage_bars(store.get_run(run_id))[3].text == "Prune: 90% · layer errors"
    store.fail_run(run_id, "boom")
    assert progress_view.current_step(store.get_run(run_id)) == "failed during Prune"
