"""One run in detail, as plain values the run page shows: its configuration, stage timings, per-layer and
per-block tables (and their CSV), where its layer errors were measured, and where Export writes by default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from perp_engine.resources.estimate import estimate_text
from perp_engine.store import RunRow

from .progress_view import stage_times, stage_title

LAYER_FIELDS = {  # store field -> CSV column
    "name": "name", "block": "block", "kind": "kind", "numel": "weights", "sparsity": "sparsity",
    "recon_error": "local error after pruning", "recon_error_after": "local error after repair",
    "drift": "accumulated error after pruning", "drift_after": "accumulated error after repair",
}
BLOCK_FIELDS = {
    "block": "block", "loss_before": "local error after pruning", "loss_after": "local error after repair",
    "drift_before": "accumulated error after pruning", "drift_after": "accumulated error after repair",
    "train_loss_before": "reconstruction loss before training", "train_loss_after": "reconstruction loss after training",
}


def config_frame(config: Mapping) -> pd.DataFrame:
    """Every config field with its value as text (lists joined), in the config's order."""
    def text(value) -> str:
        if isinstance(value, (list, tuple)):
            return ", ".join(map(str, value)) or "(none)"
        return "(none)" if value is None else str(value)
    return pd.DataFrame({"field": list(config), "value": [text(v) for v in config.values()]})


def timings_frame(row: RunRow) -> pd.DataFrame:
    """Seconds per finished stage in run order, as the progress card gives them (:func:`stage_times`): what the
    seconds went to where a stage has parts, and stages taken from the artifact cache, in ``note``."""
    times = stage_times(row)
    return pd.DataFrame({"stage": [t.title for t in times],
                         "seconds": [None if t.seconds is None else round(t.seconds, 1) for t in times],
                         "note": [t.detail for t in times]})


def estimate_words(row: RunRow) -> str | None:
    """``estimated 3.1 min, took 2.7 min``: the estimate the run recorded as it started beside its wall time;
    None for runs recorded before the estimate was kept."""
    return estimate_text((row.result or {}).get("estimate"), row.duration if row.finished else None)


def cancelled_text(row: RunRow) -> str:
    """What a cancelled run is, in words: when it stopped, why when a reason other than the click was given."""
    during = f" during {stage_title(row.stage, row.config)}" if row.stage else " before it started"
    reason = (row.error or "").strip()
    rest = reason[len("cancelled"):].strip(" :") if reason.lower().startswith("cancelled") else reason
    why = f" ({rest})" if rest and rest != "before it started" else ""
    return (f"This run was cancelled{during}{why}. Nothing went wrong; it kept no results. Load it into Experiment "
            "(Configuration tab) to run it again.")


def export_unavailable(row: RunRow) -> str:
    """Why Export is greyed out for a run that is not done."""
    if row.status in ("queued", "running"):
        return f"Export is available once the run finishes; it is {row.status}."
    ended = "was cancelled" if row.status == "cancelled" else "failed"
    return f"Only a finished run can be exported: this run {ended}, so it has no model to export."


def _frame(records: Sequence[Mapping], fields: Mapping[str, str]) -> pd.DataFrame:
    present = [f for f in fields if any(f in r for r in records)]
    frame = pd.DataFrame.from_records([{fields[f]: r.get(f) for f in present} for r in records],
                                      columns=[fields[f] for f in present])
    for column in ("block", "weights"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


def layers_frame(layers: Sequence[Mapping]) -> pd.DataFrame:
    """One row per pruned linear: name, block, kind, weights, sparsity and the errors the run recorded."""
    return _frame(layers, LAYER_FIELDS)


def blocks_frame(blocks: Sequence[Mapping]) -> pd.DataFrame:
    """One row per block: its output errors (and reconstruction losses in reconstruct mode)."""
    return _frame(blocks, BLOCK_FIELDS)


def measure_note(result: Mapping | None) -> str:
    """Which windows a run's layer errors were measured on, in one sentence."""
    windows = (result or {}).get("measure_windows")
    if not windows:
        return ("This run did not record which windows its layer errors were measured on: runs recorded before "
                "held-out measurement used its first calibration windows, so its \"after repair\" errors are "
                "errors on training data.")
    where = (f"{windows.get('count')} windows of {windows.get('seqlen')} tokens from {windows.get('source')}")
    if windows.get("held_out"):
        return f"Layer errors measured on {where}, held out: not used to prune or to retrain."
    return f"Layer errors measured on {where}, the windows used to prune and retrain (a training error after repair)."


def export_folder(root: Path, row: RunRow) -> Path:
    """Where Export writes unless told otherwise: ``run-12`` inside the first exports folder ``root``."""
    return root / f"run-{row.id}"
