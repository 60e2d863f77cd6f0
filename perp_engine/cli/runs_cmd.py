"""``perp runs``: list, filter and show the runs of the store (``--json`` for scripts).

Also holds the ``--store`` flag shared by the store commands (runs, sweep, cancel, export).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from ..config import ZERO_SHOT_MODELS, method_label
from ..evaluation.recovery import recovery_text
from ..evaluation.zero_shot_table import mean_accuracy, protocol, task_rows
from ..model.parameters import recorded_trainable_text
from ..resources.estimate import estimate_text
from ..result import notices
from ..store import STATUSES, RunRow, RunStore

SHOW_LOG_LINES = 20


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="PATH",
                        help="run store file (default: $PERP_STORE, else runs.sqlite in $PERP_HOME or ~/.cache/perp-lab)")


def store_from_args(args: argparse.Namespace) -> RunStore:
    return RunStore(args.store)


def add_parser(sub) -> None:
    parser = sub.add_parser("runs", help="list, filter and show runs",
                            description="List the runs of the store, newest first, or show one run in detail.")
    parser.add_argument("id", nargs="?", help="show this run: config, results, timings, environment, layers, log")
    parser.add_argument("--status", choices=STATUSES, action="append", help="only runs with this status (repeatable)")
    parser.add_argument("--model", help="only runs of this model (as given in the config)")
    parser.add_argument("--method", help="only runs of this pruning method")
    parser.add_argument("--sweep", type=int, metavar="N", help="only the runs of sweep N")
    parser.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs (default: 50; 0 = all)")
    parser.add_argument("--sweeps", action="store_true", help="list the sweeps instead of the runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_store_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    if args.id is not None:
        return show_run(store, args.id, args.json)
    if args.sweeps:
        sweeps = store.list_sweeps()
        print(to_json(sweeps) if args.json else sweeps_table(sweeps))
        return 0
    if args.sweep is not None:
        store.get_sweep(args.sweep)
    rows = store.list_runs(status=args.status, model=args.model, method=args.method, sweep_id=args.sweep,
                           limit=args.limit or None)
    if args.json:
        print(to_json([r.to_dict() for r in rows]))
        return 0
    print(runs_table(rows) if rows else "no runs" + (" match" if any((args.status, args.model, args.method, args.sweep)) else " yet"))
    queued = store.list_runs(status="queued", limit=1)
    if queued and not store.live_workers():
        print("note: runs are queued but no worker is running; `perp sweep --resume` starts workers", file=sys.stderr)
    return 0


def show_run(store: RunStore, run_id, as_json: bool) -> int:
    row = store.get_run(run_id)
    layers, blocks, logs = store.layers(row.id), store.blocks(row.id), store.logs(row.id)
    if as_json:
        print(to_json({**row.to_dict(), "layers": layers, "blocks": blocks,
                       "curves": {"train_loss": store.curve(row.id)}, "logs": logs}))
        return 0
    cfg = row.config
    lines = [f"run {row.id}  {row.status}" + (f"  (sweep {row.sweep_id})" if row.sweep_id else "")
             + (f"  pid {row.pid} on {row.host}" if row.status == "running" else "")]
    if row.name or row.tags:
        lines.append(f"  name: {row.name or '-'}" + (f"  tags: {', '.join(row.tags)}" if row.tags else ""))
    if row.status == "running":
        lines.append(f"  now: {row.stage or 'starting'} {100 * row.fraction:.0f}%  {row.message}")
    if row.error:
        lines.append(f"  {'reason' if row.status == 'cancelled' else 'error'}: {row.error}")
    if row.diverged:
        lines.append(f"  DIVERGED: {row.diverged}")
    estimated = estimate_text((row.result or {}).get("estimate"), None)
    lines.append(f"  created {_when(row.created_at)}" + (f", started {_when(row.started_at)}" if row.started_at else "")
                 + (f", took {row.duration:.1f} s" if row.duration is not None else "")
                 + (f" ({estimated})" if estimated else ""))
    lines.append("config: " + " ".join(f"{k}={_value(v)}" for k, v in sorted(cfg.items())))
    if row.status == "done":
        recovered = recovery_text(row.dense_ppl, row.pruned_ppl, row.final_ppl)
        lines.append(f"perplexity: dense {_num(row.dense_ppl)}  pruned {_num(row.pruned_ppl)}  final "
                     f"{'diverged' if row.diverged else _num(row.final_ppl)}  sparsity {row.sparsity:.4f}"
                     + (f"  ({recovered})" if recovered else ""))
        lines += allocation_lines(row.result or {})
        record = {"trainable_params": row.trainable_params, "total_params": row.total_params, **(row.result or {})}
        if trained := recorded_trainable_text(record):
            lines.append(f"trainable: {row.trainable_params:,}, {trained}")
        lines += zero_shot_lines((row.result or {}).get("zero_shot"))
        lines += curve_lines(row.result or {})
        lines.append("timings: " + "  ".join(f"{k} {v:.1f}s" for k, v in row.timings.items())
                     + f"  peak memory {_num(row.peak_memory_mb, '.0f')} MB")
        if row.reused:
            lines.append(f"reused: {', '.join(row.reused)}")
        lines += [f"{n.level}: {n.text}" for n in notices({**record, "warnings": row.warnings, "diverged": row.diverged})]
        lines.append("environment: " + " ".join(f"{k}={v}" for k, v in sorted(row.environment.items())))
        if row.artifact:
            lines.append(f"kept model: {row.artifact}")
    if layers:
        windows = (row.result or {}).get("measure_windows") or {}
        where = (f"{windows['count']} held-out windows of {windows['seqlen']} tokens" if windows
                 else "calibration windows; recorded before local errors existed: drift only")
        lines.append(f"layers ({len(layers)}), errors on {where}:  name  sparsity  local before -> after"
                     "  drift before -> after")
        lines += [f"  {r['name']}  {r['sparsity']:.3f}  {_num(r['recon_error'], '.4g')} -> {_num(r['recon_error_after'], '.4g')}"
                  f"  {_num(r.get('drift'), '.4g')} -> {_num(r.get('drift_after'), '.4g')}" for r in layers]
    if blocks:
        lines.append("blocks, local: " + "  ".join(
            f"{b['block']}: {_num(b['loss_before'], '.3g')}->{_num(b['loss_after'], '.3g')}" for b in blocks))
        lines.append("blocks, drift: " + "  ".join(
            f"{b['block']}: {_num(b.get('drift_before'), '.3g')}->{_num(b.get('drift_after'), '.3g')}" for b in blocks))
    if logs:
        lines.append(f"log (last {min(len(logs), SHOW_LOG_LINES)} of {len(logs)} lines):")
        lines += [f"  {line}" for line in logs[-SHOW_LOG_LINES:]]
    print("\n".join(lines))
    return 0


def allocation_lines(result: dict) -> list[str]:
    """Each block's sparsity and outlier share, for a run whose allocation gave blocks their own (OWL)."""
    shares = result.get("outlier_share") or []
    if not shares:
        return []
    targets = result.get("block_sparsity") or []
    return ["blocks (OWL): sparsity (outlier share)  " + "  ".join(
        f"{i}: {s:.3f} ({d:.2f}%)" for i, (s, d) in enumerate(zip(targets, shares)))]


def curve_lines(result: dict) -> list[str]:
    """The learning curve of a run (``--eval-every``): held-out perplexity by step, or each block's first and last
    held-out error; nothing when it has none."""
    seconds = f"{result.get('curve_seconds', 0.0):.1f} s of measuring"
    if result.get("curve"):
        seconds += f", {result.get('curve_seconds', 0.0) / len(result['curve']):.2f} s per point"
        return [f"learning curve ({seconds}): step ppl  " + "  ".join(
            f"{p['step']}: {_num(p['ppl'], '.2f')}" for p in result["curve"])]
    blocks = [b for b in result.get("blocks", []) if b.get("curve")]
    if not blocks:
        return []
    return [f"block learning curves ({seconds}), held-out error at step 0 -> last step: " + "  ".join(
        f"{b['block']}: {_num(b['curve'][0]['error'], '.3g')}->{_num(b['curve'][-1]['error'], '.3g')}" for b in blocks)]


def zero_shot_lines(zero_shot: dict | None) -> list[str]:
    """The zero-shot table of a run: per task its metric on the dense, pruned and final model (+- standard
    error), then the mean over tasks."""
    rows = task_rows(zero_shot)
    if not rows:
        return []
    scored = [m for m in ZERO_SHOT_MODELS if (zero_shot or {}).get(m)]
    lines = [f"zero-shot accuracy, {protocol(zero_shot).describe()}:  task  metric  "
             + "  ".join(scored) + "  (+- standard error; chance in brackets)"]
    for r in rows:
        cells = [f"{_num(r.value.get(m), '.3f')}" + (f"+-{r.stderr[m]:.3f}" if r.stderr.get(m) is not None else "")
                 for m in scored]
        lines.append(f"  {r.title} ({r.split}, {r.docs} of {r.total:,})  {r.metric}  " + "  ".join(cells)
                     + f"  [{r.chance:.2f}]")
    lines.append("  mean  " + "  ".join(_num(mean_accuracy(zero_shot, m), ".3f") for m in scored))
    return lines


def to_json(value) -> str:
    """Strict JSON for scripts: non-finite numbers (an overflowed perplexity) become null."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def runs_table(rows: list[RunRow]) -> str:
    """A fixed-width table of runs: one line each."""
    header = ("ID", "STATUS", "MODEL", "METHOD", "SPARSITY", "PATTERN", "REPAIR", "DENSE", "PRUNED", "FINAL", "PROGRESS")
    body = [header] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in body)


def sweeps_table(sweeps: list[dict]) -> str:
    if not sweeps:
        return "no sweeps yet"
    lines = []
    for s in sweeps:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(s["counts"].items()))
        lines.append(f"sweep {s['id']}  {s['name']}  {_when(s['created_at'])}  {s['runs']} runs: {counts or 'none'}")
    return "\n".join(lines)


def _cells(r: RunRow) -> tuple[str, ...]:
    cfg = r.config
    repair = cfg.get("preset") or (cfg["mode"] if cfg["mode"] == "none" else f"{cfg['mode']}:{'+'.join(cfg['train'])}")
    if r.status == "running":
        progress = f"{r.stage or 'starting'} {100 * r.fraction:.0f}%"
    elif r.status in ("failed", "cancelled"):
        progress = (r.error or "")[:40]
    elif r.status == "done":
        took = f"{r.duration:.0f}s" if r.duration is not None else ""
        progress = f"{took} reused {'+'.join(r.reused)}" if r.reused else took
    else:
        progress = ""
    return (str(r.id), r.status, Path(cfg["model"]).name, method_label(cfg), f"{cfg['sparsity']:g}", cfg["pattern"], repair,
            _num(r.dense_ppl), _num(r.pruned_ppl), "diverged" if r.diverged else _num(r.final_ppl), progress)


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _value(value) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"
