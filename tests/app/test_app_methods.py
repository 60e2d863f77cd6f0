"""OWL, RIA and DSnoT in the app's plain helpers: the Experiment form and the Sweep grid reach RunConfig (and say
why a combination cannot run), run labels tell the variants apart, Compare draws them as their own lines, and
Layers draws each block's target and achieved sparsity with OWL's outlier shares."""

from __future__ import annotations

import dataclasses

import pytest
from app_fixtures import made_up, record

from app import figures, forms, runs
from app import layer_figures as lf
from perp_engine.config import ALLOCATIONS, DSNOT_SKIP_LAYERS, METHODS, REFINES, RIA_PERMUTATIONS, RunConfig
from perp_engine.errors import PerpError
from perp_engine.store import RunStore


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def test_every_choice_has_its_help():
    assert list(forms.METHOD_HELP) == list(METHODS) and list(forms.ALLOCATION_HELP) == list(ALLOCATIONS)
    assert list(forms.REFINE_HELP) == list(REFINES) and list(forms.RIA_PERMUTE_HELP) == list(RIA_PERMUTATIONS)
    assert forms.help_text({"a": "one", "b": "two"}) == "a: one · b: two"


def test_the_form_carries_ria_owl_and_dsnot_to_the_config():
    config = forms.ExperimentForm(method="ria", sparsity=0.7, allocation="owl", owl_m=7.0, owl_lambda=0.1,
                                  refine="dsnot", ria_power=1.0).to_config()
    assert (config.method, config.sparsity, config.allocation, config.refine) == ("ria", 0.7, "owl", "dsnot")
    assert (config.owl_m, config.owl_lambda, config.ria_power, config.ria_permute) == (7.0, 0.1, 1.0, "none")
    permuted = forms.ExperimentForm(method="ria", pattern="2:4", ria_permute="lsa").to_config()
    assert (permuted.pattern, permuted.sparsity, permuted.ria_permute) == ("2:4", 0.5, "lsa")


def test_knobs_of_an_unused_choice_do_not_reach_the_config():
    """OWL's M and lambda without OWL, RIA's power and permutation without RIA: left at their defaults, so the
    run's settings (and its cached pruned model) are those of a plain run."""
    config = forms.ExperimentForm(method="wanda", allocation="uniform", owl_m=9.0, owl_lambda=0.2, ria_power=2.0,
                                  ria_permute="lsa").to_config()
    assert config.prune_settings == forms.ExperimentForm(method="wanda").to_config().prune_settings


@pytest.mark.parametrize("change, field", [
    ({"allocation": "owl", "pattern": "2:4"}, "allocation"),  # N:M fixes every block at N/M
    ({"allocation": "owl", "sparsity": 0.5, "owl_lambda": 0.3}, "owl_lambda"),  # 2 lambda > min(s, 1 - s)
    ({"allocation": "owl", "sparsity": 0.9}, "owl_lambda"),  # the default 0.08 at 90%
    ({"method": "ria", "ria_power": -1.0}, "ria_power"),
    ({"method": "ria", "ria_permute": "lsa"}, "ria_permute"),  # unstructured: nothing to permute
])
def test_combinations_the_config_refuses_name_their_field(change, field):
    with pytest.raises(PerpError) as err:
        forms.ExperimentForm(**change).to_config()
    assert err.value.field == field


def test_what_the_page_shows_follows_the_pattern_and_method():
    assert forms.allows_allocation("unstructured") and not forms.allows_allocation("2:4")
    assert forms.ria_permutes("ria", "4:8") and not forms.ria_permutes("ria", "unstructured")
    assert not forms.ria_permutes("wanda", "2:4")


def test_a_run_with_the_new_choices_loads_back_into_the_form():
    config = RunConfig.create("none", method="ria", pattern="2:4", ria_permute="reallocation", refine="dsnot",
                              ria_power=0.25)
    values = forms.widget_values(config.to_dict())
    assert (values["exp_method"], values["exp_ria_permute"], values["exp_refine"], values["exp_ria_power"]) == (
        "ria", "reallocation", "dsnot", 0.25)
    owl = forms.widget_values(RunConfig.create("none", allocation="owl", owl_lambda=0.05, sparsity=0.6).to_dict())
    assert (owl["exp_allocation"], owl["exp_owl_lambda"], owl["exp_owl_m"]) == ("owl", 0.05, RunConfig.owl_m)
    old = {k: v for k, v in RunConfig().to_dict().items() if k not in ("allocation", "refine", "ria_permute")}
    assert forms.widget_values(old)["exp_allocation"] == "uniform"  # a run stored before the fields existed


@dataclasses.dataclass
class _Knobs:
    dsnot_cycles: int = 50
    dsnot_threshold: float = 0.1
    dsnot_flag: bool = False
    dsnot_note: str = "free text"


def test_knob_kinds_follow_the_field_types_and_the_configs_choices():
    kinds = {f.name: forms.knob_kind(f) for f in dataclasses.fields(_Knobs)}
    assert kinds == {"dsnot_cycles": "int", "dsnot_threshold": "float", "dsnot_flag": "toggle", "dsnot_note": "text"}
    knobs = {f.name: f for f in forms.dsnot_fields()}
    assert knobs and all(name.startswith("dsnot_") for name in knobs)
    for f in knobs.values():  # every DSnoT knob gets an input that starts at its default
        kind = forms.knob_kind(f)
        assert kind != "text" and (kind != "choice" or f.default in forms.knob_choices(f))
    assert forms.knob_choices(knobs["dsnot_skip_layer"]) == DSNOT_SKIP_LAYERS


def test_the_sweep_crosses_allocations_and_refinements():
    spec = forms.sweep_spec(name="", fixed={}, methods=["wanda", "ria"], sparsities=[0.6], recipes=["none"],
                            allocations=["uniform", "owl"], refines=["none", "dsnot"])
    configs, skipped = forms.sweep_configs(spec)
    assert not skipped and len(configs) == 8
    assert {(c.method, c.allocation, c.refine) for c in configs} == {
        (m, a, r) for m in ("wanda", "ria") for a in ("uniform", "owl") for r in ("none", "dsnot")}
    assert spec.name == "{wanda, ria} + {uniform, owl} + {none, dsnot} 60% x none"
    assert forms.sweep_name(["wanda"], [0.5], ["perp"], allocations=["owl"]) == "wanda + owl 50% x perp"


def test_the_sweep_sets_aside_what_the_config_refuses_and_says_why():
    spec = forms.sweep_spec(name="", fixed={}, methods=["wanda"], sparsities=[], recipes=["none", "perp"],
                            allocations=["uniform", "owl"], pattern="2:4")
    configs, skipped = forms.sweep_configs(spec)
    assert {(c.allocation, c.pattern) for c in configs} == {("uniform", "2:4")} and len(configs) == 2
    (line,) = skipped
    reason = str(pytest.raises(PerpError, RunConfig, allocation="owl", pattern="2:4").value)
    assert line == f"2 of 4 runs skipped (allocation owl): {reason}"
    lambdas = forms.sweep_spec(name="", fixed={}, methods=["wanda"], sparsities=[0.1, 0.5, 0.9], recipes=["none"],
                               allocations=["uniform", "owl"])
    configs, skipped = forms.sweep_configs(lambdas)
    assert len(configs) == 4 and len(skipped) == 2  # OWL's default lambda leaves no room at 10% and at 90%
    assert skipped[0].startswith("1 of 6 runs skipped (allocation owl, sparsity 0.1): owl_lambda: ")


def test_a_sweep_where_nothing_can_run_says_the_configs_reason():
    spec = forms.sweep_spec(name="", fixed={}, methods=["wanda", "ria"], sparsities=[], recipes=["none"],
                            allocations=["owl"], pattern="4:8")
    with pytest.raises(PerpError) as err:
        forms.sweep_configs(spec)
    assert err.value.field == "grid" and "allocation: 'owl' gives every block its own sparsity" in str(err.value)


def test_labels_of_runs_stored_before_the_new_fields_are_unchanged():
    old = {"method": "sparsegpt", "sparsity": 0.5, "pattern": "2:4", "mode": "none"}
    assert runs.method_label(old) == "sparsegpt" and runs.pruning_label(old) == "sparsegpt 2:4"


def test_run_labels_and_filters_use_the_method_label(store):
    config = RunConfig.create("none", sparsity=0.7, allocation="owl", refine="dsnot")
    row = store.get_run(record(store, config, made_up(config, 10.0, 30.0)))
    plain = store.get_run(record(store, RunConfig.create("none", sparsity=0.7), made_up(config, 10.0, 40.0)))
    assert runs.run_label(row) == f"#{row.id} wanda + OWL + DSnoT 70% · prune only"
    assert runs.runs_frame([row])["pruning"][0] == "wanda + OWL + DSnoT 70%"
    assert runs.filter_rows([row, plain], methods=["wanda + OWL + DSnoT"]) == [row]
    assert runs.filter_rows([row, plain], methods=["wanda"]) == [plain]


def test_compare_draws_an_allocation_as_its_own_line(store):
    rows = []
    for allocation, pruned in (("uniform", 40.0), ("owl", 30.0)):
        config = RunConfig.create("none", sparsity=0.7, allocation=allocation)
        rows.append(store.get_run(record(store, config, made_up(config, 10.0, pruned))))
    lines = {t.name: t for t in figures.ppl_vs_sparsity(rows).data}
    assert list(lines["wanda · no retraining"].y) == pytest.approx([40.0])
    assert list(lines["wanda + OWL · no retraining"].y) == pytest.approx([30.0])
    assert lines["wanda · no retraining"].line.color != lines["wanda + OWL · no retraining"].line.color


def _layers(sparsities: list[list[float]], numel: list[int]) -> list[dict]:
    return [{"name": f"model.layers.{b}.l{j}", "block": b, "kind": f"l{j}", "sparsity": s, "numel": numel[j]}
            for b, row in enumerate(sparsities) for j, s in enumerate(row)]


def test_block_allocation_weighs_each_linear_by_its_size():
    config = RunConfig(sparsity=0.5, allocation="owl").to_dict()
    result = {"block_sparsity": [0.45, 0.5, 0.55], "outlier_share": [3.0, 2.0, 1.0]}
    layers = _layers([[0.4, 0.5], [0.5, 0.5], [0.6, 0.5]], numel=[300, 100])
    a = lf.block_allocation(config, result, layers)
    assert (a.allocation, a.sparsity, a.blocks, a.target) == ("owl", 0.5, [0, 1, 2], [0.45, 0.5, 0.55])
    assert a.achieved == pytest.approx([0.425, 0.5, 0.575]) and a.outlier_share == [3.0, 2.0, 1.0]
    note = lf.allocation_note("#3", a)
    assert note == ("#3: OWL pruned block 0 (3.00% outliers, the most) to 45.0% and block 2 (1.00%, the fewest) "
                    "to 55.0%; the block sparsities average 50.0%, the target 50.0%.")


def test_a_run_recorded_before_allocations_is_uniform_at_its_sparsity():
    config = {"method": "wanda", "sparsity": 0.3}  # no allocation field, no block_sparsity in its result
    a = lf.block_allocation(config, {"layers": []}, _layers([[0.3, 0.3], [0.3, 0.3]], numel=[0, 0]))
    assert (a.allocation, a.blocks, a.target, a.outlier_share) == ("uniform", [0, 1], [0.3, 0.3], [])
    assert a.achieved == pytest.approx([0.3, 0.3])  # sizes not recorded: the linears count equally
    assert lf.allocation_note("#1", a) is None
    assert lf.block_allocation(config, None, []).blocks == []


def test_block_sparsity_figure_draws_target_achieved_and_outlier_shares():
    owl = lf.block_allocation(RunConfig(sparsity=0.5, allocation="owl").to_dict(),
                              {"block_sparsity": [0.45, 0.55], "outlier_share": [3.0, 1.0]},
                              _layers([[0.45], [0.55]], numel=[10]))
    uniform = lf.block_allocation(RunConfig(sparsity=0.5).to_dict(), {"block_sparsity": [0.5, 0.5]},
                                  _layers([[0.5], [0.5]], numel=[10]))
    fig = lf.block_sparsity_figure({"#1 owl": owl, "#2 uniform": uniform})
    traces = {t.name: t for t in fig.data}
    assert list(traces["#1 owl · outlier share"].y) == [3.0, 1.0] and traces["#1 owl · outlier share"].yaxis == "y2"
    assert list(traces["#1 owl · target (owl)"].y) == [0.45, 0.55]
    assert list(traces["#1 owl · achieved"].y) == pytest.approx([0.45, 0.55])
    assert list(traces["#2 uniform · target (uniform)"].y) == [0.5, 0.5]
    assert "#2 uniform · outlier share" not in traces
    assert traces["#1 owl · achieved"].line.color != traces["#2 uniform · achieved"].line.color
    low, high = fig.layout.yaxis.range
    assert low < 0.45 and high > 0.55 and fig.layout.yaxis.tickformat == ".0%"
    alone = lf.block_sparsity_figure({"#2 uniform": uniform})
    assert "yaxis2" not in alone.layout.to_plotly_json()  # no outlier axis without OWL
    assert alone.layout.yaxis.range[1] - alone.layout.yaxis.range[0] == pytest.approx(0.1)  # a flat line, readable
