"""Zero-shot accuracy inside a run: dense -> pruned -> repaired per task, cached where the weights are, per-item
lines on request."""

import json

import pytest
from fixtures_tiny import perp_home, tiny_model_dir, tiny_preset_config, tiny_text_file  # noqa: F401  (pytest fixtures)

from perp_engine.run.pipeline import run_pipeline, stages_for

TASKS = ("rte", "arc_easy")


def _config(model_dir, text_file, preset=None, **changes):
    return tiny_preset_config(model_dir, text_file, preset, zero_shot=",".join(TASKS), zero_shot_limit=3,
                              **changes)


def test_a_repairing_run_scores_dense_pruned_and_final_and_writes_every_item(  # noqa: F811
        tiny_model_dir, tiny_text_file, tmp_path, perp_home):  # noqa: F811
    samples = tmp_path / "items" / "samples.jsonl"
    config = _config(tiny_model_dir, tiny_text_file, preset="perp", steps=2, zero_shot_samples=str(samples))
    assert stages_for(config) == ("load", "data", "dense_eval", "dense_zero_shot", "prune", "pruned_eval",
                                  "pruned_zero_shot", "train", "final_eval", "final_zero_shot")
    result = run_pipeline(config)
    assert list(result.zero_shot) == ["dense", "pruned", "final"]
    for scores in result.zero_shot.values():
        assert [s["task"] for s in scores] == list(TASKS) and {s["docs"] for s in scores} == {3}
        assert all(0.0 <= s["value"] <= 1.0 for s in scores)
    assert {"dense_zero_shot", "pruned_zero_shot", "final_zero_shot"} <= set(result.timings)
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(lines) == 3 * len(TASKS) * 3
    for which, scores in result.zero_shot.items():
        for score in scores:
            mine = [line for line in lines if line["model"] == which and line["task"] == score["task"]]
            assert sum(line["acc"] for line in mine) / 3 == pytest.approx(score["acc"])


def test_a_run_without_repair_scores_dense_and_pruned_and_reuses_them_from_the_cache(  # noqa: F811
        tiny_model_dir, tiny_text_file, tmp_path, perp_home):  # noqa: F811
    config = _config(tiny_model_dir, tiny_text_file)
    assert "final_zero_shot" not in stages_for(config)
    first = run_pipeline(config, cache_dir=str(tmp_path))
    assert list(first.zero_shot) == ["dense", "pruned"] and "zero_shot_dense" not in first.reused
    second = run_pipeline(config, cache_dir=str(tmp_path))
    assert {"zero_shot_dense", "zero_shot_pruned"} <= set(second.reused)
    assert second.zero_shot == first.zero_shot
    only_dense = run_pipeline(config.replace(zero_shot_on=("dense",), sparsity=0.3), cache_dir=str(tmp_path))
    assert list(only_dense.zero_shot) == ["dense"] and "zero_shot_dense" in only_dense.reused


def test_blocks_offloaded_to_disk_give_the_same_scores(tiny_model_dir, tiny_text_file, perp_home):  # noqa: F811
    """lm-eval's loop drives the model through the placement's hooks: each block read from its file in turn."""
    config = _config(tiny_model_dir, tiny_text_file, zero_shot_on="dense,pruned")
    kept = run_pipeline(config.replace(offload="none"))
    on_disk = run_pipeline(config.replace(offload="disk"))
    assert on_disk.environment["offload"] == "disk" and on_disk.zero_shot == kept.zero_shot
