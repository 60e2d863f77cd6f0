"""The words the app puts beside a run's numbers: recovery with its scale, the trainable share of the model's own
parameters, stage timings from one source (progress card and Run page), the estimate beside the time taken,
cancelled runs and greyed-out export, and the depth captions read from the per-block errors."""

from __future__ import annotations

import pytest

from app import progress_view, run_details, runs
from app.depth_trend import depth_trend, trend_sentences
from perp_engine.config import RunConfig
from perp_engine.store import RunRow

CONFIG = RunConfig.create("perp", method="wanda", sparsity=0.5).to_dict()


def row(status: str = "done", **fields) -> RunRow:
    return RunRow(id=7, status=status, config=CONFIG, preset="perp", created_at=0.0, **fields)


def test_recovery_names_its_scale_and_gives_the_linear_share():
    done = row(dense_ppl=30.93, pruned_ppl=505.66, final_ppl=174.72)
    assert runs.recovery_words(done) == "recovered 38% of the log-ppl gap (70% of the linear ppl gap)"
    frame = runs.runs_frame([done])
    assert frame[runs.RECOVERED][0] == pytest.approx(runs.recovery(done))
    assert frame[runs.RECOVERED_LINEAR][0] == pytest.approx((505.66 - 174.72) / (505.66 - 30.93))
    assert runs.RECOVERED == "recovered of the log-ppl gap"


def test_trainable_share_of_a_new_and_an_old_run():
    new = row(trainable_params=830_784, total_params=163_622_208,
              result={"model_params": 134_515_008, "adapter_params": 795_648, "head_copy_params": 28_311_552})
    assert runs.trainable_words(new) == ("0.618% of the model's 134.5M parameters (+ 795.6k adapter weights, "
                                         "+ untied head 28.3M)")
    old = row(trainable_params=830_784, total_params=163_622_208, result={})
    assert "recorded before the model's own count was kept" in runs.trainable_words(old)
    assert runs.trainable_words(row(trainable_params=0)) is None


def test_progress_card_and_run_page_give_the_same_stage_timings():
    """A running run's store clock, then the run's own clock once done: the bars and the Run page's table read the
    same function, and the prune stage's seconds hold its measuring (pruning + layer errors)."""
    clock = {"load": 2.0, "data": 1.0, "dense_eval": 5.0, "prune": 76.5}
    running = row("running", stage="pruned_eval", fraction=0.5, stage_seconds=clock)
    bars = {b.stage: b.text for b in progress_view.stage_bars(running)}
    assert bars["prune"] == "Prune: done in 76.5 s"
    done = row("done", stage_seconds=clock, timings={"load": 1.9, "data": 1.0, "dense_eval": 5.0, "prune": 24.4,
                                                     "measure": 99.7, "pruned_eval": 5.0, "train": 40.0,
                                                     "final_eval": 5.0},
               result={"stage_seconds": {**clock, "pruned_eval": 5.1, "train": 40.2, "final_eval": 52.3}})
    table = run_details.timings_frame(done)
    prune = table[table["stage"] == "Prune"].iloc[0]
    assert prune["seconds"] == 76.5 and prune["note"] == "pruning 24.4 s + layer errors 52.1 s"
    final = table[table["stage"] == "Final perplexity"].iloc[0]
    assert final["seconds"] == 52.3 and final["note"] == "perplexity 5.0 s + layer errors 47.3 s"
    bars = {b.stage: b.text for b in progress_view.stage_bars(done)}
    assert bars["prune"] == "Prune: done in 76.5 s (pruning 24.4 s + layer errors 52.1 s)"
    assert list(table["stage"]) == [progress_view.stage_title(s, CONFIG) for s in progress_view.run_stages(CONFIG)]


def test_an_old_run_without_its_own_clock_falls_back_to_the_store_then_the_timings():
    old = row("done", stage_seconds={"load": 2.0, "prune": 30.0}, timings={"prune": 10.0, "final_eval": 4.0},
              result={})
    times = {t.stage: t for t in progress_view.stage_times(old)}
    assert times["prune"].seconds == 30.0 and times["final_eval"].seconds == 4.0 and times["final_eval"].detail == ""


def test_the_estimate_beside_the_time_taken():
    done = row(started_at=100.0, finished_at=262.0, result={"estimate": {"seconds": 186.0, "breakdown": {}}})
    assert run_details.estimate_words(done) == "estimated 3.1 min, took 2.7 min"
    assert run_details.estimate_words(row(started_at=1.0, finished_at=2.0, result={})) is None


@pytest.mark.parametrize("stage, error, expected", [
    ("train", "cancelled", "This run was cancelled during Retrain. Nothing went wrong"),
    (None, "cancelled before it started", "This run was cancelled before it started. Nothing went wrong"),
    ("prune", "cancelled: its Ray driver stopped", "cancelled during Prune (its Ray driver stopped)."),
])
def test_a_cancelled_run_reads_as_cancelled(stage, error, expected):
    assert expected in run_details.cancelled_text(row("cancelled", stage=stage, error=error))


def test_export_says_why_it_is_greyed_out():
    assert "was cancelled" in run_details.export_unavailable(row("cancelled"))
    assert "failed" in run_details.export_unavailable(row("failed"))
    assert "once the run finishes" in run_details.export_unavailable(row("running"))


def test_depth_trend_says_where_the_error_rises_plateaus_and_drops():
    errors = [0.01, 0.03, 0.08, 0.2, 0.21, 0.22, 0.2, 0.21, 0.23, 0.22, 0.24, 0.1]
    assert depth_trend(errors) == ("rises from block 0 to block 3 (×20), stays level from block 3 to block 10 "
                                   "(under 25% per block), drops at block 11 (÷2.4)")
    assert depth_trend([0.1, 0.3, 0.9]) == "rises from block 0 to block 2 (×9)"
    assert depth_trend([0.1, None]) is None and depth_trend([]) is None


def test_a_jagged_course_is_summarised():
    text = depth_trend([1, 3, 1, 3, 1, 3, 1])
    assert text.startswith("goes up and down: ×1 from block 0 to block 6 overall")
    assert "largest rise at block 1 (×3)" in text and "largest drop at block 2 (÷3)" in text


def test_trend_sentences_per_run_and_state():
    blocks = {"#3": [{"block": b, "drift_before": v, "drift_after": v / 2} for b, v in enumerate([0.1, 0.3, 0.9])]}
    fields = ("drift_before", "drift_after")
    assert trend_sentences(blocks, fields, "accumulated error", "before") == [
        "#3: the accumulated error after pruning rises from block 0 to block 2 (×9)."]
    assert len(trend_sentences(blocks, fields, "accumulated error", "both")) == 2
