"""The Sweep page through Streamlit's AppTest: a teaching-sized default grid, and settings that a reload (a fresh
session opening the page address the page wrote) brings back."""

from __future__ import annotations

from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from test_app_pages import no_workers, open_page, texts  # noqa: F401  (no_workers: a pytest fixture)

from app import forms
from perp_engine.config import RunConfig
from perp_engine.store import RunStore


def test_the_default_sweep_is_teaching_sized(tmp_path, monkeypatch):
    at = open_page("sweep", tmp_path / "runs.sqlite", monkeypatch)
    assert at.multiselect(key="sw_methods").value == ["magnitude", "wanda"]
    assert at.multiselect(key="sw_sparsities").value == [0.5, 0.7]
    assert at.multiselect(key="sw_recipes").value == ["none", "perp"]
    assert at.segmented_control(key="sw_size").value == forms.DEFAULT_SIZE
    steps = at.number_input(key=f"sw_steps_{forms.DEFAULT_SIZE}").value
    assert steps == forms.RUN_SIZES[forms.DEFAULT_SIZE]["steps"]  # the size's own fields, steps included
    assert "**8 runs**" in texts(at, "markdown") and "teaching-sized" in texts(at, "caption")
    assert f"{steps:,} training steps" in texts(at, "caption")


def test_the_sweep_settings_come_back_from_the_page_address(tmp_path, monkeypatch, no_workers,  # noqa: F811
                                                            tiny_model_dir, tiny_text_file):  # noqa: F811
    address = {"model": str(tiny_model_dir), "text": str(tiny_text_file), "sw_methods": ["wanda", "sparsegpt"],
               "sw_sparsities": ["60%"], "sw_recipes": ["none", "perp"], "sw_size": "Quick", "sw_seqlen_quick": "64",
               "sw_steps_quick": "5",
               "sw_name": "from the address"}
    store_path = tmp_path / "runs.sqlite"
    at = open_page("sweep", store_path, monkeypatch, query=address)
    assert (at.selectbox(key="sw_model").value, at.selectbox(key="sw_dataset").value) == (str(tiny_model_dir),
                                                                                          str(tiny_text_file))
    assert at.multiselect(key="sw_methods").value == ["wanda", "sparsegpt"]
    assert at.multiselect(key="sw_sparsities").value == [0.6]
    assert at.segmented_control(key="sw_size").value == "quick"
    assert (at.number_input(key="sw_seqlen_quick").value, at.number_input(key="sw_steps_quick").value) == (64, 5)
    assert "**4 runs**" in texts(at, "markdown")
    assert dict(at.query_params)["model"] == str(tiny_model_dir)  # written as it is, for the next reload
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    (sweep,) = RunStore(store_path).list_sweeps()
    configs = [r.config for r in RunStore(store_path).sweep_runs(sweep["id"])]
    assert sweep["name"] == "from the address"
    assert {(c["model"], c["dataset"], c["seqlen"], c["steps"]) for c in configs} == {
        (str(tiny_model_dir), str(tiny_text_file), 64, 5)}


def test_the_watched_sweep_comes_back_from_the_page_address(tmp_path, monkeypatch, no_workers):  # noqa: F811
    """(no_workers: the queued runs of the embedded model must not start a detached worker that outlives the
    test.)"""
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:
        first = store.create_sweep("first", {"sparsity": [0.3]}, [store.create_run(RunConfig.create("none"))])
        second = store.create_sweep("second", {"sparsity": [0.5]}, [store.create_run(RunConfig.create("none"))])
    assert open_page("sweep", store_path, monkeypatch).selectbox(key="sw_watch").value == second  # the newest
    at = open_page("sweep", store_path, monkeypatch, query={"sweep": str(first)})
    assert at.selectbox(key="sw_watch").value == first
    assert dict(at.query_params)["sweep"] == str(first)
