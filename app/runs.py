"""Plain helpers over store rows: labels, the perplexity a run ends with, recovery, evaluation protocols, and the
runs table with its CSV."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from perp_engine.config import method_label
from perp_engine.evaluation.recovery import LINEAR_SCALE, SCALE, recovered_linear_share, recovered_share, recovery_text
from perp_engine.model.parameters import recorded_trainable_text
from perp_engine.presets import PRESETS
from perp_engine.store import RunRow

from .zero_shot_rows import end_accuracy, protocol_text

_RECIPE_FIELDS = ("mode", "train", "adapter", "rank", "alpha")
MAX_MODEL_LABEL = 40  # characters of a model path shown in full


def model_label(model: str) -> str:
    """A short model name: the folder name of an existing local model, the id of a Hub model, and a path that
    names no folder as written (a long one by its last three parts), so a mistyped path is recognisable."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.name
    if len(model) > MAX_MODEL_LABEL and (path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1):
        return "…/" + "/".join(Path(model).parts[-3:])
    return model


def retraining_label(config: dict) -> str:
    """What a run retrains: ``prune only``, the preset's name when the recipe is a preset's (with a learning
    rate that differs from the preset's appended), or the recipe spelled out, e.g. ``retrain: norms + lora r8``."""
    mode = config.get("mode", "none")
    if mode == "none":
        return "prune only"
    preset = preset_of(config)
    if preset:
        lr = config.get("lr")
        return preset if lr is None or _same(lr, PRESETS[preset].get("lr", lr)) else f"{preset}, lr {lr:g}"
    parts = list(config.get("train") or [])
    if config.get("adapter", "none") != "none":
        parts.append(f"{config['adapter']} r{config.get('rank')}")
    return f"{mode}: {' + '.join(parts)}, lr {config.get('lr', 0):g}"


def preset_of(config: dict) -> str | None:
    """The config's preset when its recipe (mode, subsets, adapter, rank, alpha) is still that preset's."""
    preset = config.get("preset")
    recipe = PRESETS.get(preset or "")
    if recipe and all(_same(config.get(k), recipe[k]) for k in _RECIPE_FIELDS if k in recipe):
        return preset
    return None


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a or ()) == list(b or ())
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def pruning_label(config: dict) -> str:
    """``wanda 50%``, ``sparsegpt 2:4`` or ``wanda + OWL 70%``: the method label and how much it pruned."""
    pattern = config.get("pattern", "unstructured")
    amount = f"{config.get('sparsity', 0):.0%}" if pattern == "unstructured" else pattern
    return f"{method_label(config)} {amount}"


def run_label(row: RunRow) -> str:
    """``#12 wanda 50% · perp-masklora``: unique (the reference: ``#g12`` for a gallery run) and readable; a named
    run reads ``#12 baseline: ...``."""
    name = f" {row.name}:" if row.name else ""
    return f"#{row.ref}{name} {pruning_label(row.config)} · {retraining_label(row.config)}"


def data_label(dataset: str) -> str:
    """A named data set as is, a text file by its file name."""
    return Path(dataset).name if ("/" in dataset or dataset.endswith(".txt")) else dataset


def protocol(config: dict) -> tuple:
    """What a perplexity depends on besides the model's weights: the text, the window length, how many tokens
    and the weights' dtype. Perplexities compare only within one protocol."""
    return (config.get("dataset"), config.get("seqlen"), config.get("eval_tokens"), config.get("dtype", "float32"))


def protocol_label(config: dict) -> str:
    """``wiki-embedded, seqlen 256, 4,096 tokens`` (``, bfloat16`` when the weights were not float32)."""
    dataset, seqlen, tokens, dtype = protocol(config)
    dtype = "" if dtype == "float32" else f", {dtype}"
    return f"{data_label(dataset or '?')}, seqlen {seqlen}, {tokens or 0:,} tokens{dtype}"


def diverged(row: RunRow) -> str | None:
    """Why a finished run cannot be drawn as a normal point: the run says its perplexity diverged, or a
    perplexity it recorded is not a finite number. None for a normal run."""
    reason = getattr(row, "diverged", None) or (row.result or {}).get("diverged")
    if reason:
        return str(reason)
    for name in ("dense_ppl", "pruned_ppl", "final_ppl"):
        value = getattr(row, name)
        if value is not None and not math.isfinite(value):
            return f"{name.replace('_ppl', '')} perplexity is {value}"
    return None


def fairness_notes(rows: Sequence[RunRow], tolerance: float = 0.005) -> list[str]:
    """Warnings for a set of charted runs: several evaluation protocols (perplexities compare only within
    one), or one model and protocol whose dense perplexities differ by more than ``tolerance`` (relative)."""
    notes = []
    protocols = {protocol(r.config): protocol_label(r.config) for r in rows}
    if len(protocols) > 1:
        notes.append(f"These runs were evaluated under {len(protocols)} protocols ("
                     + "; ".join(sorted(protocols.values())) + "): perplexities compare only within a protocol, so "
                     "each protocol has its own dense reference and its own lines in the charts.")
    dense: dict[tuple, list[RunRow]] = defaultdict(list)
    for r in rows:
        if r.dense_ppl is not None and math.isfinite(r.dense_ppl):
            dense[(r.config.get("model"), protocol(r.config))].append(r)
    for (model, _), group in sorted(dense.items(), key=lambda item: str(item[0])):
        low, high = min(group, key=lambda r: r.dense_ppl), max(group, key=lambda r: r.dense_ppl)
        if high.dense_ppl > low.dense_ppl * (1 + tolerance):
            notes.append(f"{model_label(model)}, {protocol_label(low.config)}: the dense perplexity differs between "
                         f"runs (#{low.ref}: {low.dense_ppl:.2f}, #{high.ref}: {high.dense_ppl:.2f}), so something "
                         "besides pruning differs (device, library version, data file); compare them with care.")
    return notes


def block_curves(row: RunRow) -> list[list[dict]]:
    """A reconstruction's learning curves, one per block (``BlockRecord.curve``); empty when it recorded none."""
    curves = [b.get("curve") or [] for b in (row.result or {}).get("blocks", [])]
    return curves if any(curves) else []


def end_ppl(row: RunRow) -> float | None:
    """The perplexity the run ends with: after retraining, or after pruning when nothing was retrained."""
    return row.final_ppl if row.final_ppl is not None else row.pruned_ppl


def recovery(row: RunRow) -> float | None:
    """Share of the log-perplexity gap the retraining closed (:func:`perp_engine.evaluation.recovery.recovered_share`):
    1 = back to dense, 0 = no better than pruned; None without retraining or when pruning cost under 1% perplexity."""
    return recovered_share(row.dense_ppl, row.pruned_ppl, row.final_ppl)


def linear_recovery(row: RunRow) -> float | None:
    """The same share on the perplexities themselves (linear scale), shown beside :func:`recovery`."""
    return recovered_linear_share(row.dense_ppl, row.pruned_ppl, row.final_ppl)


def recovery_words(row: RunRow) -> str | None:
    """``recovered 38% of the log-ppl gap (70% of the linear ppl gap)``; None as :func:`recovery`."""
    return recovery_text(row.dense_ppl, row.pruned_ppl, row.final_ppl)


def trainable_words(row: RunRow) -> str | None:
    """``0.618% of the model's 134.5M parameters (+ 795.6k adapter weights, + untied head 28.3M)``; None when nothing
    trained (perp_engine.model.parameters.recorded_trainable_text)."""
    return recorded_trainable_text({"trainable_params": row.trainable_params, "total_params": row.total_params,
                                    **(row.result or {})})


def filter_rows(rows: Iterable[RunRow], *, statuses: Sequence[str] = (), models: Sequence[str] = (),
                methods: Sequence[str] = (), retrainings: Sequence[str] = (), tags: Sequence[str] = ()) -> list[RunRow]:
    """Rows passing every non-empty filter (an empty filter lets everything through; tags: any of them)."""
    def keep(row: RunRow) -> bool:
        return ((not statuses or row.status in statuses)
                and (not models or row.config.get("model") in models)
                and (not methods or method_label(row.config) in methods)
                and (not retrainings or retraining_label(row.config) in retrainings)
                and (not tags or bool(set(tags) & set(row.tags))))
    return [r for r in rows if keep(r)]


RECOVERED = f"recovered {SCALE}"  # the runs table's recovery columns, named by their scale
RECOVERED_LINEAR = f"recovered {LINEAR_SCALE}"
RUN_COLUMNS = ("id", "name", "status", "model", "pruning", "retraining", "dense ppl", "pruned ppl", "final ppl",
               RECOVERED, RECOVERED_LINEAR, "mean accuracy", "trainable %", "trainable params", "data", "seqlen", "eval tokens",
               "zero-shot", "calib windows", "steps", "lr", "time (s)", "device", "sweep", "tags", "created", "message")
INTEGER_COLUMNS = ("id", "trainable params", "seqlen", "eval tokens", "calib windows", "steps", "sweep")


def runs_frame(rows: Iterable[RunRow]) -> pd.DataFrame:
    """The runs table, one row per run in the order given: results (the mean zero-shot accuracy of the model the
    run ends with, when scored), the evaluation protocols (data, seqlen, eval tokens; the zero-shot tasks, docs
    and source) and recipe size (calibration windows, steps, lr), integer counts as integers, ``created`` as a
    UTC time."""
    records = []
    for r in rows:
        cfg = r.config
        retrains = cfg.get("mode", "none") != "none"
        records.append({
            "id": r.id,
            "name": r.name,
            "status": r.status,
            "model": model_label(cfg.get("model", "")),
            "pruning": pruning_label(cfg),
            "retraining": retraining_label(cfg),
            "dense ppl": r.dense_ppl,
            "pruned ppl": r.pruned_ppl,
            "final ppl": r.final_ppl,
            RECOVERED: recovery(r),
            RECOVERED_LINEAR: linear_recovery(r),
            "mean accuracy": end_accuracy(r),
            "trainable %": None if r.trainable_fraction is None else 100 * r.trainable_fraction,
            "trainable params": r.trainable_params,
            "data": data_label(cfg.get("dataset", "")),
            "seqlen": cfg.get("seqlen"),
            "eval tokens": cfg.get("eval_tokens"),
            "zero-shot": protocol_text(r),
            "calib windows": cfg.get("calib_samples"),
            "steps": cfg.get("steps") if retrains else None,
            "lr": cfg.get("lr") if retrains else None,
            "time (s)": None if r.duration is None else round(r.duration, 1),
            "device": r.environment.get("device") if r.environment else None,
            "sweep": r.sweep_id,
            "tags": ", ".join(r.tags),
            "created": r.created_at,
            "message": r.error if r.status in ("failed", "cancelled") else r.message,
        })
    frame = pd.DataFrame.from_records(records, columns=list(RUN_COLUMNS))
    for column in INTEGER_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    frame["created"] = pd.to_datetime(frame["created"], unit="s", utc=True)
    return frame


def runs_csv(frame: pd.DataFrame) -> str:
    """The table as CSV: ISO 8601 UTC times, integers without ``.0``, empty cells for missing values."""
    out = frame.copy()
    out["created"] = [t.isoformat(timespec="seconds") if not pd.isna(t) else "" for t in out["created"]]
    return out.to_csv(index=False)


def iso_time(timestamp: float) -> str:
    """``2026-12-01 12:50`` in local time: a date anyone can read and sort."""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


