"""One run in detail, as plain values the run page shows: its configuration, stage timings, per-layer and
per-block tables (and their CSV), where its layer errors were measured, and where Export writes by default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from perp_engine.store import RunRow

from .progress_view import REUSED, STAGE_TITLES, run_stages, stage_seconds, stage_title

TIMING_TITLES = {"measure": "Measure the layer errors"}  # timings that are not progress stages
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
    """Seconds per stage in run order, then any other timed step (measuring the layer errors); stages taken
    from the artifact cache say so."""
    seconds = stage_seconds(row)
    names = [s for s in run_stages(row.config) if s in seconds] + [s for s in seconds if s not in STAGE_TITLES]
    return pd.DataFrame({
        "stage": [TIMING_TITLES.get(s) or stage_title(s, row.config) for s in names],
        "seconds": [round(seconds[s], 1) for s in names],
        "note": ["reused from the cache" if REUSED.get(s) in (row.reused or []) else "" for s in names],
    })


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
