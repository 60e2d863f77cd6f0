"""A damaged store: find the damage (``check_store``) and salvage the readable rows into a new file
(``recover_store``), keeping the damaged file aside.

SQLite reports damaged pages as "database disk image is malformed". Salvage reads every table by rowid in
chunks; a chunk that touches a damaged page is read again one rowid at a time, so only the rows on damaged
pages are lost. A run whose JSON columns do not decode is lost too; the layers, curves and logs of a lost run
are dropped with it. The recovered file gets the current schema; the damaged one is renamed
``<name>.damaged-<time>`` beside it (with its ``-wal`` file), never deleted. Ids are never given twice: the
recovered store goes on after the highest id the damaged one gave (lost rows included) and after every kept-model
folder beside it, so a new run never takes a lost run's id or its folder.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PerpError
from .processes import hostname, is_alive
from .run_store import RunStore, StoreError, artifacts_folder, is_damage

CHUNK = 256
# copied in this order (parents before children); the worker registry is left out: its processes are gone
TABLES = ("sweeps", "runs", "layers", "blocks", "curves", "logs")
JSON_COLUMNS = ("config", "timings", "reused", "environment", "warnings", "result")
MAX_PROBLEMS = 20
SEQUENCE_SQL = "SELECT seq FROM sqlite_sequence WHERE name = ?"  # the highest id an AUTOINCREMENT table gave


@dataclass
class Recovered:
    path: Path  # the recovered store (the original path)
    aside: Path  # where the damaged file now is
    kept: dict[str, int] = field(default_factory=dict)  # rows copied, per table
    lost: dict[str, int] = field(default_factory=dict)  # rows found unreadable (or orphaned), per table


def check_store(path: str | os.PathLike) -> list[str]:
    """The problems SQLite's integrity check and a decode of every run find; empty when the store is sound."""
    path = _existing(path)
    conn = _read_only(path)
    try:
        try:
            problems = [r[0] for r in conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})") if r[0] != "ok"]
        except sqlite3.DatabaseError as err:
            return [str(err)]
        try:
            for row in conn.execute(f"SELECT id, {', '.join(JSON_COLUMNS)} FROM runs"):
                if not _decodes(row[1:]):
                    problems.append(f"run {row[0]}: a JSON column does not decode")
        except sqlite3.DatabaseError as err:
            problems.append(str(err))
    finally:
        conn.close()
    return problems[:MAX_PROBLEMS]


def recover_store(path: str | os.PathLike) -> Recovered:
    """Copy the readable rows of the store at ``path`` into a new store that takes its place; the damaged
    file is renamed aside. PerpError when workers still use the store or nothing at all can be read."""
    path = _existing(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fresh = path.with_name(f"{path.name}.recovering-{stamp}")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    source = _read_only(path)
    try:
        _refuse_live_workers(source, path)
        RunStore(fresh, recover=False).close()  # the current schema, empty
        target = sqlite3.connect(fresh, isolation_level=None)
        try:
            target.execute("BEGIN")
            result = Recovered(path=path, aside=aside)
            _copy_tables(source, target, result)
            _keep_high_water_marks(source, target, artifacts_folder(path))
            target.execute("COMMIT")
        finally:
            target.close()
    except BaseException:
        for leftover in (fresh, *_sidecars(fresh)):
            leftover.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    os.replace(path, aside)
    for sidecar in _sidecars(path):
        if sidecar.name.endswith("-wal"):
            os.replace(sidecar, aside.with_name(aside.name + "-wal"))
        else:
            sidecar.unlink(missing_ok=True)
    os.replace(fresh, path)
    return result


def _copy_tables(source: sqlite3.Connection, target: sqlite3.Connection, result: Recovered) -> None:
    runs: set[int] = set()
    sweeps: set[int] = set()
    for table in TABLES:
        columns = [c for c in _columns(source, table) if c in _columns(target, table)]
        if not columns:
            raise StoreError(f"the schema of the damaged store cannot be read, so no table can be salvaged "
                             f"(the file is kept at {result.path})")
        rows, unreadable = _salvage(source, table, columns)
        kept = 0
        for row in rows:
            values = dict(zip(columns, row))
            if table == "runs":
                if not _decodes([values.get(c) for c in JSON_COLUMNS if c in values]):
                    unreadable += 1
                    continue
                if values.get("sweep_id") not in sweeps:
                    values["sweep_id"] = None
            elif "run_id" in values and values["run_id"] not in runs:
                unreadable += 1  # its run was lost
                continue
            try:
                target.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                               list(values.values()))
            except sqlite3.DatabaseError:  # a damaged value that breaks a constraint
                unreadable += 1
                continue
            kept += 1
            if table == "runs":
                runs.add(values["id"])
            elif table == "sweeps":
                sweeps.add(values["id"])
        result.kept[table] = kept
        result.lost[table] = unreadable


def _salvage(conn: sqlite3.Connection, table: str, columns: list[str]) -> tuple[list[tuple], int]:
    """The readable rows of ``table`` in rowid order, and how many rowids could not be read."""
    select = f"SELECT rowid, {', '.join(columns)} FROM {table}"
    top = _max_rowid(conn, table)
    rows: list[tuple] = []
    unreadable = 0
    last = 0
    while True:
        try:
            chunk = conn.execute(f"{select} WHERE rowid > ? ORDER BY rowid LIMIT {CHUNK}", (last,)).fetchall()
        except sqlite3.DatabaseError:
            chunk = None
        if chunk:
            rows += [r[1:] for r in chunk]
            last = chunk[-1][0]
            continue
        if chunk is not None or last >= top:
            return rows, unreadable
        # the next chunk touches a damaged page: read one rowid at a time until a row reads again
        while last < top:
            last += 1
            try:
                row = conn.execute(f"{select} WHERE rowid = ?", (last,)).fetchone()
            except sqlite3.DatabaseError:
                unreadable += 1
                continue
            if row is not None:
                rows.append(row[1:])
                break


def _max_rowid(conn: sqlite3.Connection, table: str) -> int:
    """The highest rowid the table or sqlite_sequence still knows (a damaged last page can hide the table's newest
    rows from ``max(rowid)`` without an error; the sequence still counts them)."""
    top = 0
    for sql, params in ((f"SELECT max(rowid) FROM {table}", ()), (SEQUENCE_SQL, (table,))):
        try:
            row = conn.execute(sql, params).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row and row[0] is not None:
            top = max(top, int(row[0]))
    return top


def _keep_high_water_marks(source: sqlite3.Connection, target: sqlite3.Connection, artifacts: Path) -> None:
    """Make each AUTOINCREMENT table of the new store go on after the highest id the damaged one ever gave (its
    sqlite_sequence: rowids read off a damaged page can be any number), and runs also after the highest id
    among the kept-model folders beside the store (``12``, ``12.partial``)."""
    names = [p.name.split(".")[0] for p in artifacts.iterdir()] if artifacts.is_dir() else []
    folders = [int(name) for name in names if name.isdigit()]
    tables = [r[0] for r in target.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE"
                                           " '%AUTOINCREMENT%'")]
    for table in tables:
        try:
            given = source.execute(SEQUENCE_SQL, (table,)).fetchone()
        except sqlite3.DatabaseError:  # unreadable: the ids of the rows kept and the folders are all there is
            given = None
        top = max([0, *(given or [0]), *(folders if table == "runs" else [])])
        if target.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (top, table)).rowcount == 0:
            target.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, top))


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return []


def _decodes(values) -> bool:
    try:
        for value in values:
            if value is not None:
                json.loads(value)
    except (TypeError, ValueError):
        return False
    return True


def _refuse_live_workers(conn: sqlite3.Connection, path: Path) -> None:
    try:
        workers = conn.execute("SELECT pid, pid_start FROM workers WHERE host = ?", (hostname(),)).fetchall()
    except sqlite3.DatabaseError:
        return
    alive = [str(pid) for pid, start in workers if is_alive(pid, start)]
    if alive:
        raise PerpError("store", f"worker process(es) {', '.join(alive)} still use {path}; stop them first "
                                 "(perp cancel, or end the processes), then recover")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise StoreError(f"{path} is not a file; give the path of a run store (--store)")
    return path


def _read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as err:
        conn.close()
        if is_damage(err):
            raise StoreError(f"{path} is damaged beyond salvage ({err}); its first page, which lists the tables, "
                             "cannot be read") from None
        raise StoreError(f"{path} is not a PERP Lab run store ({err})") from None
    return conn


def _sidecars(path: Path) -> list[Path]:
    return [p for p in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if p.exists()]
