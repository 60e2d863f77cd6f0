"""Plain helpers over store rows: labels, the perplexity a run ends with, recovery, and the runs table."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from perp_engine.presets import PRESETS
from perp_engine.recovery import recovered_share
from perp_engine.store import RunRow

_RECIPE_FIELDS = ("mode", "train", "adapter", "rank", "alpha")


def model_label(model: str) -> str:
    """A short model name: the folder name for local paths, the id otherwise."""
    path = Path(model)
    return path.name if path.is_absolute() or model.startswith((".", "~")) else model


def retraining_label(config: dict) -> str:
    """What a run retrains: ``prune only``, the preset's name when the recipe is a preset's (with a learning
    rate that differs from the preset's appended), or the recipe spelled out, e.g. ``retrain: norms + lora r8``."""
    mode = config.get("mode", "none")
    if mode == "none":
        return "prune only"
    preset = config.get("preset")
    recipe = PRESETS.get(preset or "")
    if recipe and all(_same(config.get(k), recipe[k]) for k in _RECIPE_FIELDS if k in recipe):
        lr = config.get("lr")
        return preset if lr is None or _same(lr, recipe.get("lr", lr)) else f"{preset}, lr {lr:g}"
    parts = list(config.get("train") or [])
    if config.get("adapter", "none") != "none":
        parts.append(f"{config['adapter']} r{config.get('rank')}")
    return f"{mode}: {' + '.join(parts)}, lr {config.get('lr', 0):g}"


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a or ()) == list(b or ())
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def pruning_label(config: dict) -> str:
    """``wanda 50%`` or ``sparsegpt 2:4``."""
    pattern = config.get("pattern", "unstructured")
    amount = f"{config.get('sparsity', 0):.0%}" if pattern == "unstructured" else pattern
    return f"{config.get('method')} {amount}"


def run_label(row: RunRow) -> str:
    """``#12 wanda 50% · perp-masklora``: unique (the id) and readable."""
    return f"#{row.id} {pruning_label(row.config)} · {retraining_label(row.config)}"


def end_ppl(row: RunRow) -> float | None:
    """The perplexity the run ends with: after retraining, or after pruning when nothing was retrained."""
    return row.final_ppl if row.final_ppl is not None else row.pruned_ppl


def recovery(row: RunRow) -> float | None:
    """Share of the pruning damage the retraining undid, on the log-perplexity (loss) scale
    (:func:`perp_engine.recovery.recovered_share`): 1 = back to dense, 0 = no better than pruned; None without
    retraining or when pruning cost under 1% perplexity."""
    return recovered_share(row.dense_ppl, row.pruned_ppl, row.final_ppl)


def filter_rows(rows: Iterable[RunRow], *, statuses: Sequence[str] = (), models: Sequence[str] = (),
                methods: Sequence[str] = (), retrainings: Sequence[str] = ()) -> list[RunRow]:
    """Rows passing every non-empty filter (an empty filter lets everything through)."""
    def keep(row: RunRow) -> bool:
        return ((not statuses or row.status in statuses)
                and (not models or row.config.get("model") in models)
                and (not methods or row.config.get("method") in methods)
                and (not retrainings or retraining_label(row.config) in retrainings))
    return [r for r in rows if keep(r)]


RUN_COLUMNS = ("id", "status", "model", "pruning", "retraining", "dense ppl", "pruned ppl", "final ppl", "recovery",
               "trainable %", "trainable params", "steps", "time (s)", "device", "sweep", "created", "message")


def runs_frame(rows: Iterable[RunRow], now: float | None = None) -> pd.DataFrame:
    """The runs table, one row per run in the order given."""
    now = now or time.time()
    records = []
    for r in rows:
        cfg = r.config
        records.append({
            "id": r.id,
            "status": r.status,
            "model": model_label(cfg.get("model", "")),
            "pruning": pruning_label(cfg),
            "retraining": retraining_label(cfg),
            "dense ppl": r.dense_ppl,
            "pruned ppl": r.pruned_ppl,
            "final ppl": r.final_ppl,
            "recovery": recovery(r),
            "trainable %": None if r.trainable_fraction is None else 100 * r.trainable_fraction,
            "trainable params": r.trainable_params,
            "steps": cfg.get("steps") if cfg.get("mode", "none") != "none" else None,
            "time (s)": None if r.duration is None else round(r.duration, 1),
            "device": r.environment.get("device") if r.environment else None,
            "sweep": r.sweep_id,
            "created": _ago(now - r.created_at),
            "message": r.error if r.status in ("failed", "cancelled") else r.message,
        })
    return pd.DataFrame.from_records(records, columns=list(RUN_COLUMNS))


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"
