"""GalleryStore: a run store opened read-only, shown beside the user's own store.

The app ships one (the reproduction's runs and the methods table's, ``scripts/build_gallery.py``), so its pages
have runs to explore from the first start. The file is opened with SQLite's ``mode=ro&immutable=1``: SQLite never
writes it, locks it or creates a journal beside it, so a gallery in a read-only folder (an installed package, a
checkout) works and its bytes never change. A gallery of an older schema is copied into memory and migrated there.
Every write raises :class:`StoreError`; its rows come back with ``gallery=True`` (referenced as ``g12``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .rows import RunRow
from .run_store import RunStore, StoreDamaged, StoreError, connect
from .schema import SCHEMA_VERSION, migrate, schema_version


class GalleryStore(RunStore):
    """The store at ``path``, read-only. StoreError when there is no file there or it is not a run store."""

    def __init__(self, path: str | Path):
        super().__init__(path, recover=False)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no gallery store there; give the path of a run store file")
        conn = connect(f"{self.path.as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            self._check_identity(conn)
            if schema_version(conn) < SCHEMA_VERSION:
                memory = connect(":memory:")
                conn.backup(memory)
                conn.close()
                conn = memory
                migrate(conn)
        except BaseException:
            conn.close()
            raise
        conn.row_factory = sqlite3.Row
        return conn

    def _open(self) -> None:
        """Check the file for damaged pages (nothing to migrate on disk: :meth:`_connect` migrates a copy)."""
        with self._damage_check():
            problem = self._conn().execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":
            raise StoreDamaged(self.path, problem)

    def _write(self):
        """Every write (create, record, rename, tag, delete, cancel) stops here, before SQLite is asked."""
        raise StoreError(f"{self.path} is the gallery, opened read-only: its runs cannot be changed")

    def _runs(self, sql: str, params: Sequence = ()) -> list[RunRow]:
        return [dataclasses.replace(r, gallery=True) for r in super()._runs(sql, params)]

    def recover(self) -> list[int]:
        """Nothing runs in a gallery: no run to mark failed."""
        return []

