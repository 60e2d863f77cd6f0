"""Sweep expansion (flags and files), validation of bad grids and files, queueing through the executor interface."""

import json

import pytest
from fixtures_tiny import perp_home, tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.jobs import Executor, JobStatus
from perp_engine.run.sweep import SweepSpec, load_sweep_file, parse_values, queue_sweep, with_axes
from perp_engine.store import RunStore


class RecordingExecutor(Executor):
    """Queues runs in a store and executes nothing: the sweep logic seen through the executor interface."""

    def __init__(self, store):
        self.store = store
        self.submitted = []

    def submit(self, config, *, sweep_id=None, keep_model=False, recompute=False, checked=False):
        self.submitted.append((config, sweep_id, keep_model, recompute))
        return self.store.create_run(config, sweep_id, keep_model=keep_model, recompute=recompute)

    def status(self, run_id):
        return JobStatus.from_row(self.store.get_run(run_id))

    def cancel(self, run_id):
        self.store.request_cancel(run_id)
        return self.status(run_id)


def flags_spec(**texts) -> SweepSpec:
    return with_axes(None, {name: parse_values(name, [text]) for name, text in texts.items()})


def test_flag_grid_expands_in_order_with_presets():
    spec = flags_spec(sparsity="0.3,0.5,0.7", method="magnitude,wanda", preset="none,perp", steps="5")
    assert spec.base == {"steps": 5} and list(spec.grid) == ["sparsity", "method", "preset"]
    configs, skipped = spec.configs()
    assert len(configs) == spec.size == 12 and skipped == []
    assert [(c.sparsity, c.method, c.preset) for c in configs[:3]] == [(0.3, "magnitude", "none"), (0.3, "magnitude", "perp"),
                                                                       (0.3, "wanda", "none")]
    perp = configs[1]
    assert (perp.mode, perp.train, perp.lr, perp.steps) == ("retrain", ("biases", "norms", "head-lora"), 5e-3, 5)
    assert all(c.steps == 5 for c in configs)
    assert spec.name == "sparsity 3 x method 2 x preset 2"


@pytest.mark.parametrize("name, text, expected", [
    ("sparsity", "0.3,0.5", [0.3, 0.5]),
    ("seed", "0,1,2", [0, 1, 2]),
    ("train", "norms,norms+biases", [("norms",), ("norms", "biases")]),
    ("untie_head", "true,no", [True, False]),
    ("pattern", "2:4", ["2:4"]),
])
def test_parse_values(name, text, expected):
    assert parse_values(name, [text]) == expected


@pytest.mark.parametrize("name, text, message", [
    ("sparsity", "0.5,abc", "sparsity: 'abc' is not a number"),
    ("seed", "1.5", "seed: '1.5' is not an integer"),
    ("untie_head", "maybe", "untie_head: 'maybe' is not allowed; use true or false"),
    ("method", "wanda,,magnitude", "method: empty value"),
    ("colour", "red", "sweep: unknown field colour"),
])
def test_parse_values_rejects(name, text, message):
    with pytest.raises(PerpError, match=message):
        parse_values(name, [text])


def test_invalid_points_are_an_error_unless_skipped():
    spec = flags_spec(pattern="unstructured,2:4", sparsity="0.5,0.7")
    with pytest.raises(PerpError, match=r"1 of 4 points are invalid, e\.g\. pattern=2:4 sparsity=0\.7: sparsity: 0\.7 does"
                                        r" not match pattern 2:4.*nothing was queued"):
        spec.configs()
    configs, skipped = spec.configs(skip_invalid=True)
    assert [(c.pattern, c.sparsity) for c in configs] == [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", 0.5)]
    assert skipped[0][0] == {"pattern": "2:4", "sparsity": 0.7}
    with pytest.raises(PerpError, match="the grid has 4 points, more than 3"):
        spec.configs(max_points=3)


YAML = """
name: methods
base:
  steps: 3
  mode: retrain
grid:
  method: [magnitude, wanda]
  train: [[norms], "norms,biases"]
"""


def test_yaml_and_json_files_and_flag_overrides(tmp_path):
    (tmp_path / "s.yaml").write_text(YAML)
    (tmp_path / "s.json").write_text(json.dumps({"name": "methods", "base": {"steps": 3, "mode": "retrain"},
                                                 "grid": {"method": ["magnitude", "wanda"], "train": [["norms"], "norms,biases"]}}))
    from_yaml, from_json = load_sweep_file(tmp_path / "s.yaml"), load_sweep_file(tmp_path / "s.json")
    assert from_yaml == from_json and from_yaml.name == "methods"
    configs, _ = from_yaml.configs()
    assert [(c.method, c.train) for c in configs] == [("magnitude", ("norms",)), ("magnitude", ("norms", "biases")),
                                                     ("wanda", ("norms",)), ("wanda", ("norms", "biases"))]
    overridden = with_axes(from_yaml, {"method": ["sparsegpt"], "steps": [1, 2]})
    assert overridden.base == {"mode": "retrain", "method": "sparsegpt"}
    assert overridden.grid == {"train": [["norms"], "norms,biases"], "steps": [1, 2]}
    assert {c.method for c in overridden.configs()[0]} == {"sparsegpt"}


@pytest.mark.parametrize("name, text, message", [
    ("bad.yaml", "grid:\n  sparsity: [0.3, 0.5\n", r"bad\.yaml is not valid YAML \(.*at line 3\)"),
    ("bad.json", '{"grid": {"sparsity": [0.3,]}}', r"bad\.json is not valid JSON \(Expecting value at line 1\)"),
    ("list.yaml", "- sparsity\n- method\n", "must hold a mapping with keys name, base, grid"),
    ("keys.yaml", "grid: {sparsity: [0.5]}\nruns: 3\n", "unknown key\\(s\\) runs; allowed: name, base, grid"),
    ("field.yaml", "grid: {sparsity: [0.5], colour: [red]}\n", "unknown field\\(s\\) colour in grid"),
    ("empty.yaml", "name: nothing\n", "the grid is empty"),
    ("novalues.yaml", "grid: {sparsity: []}\n", "grid field sparsity needs a non-empty list"),
    ("both.yaml", "base: {seed: 1}\ngrid: {seed: [1, 2]}\n", "seed both in base and in grid"),
    ("basetype.yaml", "base: [1]\ngrid: {seed: [1]}\n", "grid and base must be mappings"),
])
def test_malformed_sweep_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PerpError, match=message) as err:
        load_sweep_file(path)
    assert str(err.value).startswith("sweep: ") and "\n" not in str(err.value)


def test_missing_sweep_file(tmp_path):
    with pytest.raises(PerpError, match="sweep: .*nope.yaml is not a file"):
        load_sweep_file(tmp_path / "nope.yaml")


def tiny_fields(model_dir, text_file) -> dict:
    """Flag texts for runs of the tiny saved model on the tiny text (they pass the pre-run checks)."""
    return dict(model=str(model_dir), dataset=str(text_file), seqlen="16", calib_samples="4", eval_tokens="64")


def test_queue_sweep_records_the_sweep_and_its_runs(tmp_path, perp_home, tiny_model_dir, tiny_text_file):  # noqa: F811
    store = RunStore(tmp_path / "runs.sqlite")
    executor = RecordingExecutor(store)
    spec = flags_spec(sparsity="0.4,0.6", seed="0,1", **tiny_fields(tiny_model_dir, tiny_text_file))
    sweep_id, run_ids, skipped = queue_sweep(spec, executor, store, keep_model=True)
    assert skipped == [] and len(run_ids) == 4
    assert [s for _, s, keep, _ in executor.submitted] == [sweep_id] * 4 and all(k for _, _, k, _ in executor.submitted)
    runs = store.sweep_runs(sweep_id)
    assert [r.id for r in runs] == run_ids
    assert [(r.config["sparsity"], r.config["seed"]) for r in runs] == [(0.4, 0), (0.4, 1), (0.6, 0), (0.6, 1)]
    assert all(r.status == "queued" and r.keep_model for r in runs)
    [sweep] = store.list_sweeps()
    assert sweep["grid"]["grid"] == {"sparsity": [0.4, 0.6], "seed": [0, 1]}


def test_invalid_sweep_queues_nothing(tmp_path, perp_home, tiny_model_dir, tiny_text_file):  # noqa: F811
    store = RunStore(tmp_path / "runs.sqlite")
    spec = flags_spec(pattern="2:4", sparsity="0.5,0.7", **tiny_fields(tiny_model_dir, tiny_text_file))
    with pytest.raises(PerpError, match="nothing was queued"):
        queue_sweep(spec, RecordingExecutor(store), store)
    assert store.list_runs() == [] and store.list_sweeps() == []


def test_runconfig_defaults_fill_what_the_grid_leaves_out():
    spec = flags_spec(sparsity="0.5")
    [cfg], _ = spec.configs()
    assert cfg == RunConfig(sparsity=0.5) and spec.points() == [{}] and spec.name == "single run"
