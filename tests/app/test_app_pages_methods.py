"""OWL, RIA and DSnoT on the pages, through Streamlit's AppTest: Experiment queues what its new controls say and
shows the config's one-line error for a combination it refuses; Sweep varies allocation and refinement and says
which points it skips; Layers draws each block's sparsity with OWL's note; Compare filters by the method label;
Inside a layer compares five masks; About explains the three methods."""

from __future__ import annotations

import json

import pytest
from app_fixtures import layer_errors, made_up, record
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from test_app_inside_layer import page  # noqa: F401  (pytest fixture)
from test_app_pages import no_workers, open_page, texts  # noqa: F401  (pytest fixture)

from app import forms
from perp_engine.config import RunConfig
from perp_engine.store import RunStore


def launch(at):
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def experiment(tmp_path, monkeypatch, no_workers, tiny_model_dir, tiny_text_file):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = open_page("experiment", store_path, monkeypatch, exp_model=str(tiny_model_dir),
                   exp_dataset=str(tiny_text_file))
    at.number_input(key="exp_seqlen").set_value(32).run()
    return at, store_path


def test_experiment_queues_ria_with_owl(experiment):
    at, store_path = experiment
    assert at.segmented_control(key="exp_allocation").value == "uniform"
    assert at.segmented_control(key="exp_refine").value == "none"
    assert not [n for n in at.number_input if n.key in ("exp_owl_m", "exp_owl_lambda")]
    assert at.number_input(key="exp_ria_power").disabled  # RIA's knob waits for method ria
    at.segmented_control(key="exp_method").set_value("ria")
    at.slider(key="exp_sparsity").set_value(0.6)
    at.segmented_control(key="exp_allocation").set_value("owl").run()
    assert not at.number_input(key="exp_ria_power").disabled
    at.number_input(key="exp_owl_lambda").set_value(0.1)
    at.number_input(key="exp_ria_power").set_value(1.0).run()
    assert not at.error, [e.value for e in at.error]
    launch(at)
    (row,) = RunStore(store_path).list_runs()
    assert (row.config["method"], row.config["sparsity"], row.config["allocation"]) == ("ria", 0.6, "owl")
    assert (row.config["owl_m"], row.config["owl_lambda"], row.config["ria_power"]) == (RunConfig.owl_m, 0.1, 1.0)
    assert row.config["refine"] == "none" and row.config["ria_permute"] == "none"


def test_experiment_shows_the_configs_error_for_a_lambda_too_wide(experiment):
    at, _ = experiment
    at.segmented_control(key="exp_allocation").set_value("owl").run()
    at.number_input(key="exp_owl_lambda").set_value(0.3).run()
    (error,) = [str(e.value) for e in at.error]
    with pytest.raises(Exception) as refused:
        RunConfig(allocation="owl", owl_lambda=0.3)
    assert error == str(refused.value) and error.startswith("owl_lambda: 0.3 with sparsity 0.5 is not allowed")
    assert next(b for b in at.button if b.label == "Launch").disabled


def test_experiment_nm_fixes_the_allocation_and_offers_rias_permutation(experiment):
    at, store_path = experiment
    at.segmented_control(key="exp_allocation").set_value("owl").run()  # kept for when the pattern changes back
    at.segmented_control(key="exp_method").set_value("ria")
    at.segmented_control(key="exp_pattern").set_value("2:4").run()
    fixed = at.segmented_control(key="exp_allocation_2:4")
    assert fixed.disabled and fixed.value == "uniform"
    assert forms.NM_ALLOCATION in texts(at, "caption")
    assert not [n for n in at.number_input if n.key == "exp_owl_m"]
    at.segmented_control(key="exp_ria_permute").set_value("lsa")
    at.segmented_control(key="exp_refine").set_value("dsnot").run()
    assert not at.error, [e.value for e in at.error]
    launch(at)
    (row,) = RunStore(store_path).list_runs()
    assert (row.config["method"], row.config["pattern"], row.config["ria_permute"]) == ("ria", "2:4", "lsa")
    assert (row.config["allocation"], row.config["refine"]) == ("uniform", "dsnot")
    at.segmented_control(key="exp_method").set_value("wanda").run()  # the permutation is RIA's alone
    assert not [c for c in at.get("button_group") if c.key == "exp_ria_permute"]
    at.segmented_control(key="exp_pattern").set_value("unstructured").run()
    assert at.segmented_control(key="exp_allocation").value == "owl"


def test_experiment_offers_dsnots_knobs_with_dsnot(experiment):
    at, store_path = experiment
    assert not [n for n in at.number_input if n.key == "exp_dsnot_max_cycles"]
    at.segmented_control(key="exp_refine").set_value("dsnot").run()
    assert at.number_input(key="exp_dsnot_max_cycles").value == RunConfig.dsnot_max_cycles
    at.number_input(key="exp_dsnot_max_cycles").set_value(20)
    at.selectbox(key="exp_dsnot_skip_layer").set_value("no_skip").run()
    launch(at)
    (row,) = RunStore(store_path).list_runs()
    assert (row.config["refine"], row.config["dsnot_max_cycles"], row.config["dsnot_skip_layer"]) == (
        "dsnot", 20, "no_skip")
    assert "wanda + DSnoT (skip_layer no_skip, max_cycles 20)" in texts(at, "markdown")  # the run card's label


def sweep_at_2_4(tmp_path, monkeypatch, **choices):
    """The Sweep page at pattern 2:4, no repair, with ``choices`` in its multiselects (by key)."""
    at = open_page("sweep", tmp_path / "runs.sqlite", monkeypatch)
    at.multiselect(key="sw_recipes").set_value(["none"])
    for key, values in choices.items():
        at.multiselect(key=key).set_value(values)
    return at.segmented_control(key="sw_pattern").set_value("2:4").run()


def test_sweep_varies_allocation_and_refinement_and_says_what_it_skips(tmp_path, monkeypatch, no_workers):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = sweep_at_2_4(tmp_path, monkeypatch, sw_methods=["wanda"], sw_allocations=["uniform", "owl"],
                      sw_refines=["none", "dsnot"])
    assert not at.exception and "**2 runs**" in texts(at, "markdown")
    assert "2 of 4 runs skipped (allocation owl): allocation: 'owl' gives every block" in texts(at, "caption")
    assert at.text_input(key="sw_name").proto.placeholder.startswith("wanda + {uniform, owl} + {none, dsnot} 2:4")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    (sweep,) = RunStore(store_path).list_sweeps()
    configs = [r.config for r in RunStore(store_path).sweep_runs(sweep["id"])]
    assert sorted((c["allocation"], c["refine"]) for c in configs) == [("uniform", "dsnot"), ("uniform", "none")]
    at.multiselect(key="sw_allocations").set_value(["owl"]).run()
    assert "no combination of these choices can run: allocation: 'owl'" in texts(at, "warning")
    assert not [b for b in at.button if b.label == "Launch sweep"]


def test_experiment_queues_true_sequential_pruning(experiment):
    at, store_path = experiment
    assert at.segmented_control(key="exp_sequential").value == "block"
    at.segmented_control(key="exp_method").set_value("sparsegpt")
    at.segmented_control(key="exp_sequential").set_value("layer").run()
    launch(at)
    (row,) = RunStore(store_path).list_runs()
    assert (row.config["method"], row.config["sequential"]) == ("sparsegpt", "layer")
    assert "sparsegpt, true-sequential" in texts(at, "markdown")  # the run card's label
    assert forms.widget_values(row.config)["exp_sequential"] == "layer"  # "open its settings" restores it


def test_sweep_compares_the_two_orders_in_a_block(tmp_path, monkeypatch, no_workers):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = sweep_at_2_4(tmp_path, monkeypatch, sw_methods=["sparsegpt"], sw_sequentials=["block", "layer"])
    assert at.text_input(key="sw_name").proto.placeholder.startswith("sparsegpt + {block, layer} 2:4")
    next(b for b in at.button if b.label == "Launch sweep").click().run()
    (sweep,) = RunStore(store_path).list_sweeps()
    assert sorted(r.config["sequential"] for r in RunStore(store_path).sweep_runs(sweep["id"])) == ["block", "layer"]


@pytest.fixture
def owl_store(tmp_path):
    """A made-up OWL run (blocks 0-3 at 45, 48, 52, 55%) and a uniform one, with per-layer records."""
    path = tmp_path / "runs.sqlite"
    ids = {}
    with RunStore(path) as store:
        for name, allocation, targets, shares in (("owl", "owl", [0.45, 0.48, 0.52, 0.55], [4.0, 3.0, 2.0, 1.0]),
                                                  ("uniform", "uniform", [0.5] * 4, [])):
            config = RunConfig.create("none", allocation=allocation)
            result = made_up(config, 25.0, 60.0).to_dict()
            result["layers"], result["blocks"] = layer_errors(after=False)
            for rec in result["layers"]:
                rec["sparsity"] = targets[rec["block"]]
            result["block_sparsity"], result["outlier_share"] = targets, shares
            ids[name] = record(store, config, result)
    return path, ids


def test_layers_draws_each_blocks_sparsity_and_what_owl_did(owl_store, monkeypatch):
    path, ids = owl_store
    at = open_page("layers", path, monkeypatch, selected_runs=[ids["owl"], ids["uniform"]])
    drawn = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    blocks = drawn["Sparsity per block: the allocation's target and what was pruned"]
    traces = {t["name"]: t for t in blocks["data"]}
    owl = f"#{ids['owl']} wanda + OWL 50% · prune only"
    assert traces[f"{owl} · target (owl)"]["y"] == [0.45, 0.48, 0.52, 0.55]
    assert traces[f"{owl} · achieved"]["y"] == pytest.approx([0.45, 0.48, 0.52, 0.55])
    assert traces[f"{owl} · outlier share"]["y"] == [4.0, 3.0, 2.0, 1.0]
    assert f"#{ids['uniform']} wanda 50% · prune only · target (uniform)" in traces
    captions = texts(at, "caption")
    assert f"{owl}: OWL pruned block 0 (4.00% outliers, the most) to 45.0%" in captions
    assert "average 50.0%, the target 50.0%" in captions and "blocks with more outliers are pruned less" in captions


def test_compare_filters_by_the_method_label(owl_store, monkeypatch):
    path, ids = owl_store
    at = open_page("compare", path, monkeypatch)
    assert at.multiselect(key="cmp_method").options == ["wanda", "wanda + OWL"]
    at.multiselect(key="cmp_method").set_value(["wanda + OWL"]).run()
    assert list(at.dataframe[0].value["id"]) == [ids["owl"]]
    assert list(at.dataframe[0].value["pruning"]) == ["wanda + OWL 50%"]


def test_inside_layer_compares_five_masks_and_says_where_dsnot_works(page):  # noqa: F811
    masks = next(json.loads(c.proto.spec) for c in page.get("plotly_chart")
                 if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("Which weights each method keeps"))
    assert [t["name"] for t in masks["data"]] == ["Magnitude", "Wanda", "SparseGPT", "RIA", "Wanda + DSnoT"]
    assert "refines only the attention linears by default" in texts(page, "caption")
    assert "of Wanda's pruned weights for kept ones" in texts(page, "caption")
    page.selectbox(key="inside_adapter_method").set_value("wanda+dsnot").run()
    next(b for b in page.button if b.label == "Train the adapters").click().run()  # adapters train on request only
    assert not page.exception
    assert any("pruned by Wanda + DSnoT" in c.proto.spec for c in page.get("plotly_chart"))


def test_about_explains_owl_ria_and_dsnot(tmp_path, monkeypatch):
    at = open_page("about", tmp_path / "runs.sqlite", monkeypatch)
    shown = texts(at, "markdown")
    for name, cited, cost in (("**OWL**", "ICML 2024, arXiv:2310.05175", "one more pass over the dense blocks"),
                              ("**RIA**", "ICLR 2024, OpenReview", "linear sum assignment"),
                              ("**DSnoT**", "ICLR 2024, arXiv:2310.08915", "up to 50 such swap cycles per row")):
        assert name in shown and cited in shown and cost in shown
    assert "**Sparsity per block (Layers).**" in shown
