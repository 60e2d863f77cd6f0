"""Every page through Streamlit's AppTest: it renders on an empty store and on a store seeded with runs of a tiny
model, the Experiment and Sweep pages queue what the widgets say, and Sweep runs a grid through Ray."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from app_fixtures import FAILURE, SEEDED, seed_store
from fixtures_tiny import save_tiny_model, tiny_model_dir, tiny_text_file, write_tiny_text  # noqa: F401  (pytest fixtures)
from streamlit.testing.v1 import AppTest

from perp_engine.jobs import LocalExecutor
from perp_engine.store import RunStore

MAIN = Path(__file__).resolve().parents[1] / "app" / "main.py"
PAGES = ("experiment", "compare", "layers", "sweep", "paper", "about")
TIMEOUT = 60


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, tiny_model_dir, tiny_text_file):  # noqa: F811
    path = tmp_path_factory.mktemp("seeded") / "runs.sqlite"
    return path, seed_store(path, tiny_model_dir, tiny_text_file)


@pytest.fixture
def no_workers(monkeypatch):
    """Queue runs without starting worker processes (the browser test runs them for real)."""
    monkeypatch.setattr(LocalExecutor, "ensure_workers", lambda self: [])


def open_page(page: str, store_path: Path, monkeypatch, **session) -> AppTest:
    monkeypatch.setenv("PERP_STORE", str(store_path))
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    if page != "experiment":
        at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in at.get(kind))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_an_empty_store(page, tmp_path, monkeypatch):
    at = open_page(page, tmp_path / "runs.sqlite", monkeypatch)
    assert at.title[0].value
    assert not at.error
    if page in ("compare", "layers"):
        assert "No runs yet" in texts(at, "alert_info") or "No runs yet" in texts(at, "info")
        assert not at.get("plotly_chart")


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_a_seeded_store(page, seeded, monkeypatch, no_workers):
    at = open_page(page, seeded[0], monkeypatch)
    assert at.title[0].value
    if page in ("compare", "layers"):
        assert at.get("plotly_chart")


def test_about_explains_the_four_adapters(tmp_path, monkeypatch):
    at = open_page("about", tmp_path / "runs.sqlite", monkeypatch)
    shown = texts(at, "markdown")
    assert all(f"**{name}**" in shown for name in ("LoRA", "LoRAPrune", "MaskLoRA", "ScaleLoRA"))
    assert len(at.latex) == 5


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
    assert at.multiselect(key="layers_runs").value == [ids["recon"], ids["perp"]]
    heatmap = at.get("plotly_chart")[0].proto.spec
    assert f"#{ids['recon']} " in heatmap and "after retraining" in heatmap


def test_experiment_shows_the_estimate_before_launching(tmp_path, monkeypatch):
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Trainable parameters"].replace(",", "")) > 0
    assert metrics["Estimated time"].endswith(("s", "min", "h"))
    assert "CPU" in texts(at, "caption")


def test_experiment_queues_a_job_with_the_chosen_config(tmp_path, monkeypatch, no_workers, tiny_model_dir, tiny_text_file):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = open_page("experiment", store_path, monkeypatch, exp_model=str(tiny_model_dir), exp_dataset=str(tiny_text_file))
    at.segmented_control(key="exp_method").set_value("sparsegpt")
    at.slider(key="exp_sparsity").set_value(0.6)
    at.selectbox(key="exp_recipe").set_value("perp-scalelora").run()
    at.number_input(key="exp_steps").set_value(7)
    at.number_input(key="exp_seqlen").set_value(32)
    at.number_input(key="exp_eval_tokens_quick").set_value(512).run()
    assert not at.error, [e.value for e in at.error]
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception
    (row,) = RunStore(store_path).list_runs()
    assert row.status == "queued"
    assert row.config["model"] == str(tiny_model_dir) and row.config["dataset"] == str(tiny_text_file)
    assert (row.config["method"], row.config["sparsity"], row.config["preset"]) == ("sparsegpt", 0.6, "perp-scalelora")
    assert (row.config["adapter"], row.config["steps"], row.config["seqlen"], row.config["eval_tokens"]) == ("scalelora", 7, 32, 512)
    assert "Queued" in texts(at, "caption")
    assert at.session_state["launched_runs"] == [row.id]


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
    at = open_page("experiment", path, monkeypatch, launched_runs=[ids["failed"], ids["perp"]])
    assert FAILURE in texts(at, "error")
    assert "Retrained" in [m.label for m in at.metric]


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
    assert "**4 runs**" in texts(at, "markdown")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    assert not at.exception
    store = RunStore(store_path)
    (sweep,) = store.list_sweeps()
    assert (sweep["name"], sweep["runs"]) == ("teaching demo", 4)
    configs = [r.config for r in store.sweep_runs(sweep["id"])]
    assert sorted((c["method"], c["sparsity"]) for c in configs) == [
        ("magnitude", 0.3), ("magnitude", 0.6), ("wanda", 0.3), ("wanda", 0.6)]
    assert at.get("progress")[0].proto.text.startswith("0 of 4 finished")


def test_sweep_runs_through_ray(tmp_path, monkeypatch, ray_local):
    monkeypatch.setenv("PERP_EXECUTOR", "ray")
    store_path = tmp_path / "runs.sqlite"
    model_dir = save_tiny_model(tmp_path / "model", context=256)  # the page's windows are 256 tokens, 16 of them
    text = write_tiny_text(tmp_path / "text.txt", n_paragraphs=400)
    at = open_page("sweep", store_path, monkeypatch, sw_model=str(model_dir), sw_dataset=str(text))
    assert "Executor: **Ray cluster (local): 1 node(s), 2 CPUs" in texts(at, "caption")
    at.multiselect(key="sw_methods").set_value(["magnitude"])
    at.multiselect(key="sw_sparsities").set_value([0.3, 0.6])
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
