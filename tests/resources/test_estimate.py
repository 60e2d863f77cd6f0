"""estimate_run: exact trainable counts from a weightless skeleton, and a cost model that moves the right way."""

from __future__ import annotations

import pytest
from fixtures_tiny import save_tiny_model, tiny_text_file  # noqa: F401  (pytest fixture)

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.model.blocks import find_decoder_blocks, find_linears, get_weight
from perp_engine.model.shape import ModelShape
from perp_engine.resources import estimate
from perp_engine.run.pipeline import run_pipeline, stages_for

TINY = {"seqlen": 32, "calib_samples": 4, "eval_tokens": 64, "batch_size": 2, "steps": 1}
FAMILIES = ("llama", "opt", "gpt2")
# Every preset on LLaMA (tied head, no biases); on OPT (biases, untied head) and GPT-2 (Conv1D, biases, tied
# head) the recipes whose counts differ most: biases + norms + head LoRA + adapters, and block-wise.
CASES = [("llama", p) for p in ("perp", "perp-masklora", "perp-scalelora", "full-ft", "recon-masklora")] + [
    (f, p) for f in ("opt", "gpt2") for p in ("perp-masklora", "recon-masklora")]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return {f: save_tiny_model(tmp_path_factory.mktemp(f), family=f) for f in FAMILIES}


@pytest.fixture(params=FAMILIES)
def model_dir(request, model_dirs):
    return model_dirs[request.param]


@pytest.mark.parametrize("family, preset", CASES)
def test_counts_match_what_the_run_trains(model_dirs, tiny_text_file, family, preset):  # noqa: F811
    config = RunConfig.create(preset, model=str(model_dirs[family]), dataset=str(tiny_text_file), **TINY)
    predicted = estimate.estimate_run(config)
    result = run_pipeline(config)
    assert predicted.trainable_params == result.trainable_params > 0
    assert predicted.total_params == result.total_params
    assert predicted.trainable.by_category == result.trainable_by_category
    assert predicted.trainable_fraction == pytest.approx(result.trainable_fraction)


def test_prune_only_trains_nothing_and_skips_training_stages(model_dir):
    est = estimate.estimate_run(RunConfig.create("none", model=str(model_dir), **TINY))
    assert est.trainable is None and est.trainable_params == 0
    assert list(est.breakdown) == [s for s in stages_for(est_config(model_dir)) if s not in ("train", "final_eval")]
    assert est.seconds == pytest.approx(sum(est.breakdown.values()), abs=0.2)
    assert est.device == "cpu"


def est_config(model_dir, preset="none", **changes):
    return RunConfig.create(preset, model=str(model_dir), **{**TINY, **changes})


@pytest.mark.parametrize("preset, on", [("none", "dense,pruned,final"), ("perp", "dense,pruned,final"),
                                        ("perp", "final")])
def test_zero_shot_stages_are_predicted_for_each_scored_model(model_dir, preset, on):
    """One stage per scored model (no final one without repair), in the pipeline's order; the time grows with
    the docs scored, and 'all' docs costs what every doc of the split costs."""
    config = est_config(model_dir, preset, zero_shot="rte,hellaswag", zero_shot_limit=10, zero_shot_on=on)
    est = estimate.estimate_run(config)
    assert list(est.breakdown) == list(stages_for(config))
    zero_shot = [s for s in est.breakdown if s.endswith("zero_shot")]
    assert zero_shot and all(est.breakdown[s] > 0 for s in zero_shot)
    more = estimate.estimate_run(config.replace(zero_shot_limit=1000)).breakdown
    every = estimate.estimate_run(config.replace(zero_shot_limit=0)).breakdown
    assert all(est.breakdown[s] < more[s] < every[s] for s in zero_shot)


def test_model_shape_reads_the_matrix_sizes(tiny_model):
    shape = ModelShape.of(tiny_model)
    _, blocks = find_decoder_blocks(tiny_model)
    linears = [get_weight(m).shape for b in blocks for m in find_linears(b).values()]
    assert shape.n_blocks == len(blocks) == 2
    assert shape.block_linear_params == sum(o * i for o, i in linears)
    assert shape.head_params == tiny_model.get_output_embeddings().weight.numel()
    assert shape.total_params == sum(p.numel() for p in tiny_model.parameters())
    assert shape.forward_flops(64) > shape.forward_flops(32) > shape.forward_flops(32, with_head=False)


def seconds(**fields) -> dict[str, float]:
    return estimate.estimate_run(RunConfig.create(**{"preset": "perp", **fields})).breakdown


def test_cost_grows_with_the_work():
    base = seconds()
    assert list(base) == list(stages_for(RunConfig.create("perp")))
    assert seconds(steps=60)["train"] > 1.9 * base["train"]
    assert seconds(eval_tokens=4 * RunConfig.eval_tokens)["dense_eval"] > 3.9 * base["dense_eval"]
    assert seconds(method="sparsegpt")["prune"] > base["prune"]
    assert seconds(preset="full-ft")["train"] > base["train"]
    assert seconds(calib_samples=128)["prune"] > base["prune"]


def test_more_cpu_threads_estimate_less_time():
    config = RunConfig.create("perp")
    slow = estimate.estimate_run(config, threads=2)
    fast = estimate.estimate_run(config, threads=8)
    assert fast.breakdown["train"] == pytest.approx(slow.breakdown["train"] / 4, rel=0.05)


def test_embedded_model_notes_its_first_conversion():
    assert any("GGUF" in note for note in estimate.estimate_run(RunConfig.create("none")).notes)


@pytest.mark.parametrize("fields, field", [({"model": "/no/such/model/folder"}, "model"), ({"device": "cuda"}, "device"),
                                           ({"preset": "perp-masklora", "rank": 10_000}, "rank")])
def test_bad_runs_fail_with_the_field_named(tmp_path, fields, field, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if field == "device":
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(PerpError) as err:
        estimate.estimate_run(RunConfig.create(**{"preset": "none", **fields}))
    assert err.value.field == field


def test_the_estimate_a_run_records_and_its_words(model_dir, tmp_path):
    config = RunConfig.create("perp-masklora", model=str(model_dir), seqlen=32, calib_samples=4, eval_tokens=128)
    recorded = estimate.recorded_estimate(config)
    expected = estimate.estimate_run(config)
    assert recorded["seconds"] == expected.seconds and recorded["breakdown"] == expected.breakdown
    assert estimate.estimate_text(recorded, 162.0) == f"estimated {estimate.format_seconds(expected.seconds)}, took 2.7 min"
    assert expected.trainable_text.startswith(f"{100 * expected.trainable_fraction:.3g}% of the model's")
    lines = []
    assert estimate.recorded_estimate(config.replace(model=str(tmp_path / "nothing")), lines.append) == {}
    assert lines and lines[0].startswith("no time estimate: ")
    assert estimate.estimate_text({}, 10.0) is None
