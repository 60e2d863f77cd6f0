"""RunRow: one run as read from the store, with its JSON columns decoded."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass, field

from .schema import FINISHED


@dataclass
class RunRow:
    id: int
    status: str  # queued | running | done | failed | cancelled
    config: dict
    preset: str | None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    stage: str | None = None
    fraction: float = 0.0
    message: str = ""
    error: str | None = None
    dense_ppl: float | None = None
    pruned_ppl: float | None = None
    final_ppl: float | None = None
    sparsity: float | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    trainable_fraction: float | None = None
    peak_memory_mb: float | None = None
    timings: dict = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sweep_id: int | None = None
    pid: int | None = None
    result: dict | None = None  # the full RunResult dict once the run is done
    heartbeat_at: float | None = None  # last progress report of the process running it
    host: str | None = None
    cancel_requested: bool = False
    keep_model: bool = False
    recompute: bool = False
    artifact: str | None = None  # folder of the kept final model (HF format + masks), when kept
    errors_format: int | None = None  # perp_engine.result.ERRORS_FORMAT of its layer errors (1: drift only)
    diverged: str | None = None  # why the repair was judged diverged (the run is done, its pruned weights kept)
    name: str | None = None  # the user's name for the run
    tags: list[str] = field(default_factory=list)
    stage_started_at: float | None = None  # when the current stage began (while running)
    stage_seconds: dict = field(default_factory=dict)  # seconds of each stage finished so far (while running)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or to the last heartbeat while running)."""
        end = self.finished_at or self.heartbeat_at
        return end - self.started_at if self.started_at and end else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_JSON = {"config": None, "timings": {}, "reused": [], "environment": {}, "warnings": [], "result": None, "tags": [],
         "stage_seconds": {}}
_BOOL = ("cancel_requested", "keep_model", "recompute")
_FIELDS = {f.name for f in dataclasses.fields(RunRow)}


def row_from_sql(row: sqlite3.Row) -> RunRow:
    values = {k: row[k] for k in row.keys() if k in _FIELDS}
    for name, empty in _JSON.items():
        text = values.get(name)
        values[name] = json.loads(text) if text else empty
    for name in _BOOL:
        values[name] = bool(values[name])
    return RunRow(**values)
