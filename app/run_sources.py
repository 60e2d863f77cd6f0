"""The runs the app shows: the user's own store and, beside it, the gallery shipped with the project (the
reproduction's runs and the methods table's, read-only: perp_engine.store.gallery), so Compare, Layers, Run and
Paper have something to show from the first start. The two stores' ids overlap, so the pages name a run by its
reference: ``12`` for the user's run 12, ``g12`` for the gallery's (``RunRow.ref``). No Streamlit here.

``$PERP_GALLERY`` chooses the gallery: unset, the shipped file (docs/paper/store/runs.sqlite); ``off`` hides it;
a path opens another store file read-only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.store import GalleryStore, RunRow, RunStore, run_ref, split_ref

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "paper" / "store" / "runs.sqlite"  # scripts/build_gallery.py writes it
GALLERY_ENV = "PERP_GALLERY"
GALLERY_OFF = ("off", "0", "no", "false", "none")
YOURS, GALLERY_SOURCE = "your runs", "gallery"  # Compare's Source filter
SOURCES = (YOURS, GALLERY_SOURCE)


def gallery_path(own: Path) -> Path | None:
    """The gallery the app opens beside the store at ``own``: ``$PERP_GALLERY`` or the shipped file. None when
    it is off, when the shipped file is absent, or when it is ``own`` itself (its runs are then the user's)."""
    value = os.environ.get(GALLERY_ENV, "").strip()
    if value.lower() in GALLERY_OFF:
        return None
    path = Path(value).expanduser() if value else GALLERY
    if not path.is_file():
        if value:
            raise PerpError(GALLERY_ENV, f"{path} is not a file; give a run store file, or off to hide the gallery")
        return None
    return None if path.resolve() == Path(own).resolve() else path


class Runs:
    """The user's store and the gallery (None when there is none) read as one list of rows; each row's layers,
    blocks, curves and log come from the store it was read from. Only reading: writes go to ``own``."""

    def __init__(self, own: RunStore, gallery: GalleryStore | None):
        self.own = own
        self.gallery = gallery

    def list_runs(self, status: str | Sequence[str] | None = None, limit: int | None = None) -> list[RunRow]:
        """The user's runs (newest first), then the gallery's finished runs (newest first)."""
        rows = self.own.list_runs(status=status, limit=limit)
        if self.gallery is not None and (status is None or "done" in ([status] if isinstance(status, str) else status)):
            rows += self.gallery.list_runs(status="done", limit=limit)
        return rows

    def get_run(self, ref: str | int) -> RunRow:
        """The run ``12`` (the user's) or ``g12`` (the gallery's); PerpError when there is none."""
        gallery, number = split_ref(ref)
        if not gallery:
            return self.own.get_run(number)
        if self.gallery is None:
            raise PerpError("run", f"no gallery run {ref}: the gallery is off ({GALLERY_ENV})")
        return self.gallery.get_run(number)

    def twin(self, config: RunConfig, statuses: Sequence[str]) -> RunRow | None:
        """The run an identical ``config`` (the stores' config key) would repeat: the user's newest in one of
        ``statuses``, else the gallery's newest finished one (its numbers are there to open; running it again puts
        a copy in the user's store); None when neither store holds one."""
        own = self.own.latest_with_config(config, status=statuses)
        if own is not None or self.gallery is None:
            return own
        return self.gallery.latest_with_config(config, status="done")

    def store_of(self, row: RunRow) -> RunStore:
        return self.gallery if row.gallery and self.gallery is not None else self.own

    def layers(self, row: RunRow) -> list[dict]:
        return self.store_of(row).layers(row.id)

    def blocks(self, row: RunRow) -> list[dict]:
        return self.store_of(row).blocks(row.id)

    def curve(self, row: RunRow, name: str = "train_loss") -> list[float]:
        return self.store_of(row).curve(row.id, name)

    def logs(self, row: RunRow) -> list[str]:
        return self.store_of(row).logs(row.id)


def query_refs(values: Iterable[str]) -> list[str]:
    """The run references in a page address (``?run=12``, ``?run=g12``, several), normalised (``#12`` -> ``12``,
    ``G12`` -> ``g12``), ignoring what names no run."""
    refs = []
    for value in values:
        try:
            refs.append(run_ref(*split_ref(value)))
        except PerpError:
            continue
    return refs


def of_sources(rows: Iterable[RunRow], sources: Sequence[str]) -> list[RunRow]:
    """The rows from the chosen sources (``SOURCES``; none chosen: all)."""
    return [r for r in rows if not sources or (GALLERY_SOURCE if r.gallery else YOURS) in sources]

