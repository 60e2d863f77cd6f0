"""Where a run stands, stage by stage, as plain values the Experiment page draws as progress bars."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from perp_engine.config import RunConfig
from perp_engine.run.pipeline import stages_for
from perp_engine.store import RunRow

STAGE_TITLES = {
    "load": "Load the model",
    "data": "Prepare data",
    "dense_eval": "Dense perplexity",
    "dense_zero_shot": "Dense zero-shot accuracy",
    "prune": "Prune",
    "pruned_eval": "Pruned perplexity",
    "pruned_zero_shot": "Pruned zero-shot accuracy",
    "train": "Retrain",
    "final_eval": "Final perplexity",
    "final_zero_shot": "Final zero-shot accuracy",
}

MIN_PACE_FRACTION = 0.05  # below this share of a stage its pace says too little to extrapolate from
_COUNT = re.compile(r"\b\d+/\d+\b")
REUSED = {"dense_eval": "dense_ppl", "prune": "pruned_model", "pruned_eval": "pruned_ppl"}  # names in RunResult.reused


@dataclass(frozen=True)
class StageBar:
    stage: str
    title: str
    value: float  # 0..1
    state: str  # done | active | waiting | stopped
    text: str


def run_stages(config: Mapping) -> tuple[str, ...]:
    """The stages a run of ``config`` (a stored config's fields) goes through: as recorded, even where it would not
    run again (RunConfig.recorded)."""
    return stages_for(RunConfig.recorded(dict(config)))


def stage_title(stage: str, config: Mapping) -> str:
    if stage == "train" and config.get("mode") == "reconstruct":
        return "Reconstruct block by block"
    return STAGE_TITLES.get(stage, stage)


# Stages that also measure the layer errors: the name of their own part in the run's timings (RunResult.timings)
OWN_PART = {"prune": "pruning", "final_eval": "perplexity"}
MIN_PART_S = 0.05  # a remainder below this is clock noise, not a part worth naming


@dataclass(frozen=True)
class StageTime:
    stage: str
    title: str
    seconds: float | None  # the stage's wall clock, everything it did included (None: not timed, e.g. reused)
    detail: str  # what the seconds went to when the stage has parts, "reused from the cache", or ""


def stage_times(row: RunRow) -> list[StageTime]:
    """The one source of a run's stage timings (progress card and Run page): each finished stage in run order with
    its wall seconds, from the run's own clock once it recorded its result (``RunResult.stage_seconds``), the
    store's stage clock before that (and for runs recorded before the run kept its own), else its timed part.
    Prune and Final perplexity also measure the layer errors: their detail splits the seconds into the part the
    run timed (pruning, perplexity) and the rest (the layer errors)."""
    clock = {**(row.stage_seconds or {}), **((row.result or {}).get("stage_seconds") or {})}
    timings = row.timings or {}
    times = []
    for stage in run_stages(row.config):
        own = timings.get(stage)
        seconds = clock.get(stage, own)
        parts = []
        if stage in OWN_PART and own is not None and stage in clock and seconds - own >= MIN_PART_S:
            parts.append(f"{OWN_PART[stage]} {own:.1f} s + layer errors {seconds - own:.1f} s")
        if REUSED.get(stage) in (row.reused or []):
            parts.append("reused from the cache")
        if seconds is not None or parts:
            times.append(StageTime(stage, stage_title(stage, row.config), seconds, "; ".join(parts)))
    return times


def has_count(message: str) -> bool:
    """Whether a progress message carries its own count (``block 19/30``), which a percentage would contradict."""
    return bool(_COUNT.search(message or ""))


def stage_bars(row: RunRow) -> list[StageBar]:
    """One bar per stage of the run: finished stages full (with their time when known), the current one at
    its fraction with the latest message (its percentage only when the message has no count of its own),
    later ones empty; a failed or cancelled run stops at its stage."""
    stages = run_stages(row.config)
    current = stages.index(row.stage) if row.stage in stages else -1
    times = {t.stage: t for t in stage_times(row)}
    bars = []
    for i, stage in enumerate(stages):
        title = stage_title(stage, row.config)
        if row.status == "done" or i < current:
            timed = times.get(stage)
            seconds = f" in {timed.seconds:.1f} s" if timed and timed.seconds is not None else ""
            text = f"{title}: done{seconds}" + (f" ({timed.detail})" if timed and timed.detail else "")
            bars.append(StageBar(stage, title, 1.0, "done", text))
        elif i == current and row.status == "running":
            where = row.message if has_count(row.message) else f"{100 * row.fraction:.0f}%" + (
                f" · {row.message}" if row.message else "")
            bars.append(StageBar(stage, title, min(max(row.fraction, 0.0), 1.0), "active", f"{title}: {where}"))
        elif i == current and row.status in ("failed", "cancelled"):
            bars.append(StageBar(stage, title, min(max(row.fraction, 0.0), 1.0), "stopped", f"{title}: {row.status}"))
        else:
            bars.append(StageBar(stage, title, 0.0, "waiting", f"{title}: waiting"))
    return bars


def current_step(row: RunRow) -> str:
    """One line on where a run is: ``queued``, the current stage's bar text, ``done``, ``failed during Retrain``."""
    if row.status == "running":
        active = [bar.text for bar in stage_bars(row) if bar.state == "active"]
        return active[0] if active else "starting"
    if row.status in ("failed", "cancelled") and row.stage:
        return f"{row.status} during {stage_title(row.stage, row.config)}"
    return row.status


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


def remaining_seconds(row: RunRow, breakdown: Mapping[str, float], now: float | None = None) -> float | None:
    """Predicted seconds left; None when the run is not running. Stages not started count their estimate from
    ``breakdown``. The current stage is extrapolated from its own pace once it reports some progress (elapsed
    x (1 - f) / f), and before that counts its estimate down with the time it has run, so the prediction moves
    every second instead of waiting for the next progress report."""
    if row.status != "running":
        return None
    now = time.time() if now is None else now
    left = 0.0
    for bar in stage_bars(row):
        estimate = breakdown.get(bar.stage, 0.0)
        if bar.state == "waiting":
            left += estimate
        elif bar.state == "active":
            elapsed = now - row.stage_started_at if row.stage_started_at else None
            if elapsed is None:
                left += estimate * (1.0 - bar.value)
            elif bar.value >= MIN_PACE_FRACTION:
                left += elapsed * (1.0 - bar.value) / bar.value
            else:
                left += max(estimate - elapsed, 0.0)
    return left
