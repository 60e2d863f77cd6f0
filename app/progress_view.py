"""Where a run stands, stage by stage, as plain values the Experiment page draws as progress bars."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from perp_engine.progress import STAGES
from perp_engine.store import RunRow

STAGE_TITLES = {
    "load": "Load the model",
    "data": "Prepare data",
    "dense_eval": "Dense perplexity",
    "prune": "Prune",
    "pruned_eval": "Pruned perplexity",
    "train": "Retrain",
    "final_eval": "Final perplexity",
}

REUSED = {"dense_eval": "dense_ppl", "prune": "pruned_model", "pruned_eval": "pruned_ppl"}  # names in RunResult.reused


@dataclass(frozen=True)
class StageBar:
    stage: str
    title: str
    value: float  # 0..1
    state: str  # done | active | waiting | stopped
    text: str


def run_stages(config: Mapping) -> tuple[str, ...]:
    """The stages a run of ``config`` goes through (no retraining: no train and final stages)."""
    if config.get("mode", "none") == "none":
        return tuple(s for s in STAGES if s not in ("train", "final_eval"))
    return STAGES


def stage_title(stage: str, config: Mapping) -> str:
    if stage == "train" and config.get("mode") == "reconstruct":
        return "Reconstruct block by block"
    return STAGE_TITLES.get(stage, stage)


def stage_bars(row: RunRow) -> list[StageBar]:
    """One bar per stage of the run: finished stages full (with their time when known), the current one at
    its fraction with the latest message, later ones empty; a failed or cancelled run stops at its stage."""
    stages = run_stages(row.config)
    current = stages.index(row.stage) if row.stage in stages else -1
    bars = []
    for i, stage in enumerate(stages):
        title = stage_title(stage, row.config)
        if row.status == "done" or i < current:
            seconds = row.timings.get(stage)
            reused = " (reused from the cache)" if REUSED.get(stage) in (row.reused or []) else ""
            text = f"{title}: done" + (f" in {seconds:.1f} s" if seconds is not None else "") + reused
            bars.append(StageBar(stage, title, 1.0, "done", text))
        elif i == current and row.status == "running":
            pct = f"{100 * row.fraction:.0f}%"
            bars.append(StageBar(stage, title, min(max(row.fraction, 0.0), 1.0), "active",
                                 f"{title}: {pct}" + (f" · {row.message}" if row.message else "")))
        elif i == current and row.status in ("failed", "cancelled"):
            bars.append(StageBar(stage, title, min(max(row.fraction, 0.0), 1.0), "stopped", f"{title}: {row.status}"))
        else:
            bars.append(StageBar(stage, title, 0.0, "waiting", f"{title}: waiting"))
    return bars


def overall_fraction(row: RunRow, weights: Mapping[str, float] | None = None) -> float:
    """Share of the run's work done, each stage weighted by ``weights`` (e.g. estimated seconds) or equally."""
    if row.status == "done":
        return 1.0
    stages = run_stages(row.config)
    w = {s: max(float((weights or {}).get(s, 1.0)), 1e-9) for s in stages}
    done = 0.0
    for bar in stage_bars(row):
        done += w[bar.stage] * bar.value
    return done / sum(w.values())


def remaining_seconds(row: RunRow, breakdown: Mapping[str, float]) -> float | None:
    """Predicted seconds left from an estimate's per-stage ``breakdown``; None when the run is not running."""
    if row.status != "running":
        return None
    return sum(breakdown.get(bar.stage, 0.0) * (1.0 - bar.value) for bar in stage_bars(row))
