"""RunRow: one run as read from the store, with its JSON columns decoded."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass, field

from ..errors import PerpError
from .schema import FINISHED

GALLERY_PREFIX = "g"  # a gallery run's reference: g12 (perp_engine.store.gallery); the user's own run 12 is 12


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
    gallery: bool = False  # read from the gallery store (read-only), not from the user's own store

    @property
    def ref(self) -> str:
        """How the app names the run: ``12``, or ``g12`` for a gallery run (the two stores' ids overlap)."""
        return run_ref(self.gallery, self.id)

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


def run_ref(gallery: bool, number: int) -> str:
    """The reference of run ``number`` of the gallery (``g12``) or of the user's own store (``12``)."""
    return f"{GALLERY_PREFIX}{number}" if gallery else str(number)


def split_ref(ref: str | int) -> tuple[bool, int]:
    """``"g12"`` -> (True, 12), a gallery run; ``"12"``, ``"#12"`` or 12 -> (False, 12), the user's own run 12.
    PerpError for anything else."""
    text = str(ref).strip().lstrip("#")
    gallery = text[:1].lower() == GALLERY_PREFIX
    number = text[1:] if gallery else text
    if not number.isdecimal() or int(number) < 1:
        raise PerpError("run", f"{ref!r} is not a run; use a run's number (12) or a gallery run's (g12)")
    return gallery, int(number)
