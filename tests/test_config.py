import inspect
import json

import pytest

from perp_engine.config import RunConfig, method_label, parse_pattern
from perp_engine.errors import PerpError
from perp_engine.presets import DEFAULT_ALPHA, DEFAULT_RANK, DESCRIPTIONS, LR_ORIGIN, PRESETS
from perp_engine.repair.adapters import attach_adapters
from perp_engine.repair.subsets import HEAD_LORA_ALPHA, HEAD_LORA_RANK


@pytest.mark.parametrize(
    "fields, field, fragment",
    [
        ({"sparsity": 1.0}, "sparsity", "[0, 1)"),
        ({"sparsity": -0.1}, "sparsity", "[0, 1)"),
        ({"pattern": "4:2", "sparsity": 0.5}, "pattern", "0 < N < M"),
        ({"pattern": "2:2", "sparsity": 0.5}, "pattern", "0 < N < M"),
        ({"pattern": "2:4", "sparsity": 0.6}, "sparsity", "N/M = 0.5"),
        ({"pattern": "blocks"}, "pattern", "unstructured"),
        ({"method": "obs"}, "method", "magnitude, wanda, sparsegpt, ria, random"),
        ({"allocation": "layerwise"}, "allocation", "uniform, owl"),
        ({"allocation": "owl", "pattern": "2:4"}, "allocation", "uniform' with an N:M pattern"),
        ({"allocation": "owl", "owl_m": 0.0}, "owl_m", "> 0"),
        ({"allocation": "owl", "owl_lambda": 0.3}, "owl_lambda", "[0, 0.25]"),
        ({"allocation": "owl", "sparsity": 0.1}, "owl_lambda", "[0, 0.05]"),
        ({"allocation": "owl", "sparsity": 0.9, "owl_lambda": -0.01}, "owl_lambda", "[0, 0.05]"),
        ({"method": "ria", "ria_power": -1.0}, "ria_power", ">= 0"),
        ({"method": "ria", "ria_permute": "lsa"}, "ria_permute", "N:M"),
        ({"method": "wanda", "pattern": "2:4", "ria_permute": "reallocation"}, "ria_permute", "method 'ria'"),
        ({"method": "ria", "pattern": "2:4", "ria_permute": "sorted"}, "ria_permute", "none, reallocation, lsa"),
        ({"refine": "sparseswap"}, "refine", "none, dsnot"),
        ({"refine": "dsnot", "dsnot_skip_layer": "attn"}, "dsnot_skip_layer", "no_skip, mlp, self_attn"),
        ({"refine": "dsnot", "dsnot_max_cycles": -1}, "dsnot_max_cycles", ">= 0"),
        ({"refine": "dsnot", "dsnot_update_threshold": -0.1}, "dsnot_update_threshold", ">= 0"),
        ({"refine": "dsnot", "dsnot_same_sign": "yes"}, "dsnot_same_sign", "auto, on, off"),
        ({"sequential": "group"}, "sequential", "block, layer"),
        ({"dataset": "/no/such/file.txt"}, "dataset", "wiki-embedded"),
        ({"seqlen": 0}, "seqlen", ">= 8"),
        ({"eval_tokens": 100, "seqlen": 256}, "eval_tokens", "seqlen=256"),
        ({"mode": "retrain", "train": ("norms",), "steps": 0}, "steps", ">= 1"),
        ({"mode": "retrain", "train": ("norms",), "adapter": "masklora", "rank": 0}, "rank", ">= 1"),
        ({"mode": "retrain", "train": ("weights",)}, "train", "biases, norms"),
        ({"mode": "retrain"}, "train", "needs something to train"),
        ({"train": ("norms",)}, "mode", "is 'none'"),
        ({"mode": "retrain", "train": ("full",), "adapter": "masklora"}, "adapter", "full retraining"),
        ({"mode": "reconstruct", "train": ("head",)}, "train", "block by block"),
        ({"mode": "retrain", "train": ("head", "head-lora")}, "train", "either"),
        ({"device": "tpu"}, "device", "auto, cpu, cuda"),
        ({"lr": 0.0, "mode": "retrain", "train": ("norms",)}, "lr", "(0, 1)"),
        ({"eval_tokens": 2**53}, "eval_tokens", "out of range; use a number from -9,007,199,254,740,991 to 9,007,199"),
        ({"steps": -(2**53)}, "steps", "out of range"),
    ],
)
def test_bad_fields_name_the_field(fields, field, fragment):
    with pytest.raises(PerpError) as info:
        RunConfig(**fields)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_json_round_trip_and_unknown_fields():
    cfg = RunConfig.create("perp-masklora", sparsity=0.6, method="sparsegpt")
    assert RunConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(PerpError, match="config: unknown field"):
        RunConfig.from_dict({"sparsity": 0.5, "spars": 0.4})
    with pytest.raises(PerpError, match="config: not valid JSON"):
        RunConfig.from_json("{sparsity: 0.5")
    with pytest.raises(PerpError, match="sparsity: expected a number"):
        RunConfig.from_dict({"sparsity": "half"})
    with pytest.raises(PerpError, match="steps: expected an integer"):
        RunConfig.from_dict({"steps": 2.5})


def test_the_largest_integer_a_browser_holds_exactly_is_allowed():
    assert RunConfig(eval_tokens=2**53 - 1).eval_tokens == 2**53 - 1


def test_a_recorded_config_is_taken_as_stored_and_refused_to_run():
    stored = {**RunConfig.create("perp").to_dict(), "dataset": "/moved/words.txt", "eval_tokens": 2**60,
              "train": ["norms", "head-lora"], "zero_shot": ["boolq", "a_task_since_removed"]}
    recorded = RunConfig.recorded(stored)
    assert (recorded.dataset, recorded.eval_tokens, recorded.train) == ("/moved/words.txt", 2**60, ("norms", "head-lora"))
    assert recorded.zero_shot == ("boolq", "a_task_since_removed")
    assert recorded.zero_shot_models == ("dense", "pruned", "final")
    assert RunConfig.recorded({"mode": "retrain"}).steps == RunConfig.steps  # left-out fields: their defaults
    for field, refused in (("eval_tokens", 2**60), ("zero_shot", ["a_task_since_removed"])):
        with pytest.raises(PerpError) as info:
            RunConfig.from_dict({**RunConfig.create("perp").to_dict(), field: refused})
        assert info.value.field == field
    with pytest.raises(PerpError, match="config: unknown field"):  # fields are still checked for their types
        RunConfig.recorded({"spars": 0.4})


def test_preset_fills_fields_and_explicit_values_win():
    cfg = RunConfig.create("perp-masklora", lr=1e-3)
    assert cfg.mode == "retrain" and cfg.adapter == "masklora" and cfg.lr == 1e-3
    assert cfg.train == ("biases", "norms", "head-lora")
    with pytest.raises(PerpError, match="preset: unknown preset"):
        RunConfig.create("perp-everything")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    cfg = RunConfig.create(name)
    assert cfg.preset == name
    assert name in DESCRIPTIONS
    assert ("lr" in PRESETS[name]) == (name in LR_ORIGIN)  # every preset rate says how it was chosen


def test_the_adapters_rank_and_alpha_have_one_home():
    """RunConfig, every preset with an adapter and attach_adapters default to presets.DEFAULT_RANK / DEFAULT_ALPHA
    (r 16, alpha 32); the head LoRA keeps the paper's recipe on its own constants."""
    assert (DEFAULT_RANK, DEFAULT_ALPHA) == (16, 32.0)
    assert (RunConfig.rank, RunConfig.alpha) == (DEFAULT_RANK, DEFAULT_ALPHA)
    with_adapter = {name: fields for name, fields in PRESETS.items() if fields["adapter"] != "none"}
    assert with_adapter and all((f["rank"], f["alpha"]) == (DEFAULT_RANK, DEFAULT_ALPHA) for f in with_adapter.values())
    assert all(f"r{DEFAULT_RANK}" in DESCRIPTIONS[name] for name in with_adapter)
    defaults = inspect.signature(attach_adapters).parameters
    assert (defaults["rank"].default, defaults["alpha"].default) == (DEFAULT_RANK, DEFAULT_ALPHA)
    assert (HEAD_LORA_RANK, HEAD_LORA_ALPHA) == (16, 32.0)


def test_comma_strings_become_tuples():
    cfg = RunConfig(mode="retrain", train="norms, biases", target_modules="q_proj,v_proj")
    assert cfg.train == ("norms", "biases") and cfg.target_modules == ("q_proj", "v_proj")
    assert json.loads(cfg.to_json())["train"] == ["norms", "biases"]


def test_parse_pattern():
    assert parse_pattern("unstructured") is None
    assert parse_pattern("2:4") == (2, 4)
    assert parse_pattern("4:8") == (4, 8)


@pytest.mark.parametrize("fields, label", [
    ({"method": "wanda"}, "wanda"),
    ({"method": "wanda", "allocation": "owl", "refine": "dsnot"}, "wanda + OWL + DSnoT"),
    ({"method": "sparsegpt", "refine": "dsnot"}, "sparsegpt + DSnoT"),
    ({"method": "ria", "pattern": "2:4", "ria_permute": "lsa"}, "ria (lsa)"),
    ({"method": "ria", "ria_power": 1.0}, "ria (power 1)"),
    ({"method": "magnitude", "allocation": "owl", "owl_lambda": 0.05, "owl_m": 7.0}, "magnitude + OWL (M 7, λ 0.05)"),
    ({"method": "wanda", "refine": "dsnot", "dsnot_max_cycles": 20, "dsnot_skip_layer": "no_skip"},
     "wanda + DSnoT (skip_layer no_skip, max_cycles 20)"),
    ({"method": "sparsegpt", "sequential": "layer"}, "sparsegpt, true-sequential"),
    ({"method": "wanda", "allocation": "owl", "sequential": "layer"}, "wanda + OWL, true-sequential"),
])
def test_method_label_tells_every_variant_apart(fields, label):
    assert method_label(RunConfig(**fields).to_dict()) == label
