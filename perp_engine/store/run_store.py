"""RunStore: every run, its status, progress, results, per-layer metrics, curves and logs, in one SQLite file.

Concurrency: WAL mode (readers never block the writer and see only committed transactions), a busy timeout,
and every write in a ``BEGIN IMMEDIATE`` transaction, so several worker processes, the CLI and the app can
share one store. A run's results, layers, blocks and curves are written in one transaction with its status
``done``: a reader never sees a half-written run. Each thread gets its own connection (sqlite3 connections
must not cross threads), so one RunStore may be shared by a Streamlit server's script threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..config import RunConfig, read_fields
from ..errors import PerpError, check_choice
from ..result import RunResult
from .processes import hostname, is_alive, start_time
from .rows import RunRow, row_from_sql
from .schema import APPLICATION_ID, CONFIG_KEY_SQL, FINISHED, SCHEMA_VERSION, STATUSES, migrate, schema_version

CURVES = ("train_loss",)  # RunResult list fields stored per step in the curves table
# LayerRecord / BlockRecord fields with their own column; fields added to those records later go to ``extra``.
LAYER_COLUMNS = ("name", "block", "kind", "sparsity", "recon_error", "recon_error_after", "numel")
BLOCK_COLUMNS = ("block", "loss_before", "loss_after", "train_loss_before", "train_loss_after")
BUSY_TIMEOUT_S = 30.0
MAX_ID = 2**63 - 1  # SQLite's largest rowid
T = TypeVar("T")
REASON_CHARS = 160  # of SQLite's description of damage, in the one-line error
MAX_NAME = 100  # characters of a run's name
_UNFINISHED = ", ".join(f"'{s}'" for s in STATUSES if s not in FINISHED)  # the statuses a run can still leave
MAX_TAG = 40


class StoreError(PerpError):
    """The store file cannot be used (not a store, a newer schema, a folder...). One line for users."""

    def __init__(self, message: str):
        super().__init__("store", message)


class StoreDamaged(StoreError):
    """SQLite found damaged pages (or a row holds unreadable JSON): say where, and how to salvage the runs."""

    def __init__(self, path: Path, reason: str):
        reason = " ".join(reason.replace("*** in database main ***", "").split())[:REASON_CHARS]  # one line
        flag = f" --store {path}"
        super().__init__(f"{path} is damaged ({reason}); `perp store check{flag}` lists the damage, "
                         f"`perp store recover{flag}` salvages the readable runs into a new file")
        self.path = path


def is_damage(err: sqlite3.DatabaseError) -> bool:
    """True for SQLite's "database disk image is malformed" family (SQLITE_CORRUPT and its extended codes)."""
    return (getattr(err, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_CORRUPT


def default_store_path() -> Path:
    """``$PERP_STORE`` when set, else ``perp_home()/runs.sqlite``."""
    env = os.environ.get("PERP_STORE")
    if env:
        return Path(env).expanduser()
    from ..paths import perp_home

    return perp_home() / "runs.sqlite"


def artifacts_folder(store_path: Path) -> Path:
    """The folder of the kept models of the store at ``store_path``: one subfolder per run, named by its id."""
    return store_path.parent / "artifacts" / store_path.stem


def config_key(config: dict) -> str:
    """A digest of the fields a config's run reads (:func:`~perp_engine.config.read_fields`: a run that does not
    repair leaves out the repair's) that differ from RunConfig's defaults: runs with equal keys compute the same
    thing, and a field added later with its default (the behaviour before it existed) leaves the keys of the runs
    stored before as they were."""
    defaults = RunConfig().to_dict()
    changed = {k: v for k, v in read_fields(config).items() if k not in defaults or v != defaults[k]}
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()


def connect(target: str | os.PathLike, uri: bool = False) -> sqlite3.Connection:
    """An autocommit connection to ``target`` (a file, or an SQLite URI with ``uri``) with the SQL function of
    config keys that migration 6 calls."""
    conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.create_function(CONFIG_KEY_SQL, 1, lambda text: config_key(json.loads(text)), deterministic=True)
    return conn


class RunStore:
    """Open (creating and migrating as needed) the store at ``path``; ``None`` means :func:`default_store_path`.

    On open, runs left ``running`` by a process of this host that is gone are marked failed (see :meth:`recover`).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, recover: bool = True):
        self.path = Path(path).expanduser().absolute() if path else default_store_path().absolute()
        self._local = threading.local()
        self._open()
        if recover:
            self.recover()

    # -- files next to the store --------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def cache_dir(self) -> Path:
        """Artifact cache shared by the runs of this folder (dense perplexities, pruned weights)."""
        return self.root / "cache"

    def artifact_dir(self, run_id: int) -> Path:
        """Where a run's final model is kept when it was submitted with ``keep_model``."""
        return artifacts_folder(self.path) / str(run_id)

    # -- connection -----------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        """A new connection, after checking the file is a store (or empty) and before changing anything in it."""
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder; give the path of a store file such as {self.path / 'runs.sqlite'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            self._check_identity(conn)
            conn.row_factory = sqlite3.Row
            with self._damage_check():
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_identity(self, conn: sqlite3.Connection) -> None:
        try:
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            version = schema_version(conn)
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as err:
            if is_damage(err):
                raise StoreDamaged(self.path, str(err)) from None
            raise StoreError(f"{self.path} is not a PERP Lab run store ({err}); use another --store or PERP_STORE") from None
        if app != APPLICATION_ID and (version or tables):
            raise StoreError(f"{self.path} is an SQLite database of another program, not a PERP Lab run store; "
                             "use another --store or PERP_STORE")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than this perp-lab knows "
                             f"({SCHEMA_VERSION}); upgrade perp-lab or use another --store")

    def _open(self) -> None:
        """Check the file for damaged pages, then migrate an older store to this version, after a backup copy.

        SQLite's quick check reads every page (about 30 ms for a store of 300 full runs), so a damaged store is
        reported by every command that opens it, not only by those that happen to read a damaged page."""
        conn = self._conn()
        version = schema_version(conn)
        with self._damage_check():
            problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise StoreDamaged(self.path, problem)
            if 0 < version < SCHEMA_VERSION:
                backup = self.path.with_name(f"{self.path.name}.schema-v{version}.bak")
                if not backup.exists():
                    dest = sqlite3.connect(backup)
                    try:
                        conn.backup(dest)
                    finally:
                        dest.close()
            if version < SCHEMA_VERSION:
                migrate(conn)

    @contextmanager
    def _damage_check(self) -> Iterator[None]:
        """Turn SQLite's corruption errors into one line: :class:`StoreDamaged`."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            if is_damage(err):
                raise StoreDamaged(self.path, str(err)) from None
            raise

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's store is collected)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return schema_version(self._conn())

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any exception, including a cancellation raised mid-way."""
        conn = self._conn()
        with self._damage_check():
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        with self._damage_check():
            return self._conn().execute(sql, params).fetchall()

    def _runs(self, sql: str, params: Sequence = ()) -> list[RunRow]:
        """Whole run rows, decoded."""
        return self._decoded(self._rows(sql, params), row_from_sql)

    def _decoded(self, rows: list[sqlite3.Row], decode: Callable[[sqlite3.Row], T]) -> list[T]:
        """``decode`` of each row; a JSON column that does not decode means the row's bytes were damaged."""
        try:
            return [decode(r) for r in rows]
        except ValueError as err:
            raise StoreDamaged(self.path, f"a row holds unreadable data: {err}") from None

    # -- runs -----------------------------------------------------------------------------------------------

    def create_run(self, config: RunConfig, sweep_id: int | None = None, *, keep_model: bool = False,
                   recompute: bool = False) -> int:
        """Insert a queued run and return its id. ``keep_model`` keeps the final model for export;
        ``recompute`` disables reuse of cached results."""
        data = config.to_dict()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO runs (status, config, config_key, model, method, preset, created_at, sweep_id, keep_model,"
                " recompute) VALUES ('queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (json.dumps(data, sort_keys=True), config_key(data), config.model, config.method, config.preset,
                 time.time(), sweep_id, int(keep_model), int(recompute)),
            )
            return cur.lastrowid

    def get_run(self, run_id: int) -> RunRow:
        rows = self._runs("SELECT * FROM runs WHERE id = ?", (_run_id(run_id),))
        if not rows:
            raise PerpError("run", f"no run {run_id}; perp runs lists them")
        return rows[0]

    def list_runs(self, status: str | Sequence[str] | None = None, model: str | None = None,
                  method: str | None = None, sweep_id: int | None = None, limit: int | None = None) -> list[RunRow]:
        """Runs matching every filter given, newest first."""
        where, params = [], []
        if status is not None:
            statuses = _statuses(status)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        sweep_id = None if sweep_id is None else _run_id(sweep_id, "sweep")
        for column, value in (("model", model), ("method", method), ("sweep_id", sweep_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(min(int(limit), MAX_ID))
        return self._runs(sql, params)

    def layers(self, run_id: int) -> list[dict]:
        """The run's LayerRecord dicts in model order (empty until the run is done)."""
        return self._records("layers", LAYER_COLUMNS, run_id, "idx")

    def blocks(self, run_id: int) -> list[dict]:
        """The run's BlockRecord dicts in block order."""
        return self._records("blocks", BLOCK_COLUMNS, run_id, "block")

    def _records(self, table: str, columns: Sequence[str], run_id: int, order: str) -> list[dict]:
        rows = self._rows(f"SELECT {', '.join(columns)}, extra FROM {table} WHERE run_id = ? ORDER BY {order}",
                          (_run_id(run_id),))
        return self._decoded(rows, lambda r: {**{c: r[c] for c in columns}, **json.loads(r["extra"] or "{}")})

    def curve(self, run_id: int, name: str = "train_loss") -> list[float]:
        rows = self._rows("SELECT value FROM curves WHERE run_id = ? AND name = ? ORDER BY step", (_run_id(run_id), name))
        return [r[0] for r in rows]

    def logs(self, run_id: int, tail: int | None = None) -> list[str]:
        """The run's log lines, oldest first; ``tail`` keeps the last ones."""
        if tail is None:
            rows = self._rows("SELECT line FROM logs WHERE run_id = ? ORDER BY id", (_run_id(run_id),))
        else:
            rows = self._rows("SELECT line FROM (SELECT id, line FROM logs WHERE run_id = ? ORDER BY id DESC LIMIT ?)"
                              " ORDER BY id", (_run_id(run_id), int(tail)))
        return [r[0] for r in rows]

    def reusable(self, run_id: int) -> RunRow | None:
        """The newest other finished-ok run with exactly the same config, if any."""
        rows = self._runs("SELECT * FROM runs WHERE status = 'done' AND result IS NOT NULL AND id != ? AND config_key ="
                          " (SELECT config_key FROM runs WHERE id = ?) ORDER BY id DESC LIMIT 1",
                          (_run_id(run_id), _run_id(run_id)))
        return rows[0] if rows else None

    def latest_with_config(self, config: RunConfig, status: str | Sequence[str] | None = None) -> RunRow | None:
        """The newest run of exactly this config (the same :func:`config_key`), of any status or of the given
        ones; None if there is none."""
        statuses = STATUSES if status is None else _statuses(status)
        rows = self._runs(f"SELECT * FROM runs WHERE config_key = ? AND status IN ({', '.join('?' * len(statuses))})"
                          " ORDER BY id DESC LIMIT 1", (config_key(config.to_dict()), *statuses))
        return rows[0] if rows else None

    # -- run lifecycle (written by the process that executes the run) ---------------------------------------

    def start_run(self, run_id: int, pid: int | None = None) -> None:
        """Mark a queued run running in process ``pid`` (default: this one). Used by in-process runs."""
        with self._write() as conn:
            status = _status(conn, run_id)
            if status != "queued":
                raise PerpError("run", f"run {run_id} is {status}; only a queued run can start")
            _mark_running(conn, run_id, pid or os.getpid())

    def progress(self, run_id: int, stage: str, fraction: float, message: str = "") -> bool:
        """Record the stage, fraction (0..1) and message of a running run; return True if cancel was requested.

        When the stage changes, the seconds spent in the previous one are added to ``stage_seconds``, so the
        stages a running run has finished show their durations before the run records its timings."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT stage, stage_started_at, stage_seconds, cancel_requested FROM runs WHERE id = ?"
                               " AND status = 'running'", (run_id,)).fetchone()
            if row is not None and stage != row["stage"]:
                seconds = json.loads(row["stage_seconds"] or "{}")
                if row["stage"] is not None and row["stage_started_at"] is not None:
                    seconds[row["stage"]] = round(seconds.get(row["stage"], 0.0) + now - row["stage_started_at"], 3)
                conn.execute("UPDATE runs SET stage_started_at = ?, stage_seconds = ? WHERE id = ?",
                             (now, json.dumps(seconds), run_id))
            conn.execute("UPDATE runs SET stage = ?, fraction = ?, message = ?, heartbeat_at = ? WHERE id = ? AND"
                         " status = 'running'", (stage, float(fraction), message, now, run_id))
            if row is None:
                row = conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def log(self, run_id: int, line: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO logs (run_id, time, line) VALUES (?, ?, ?)", (run_id, time.time(), str(line)))

    def record_result(self, run_id: int, result: RunResult | dict, *, artifact: str | os.PathLike | None = None) -> bool:
        """Store a finished run: scalars, layers, blocks, curves and status ``done``, in one transaction.

        Only a queued or running run takes a result, as with :meth:`fail_run`: a result that arrives after the
        run ended (cancelled, failed, or already done) changes nothing and False is returned."""
        data = result.to_dict() if isinstance(result, RunResult) else dict(result)
        with self._write() as conn:
            _status(conn, run_id)
            config = json.loads(conn.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            data["environment"] = {**data.get("environment", {}), "seed": config.get("seed"), "host": hostname()}
            cur = conn.execute(
                "UPDATE runs SET status = 'done', finished_at = ?, fraction = 1.0, message = 'done', error = NULL,"
                " dense_ppl = ?, pruned_ppl = ?, final_ppl = ?, sparsity = ?, trainable_params = ?, total_params = ?,"
                " trainable_fraction = ?, peak_memory_mb = ?, timings = ?, reused = ?, environment = ?, warnings = ?,"
                " result = ?, artifact = ?, errors_format = ?, diverged = ? WHERE id = ? AND"
                f" status IN ({_UNFINISHED})",
                (time.time(), data.get("dense_ppl"), data.get("pruned_ppl"), data.get("final_ppl"), data.get("sparsity"),
                 data.get("trainable_params"), data.get("total_params"), data.get("trainable_fraction"),
                 data.get("peak_memory_mb"), json.dumps(data.get("timings", {})), json.dumps(data.get("reused", [])),
                 json.dumps(data["environment"]), json.dumps(data.get("warnings", [])), json.dumps(data),
                 str(artifact) if artifact else None, data.get("errors_format", 1), data.get("diverged"), run_id),
            )
            if cur.rowcount != 1:
                return False
            for table in ("layers", "blocks", "curves"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            _insert_records(conn, "layers", ("idx", *LAYER_COLUMNS),
                            [{"idx": i, **r} for i, r in enumerate(data.get("layers", []))], run_id)
            _insert_records(conn, "blocks", BLOCK_COLUMNS, data.get("blocks", []), run_id)
            conn.executemany("INSERT INTO curves (run_id, name, step, value) VALUES (?, ?, ?, ?)",
                             [(run_id, name, step, value) for name in CURVES
                              for step, value in enumerate(data.get(name, []))])
        return True

    def fail_run(self, run_id: int, message: str) -> bool:
        """Mark a queued or running run failed with ``message``; False if it had already finished."""
        return self._finish(run_id, "failed", message)

    def mark_cancelled(self, run_id: int, message: str = "cancelled") -> bool:
        """Mark a queued or running run cancelled; False if it had already finished."""
        return self._finish(run_id, "cancelled", message)

    def _finish(self, run_id: int, status: str, message: str) -> bool:
        with self._write() as conn:
            _status(conn, run_id)
            cur = conn.execute("UPDATE runs SET status = ?, error = ?, message = ?, finished_at = ? WHERE id = ? AND"
                               f" status IN ({_UNFINISHED})", (status, message, message, time.time(), run_id))
            return cur.rowcount == 1

    # -- names, tags, deletion (the user's bookkeeping) ------------------------------------------------------

    def rename_run(self, run_id: int, name: str | None) -> None:
        """Give a run a name (``None`` or blank removes it)."""
        name = (name or "").strip() or None
        if name is not None and len(name) > MAX_NAME:
            raise PerpError("name", f"{len(name)} characters is too long; use at most {MAX_NAME}")
        with self._write() as conn:
            _status(conn, run_id)
            conn.execute("UPDATE runs SET name = ? WHERE id = ?", (name, _run_id(run_id)))

    def set_tags(self, run_id: int, tags: Iterable[str]) -> list[str]:
        """Replace a run's tags (blank ones dropped, duplicates once, order kept); return them."""
        clean = list(dict.fromkeys(t.strip() for t in tags if t and t.strip()))
        for tag in clean:
            if len(tag) > MAX_TAG or "," in tag:
                raise PerpError("tags", f"{tag!r} is not allowed; a tag has at most {MAX_TAG} characters and no comma")
        with self._write() as conn:
            _status(conn, run_id)
            conn.execute("UPDATE runs SET tags = ? WHERE id = ?", (json.dumps(clean), _run_id(run_id)))
        return clean

    def delete_run(self, run_id: int) -> Path | None:
        """Delete a finished run with its layers, blocks, curves and logs, and its kept model when that lies in
        this store's artifact folder; return that folder. A queued or running run must be cancelled first. The
        artifact cache (dense perplexities, pruned weights shared with other runs) is kept."""
        run_id = _run_id(run_id)
        with self._write() as conn:
            status = _status(conn, run_id)
            if status not in FINISHED:
                raise PerpError("run", f"run {run_id} is {status}; cancel it before deleting it")
            artifact = conn.execute("SELECT artifact FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        kept = Path(artifact) if artifact else None
        if kept is None or not kept.is_dir() or not kept.resolve().is_relative_to((self.root / "artifacts").resolve()):
            return None
        shutil.rmtree(kept, ignore_errors=True)
        return kept

    # -- cancellation ---------------------------------------------------------------------------------------

    def request_cancel(self, run_id: int) -> str:
        """Cancel a run and return its status afterwards.

        A queued run is cancelled at once. A running run gets ``cancel_requested``; the process running it stops
        within seconds and marks it cancelled (``running`` is returned meanwhile), unless that process is gone,
        in which case it is marked cancelled here. A finished run is left as it is.
        """
        with self._write() as conn:
            status = _status(conn, run_id)
            if status == "queued":
                conn.execute("UPDATE runs SET status = 'cancelled', error = 'cancelled before it started',"
                             " message = 'cancelled', finished_at = ? WHERE id = ?", (time.time(), run_id))
                return "cancelled"
            if status != "running":
                return status
            row = conn.execute("SELECT pid, pid_start, host FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row["host"] == hostname() and not is_alive(row["pid"], row["pid_start"]):
                conn.execute("UPDATE runs SET status = 'cancelled', error = ?, message = 'cancelled', finished_at = ?"
                             " WHERE id = ?", (f"cancelled; its process (pid {row['pid']}) was gone", time.time(), run_id))
                return "cancelled"
            conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
            return "running"

    def cancel_requested(self, run_id: int) -> bool:
        rows = self._rows("SELECT cancel_requested FROM runs WHERE id = ?", (_run_id(run_id),))
        return bool(rows and rows[0][0])

    # -- crash recovery -------------------------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Mark failed the running runs of this host whose process is gone (killed, crashed, machine rebooted);
        a run whose cancel had been requested is marked cancelled instead. Returns the ids changed."""
        host = hostname()
        rows = self._rows("SELECT id, pid, pid_start, stage, fraction, cancel_requested FROM runs"
                          " WHERE status = 'running' AND host = ?", (host,))
        dead = [r for r in rows if not is_alive(r["pid"], r["pid_start"])]
        if dead:
            with self._write() as conn:
                for r in dead:
                    where = f"during {r['stage']} at {100 * (r['fraction'] or 0):.0f}%" if r["stage"] else "before its first stage"
                    status, reason = (("cancelled", f"cancelled; worker died (pid {r['pid']}) {where}")
                                      if r["cancel_requested"] else
                                      ("failed", f"worker died (pid {r['pid']}) {where}: killed or crashed, the run did not finish"))
                    conn.execute("UPDATE runs SET status = ?, error = ?, message = ?, finished_at = ? WHERE id = ? AND"
                                 " status = 'running' AND pid = ?", (status, reason, reason, time.time(), r["id"], r["pid"]))
        self._prune_workers()
        return [r["id"] for r in dead]

    # -- worker registry (LocalExecutor and its workers) ----------------------------------------------------

    def _prune_workers(self) -> None:
        host = hostname()
        gone = [(r["pid"],) for r in self._rows("SELECT pid, pid_start FROM workers WHERE host = ?", (host,))
                if not is_alive(r["pid"], r["pid_start"])]
        if gone:
            with self._write() as conn:
                conn.executemany("DELETE FROM workers WHERE host = ? AND pid = ?", [(host, pid) for (pid,) in gone])

    def live_workers(self) -> list[int]:
        """Pids of the live worker processes of this host."""
        self._prune_workers()
        return [r[0] for r in self._rows("SELECT pid FROM workers WHERE host = ? ORDER BY pid", (hostname(),))]

    def spawn_worker(self, max_parallel: int, spawn) -> int | None:
        """Call ``spawn() -> pid`` and register the worker if fewer than ``max_parallel`` workers of this host
        live and more runs are queued than workers are idle. Decided and registered in one transaction, which
        serialises with :meth:`claim_next`'s retire step: a run queued while the last worker retires is never
        left without a worker."""
        self._prune_workers()
        host = hostname()
        with self._write() as conn:
            queued = conn.execute("SELECT count(*) FROM runs WHERE status = 'queued'").fetchone()[0]
            live = conn.execute("SELECT count(*) FROM workers WHERE host = ?", (host,)).fetchone()[0]
            idle = conn.execute("SELECT count(*) FROM workers w WHERE host = ? AND NOT EXISTS (SELECT 1 FROM runs r"
                                " WHERE r.status = 'running' AND r.host = w.host AND r.pid = w.pid)", (host,)).fetchone()[0]
            if live >= max_parallel or queued <= idle:
                return None
            pid = spawn()
            conn.execute("INSERT OR REPLACE INTO workers (host, pid, pid_start, started_at) VALUES (?, ?, ?, ?)",
                         (host, pid, start_time(pid), time.time()))
            return pid

    def claim_next(self, pid: int | None = None) -> int | None:
        """For a worker: take the oldest queued run (now running in ``pid``) and return its id; when none is
        queued, retire the worker from the registry and return None."""
        pid = pid or os.getpid()
        with self._write() as conn:
            row = conn.execute("SELECT id FROM runs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                conn.execute("DELETE FROM workers WHERE host = ? AND pid = ?", (hostname(), pid))
                return None
            conn.execute("INSERT OR IGNORE INTO workers (host, pid, pid_start, started_at) VALUES (?, ?, ?, ?)",
                         (hostname(), pid, start_time(pid), time.time()))
            _mark_running(conn, row[0], pid)
            return row[0]

    # -- sweeps ---------------------------------------------------------------------------------------------

    def create_sweep(self, name: str, grid: dict, run_ids: Iterable[int] = ()) -> int:
        """Record a sweep (its name and grid) and attach the given runs to it."""
        with self._write() as conn:
            sweep_id = conn.execute("INSERT INTO sweeps (name, grid, created_at) VALUES (?, ?, ?)",
                                    (name, json.dumps(grid, sort_keys=True), time.time())).lastrowid
            conn.executemany("UPDATE runs SET sweep_id = ? WHERE id = ?", [(sweep_id, i) for i in run_ids])
            return sweep_id

    def get_sweep(self, sweep_id: int) -> dict:
        for sweep in self.list_sweeps(sweep_id):
            return sweep
        raise PerpError("sweep", f"no sweep {sweep_id}; perp runs --sweeps lists them")

    def list_sweeps(self, sweep_id: int | None = None) -> list[dict]:
        """Sweeps newest first: id, name, grid, created_at, runs (count) and counts per status."""
        where, params = ("WHERE s.id = ?", (_run_id(sweep_id, "sweep"),)) if sweep_id is not None else ("", ())
        rows = self._rows(f"SELECT s.id, s.name, s.grid, s.created_at, r.status, count(r.id) AS n FROM sweeps s"
                          f" LEFT JOIN runs r ON r.sweep_id = s.id {where} GROUP BY s.id, r.status ORDER BY s.id DESC",
                          params)
        sweeps: dict[int, dict] = {}
        for r in rows:
            sweep = sweeps.setdefault(r["id"], {"id": r["id"], "name": r["name"], "grid": json.loads(r["grid"]),
                                                "created_at": r["created_at"], "runs": 0, "counts": {}})
            if r["status"]:
                sweep["counts"][r["status"]] = r["n"]
                sweep["runs"] += r["n"]
        return list(sweeps.values())

    def sweep_runs(self, sweep_id: int) -> list[RunRow]:
        """The runs of a sweep in the order they were queued."""
        self.get_sweep(sweep_id)
        return self._runs("SELECT * FROM runs WHERE sweep_id = ? ORDER BY id", (_run_id(sweep_id, "sweep"),))


def _statuses(status: str | Sequence[str]) -> list[str]:
    """One status or several as a list, each checked against STATUSES (PerpError naming status otherwise)."""
    statuses = [status] if isinstance(status, str) else list(status)
    for s in statuses:
        check_choice("status", s, STATUSES)
    return statuses


def _run_id(value, what: str = "run") -> int:
    """A run (or sweep) id as SQLite can hold it (a signed 64-bit integer); PerpError for anything else."""
    lister = "perp runs" if what == "run" else "perp runs --sweeps"
    number = value
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            number = int(str(value).lstrip("#"))
        except ValueError:
            raise PerpError(what, f"{value!r} is not a {what} id; use the number {lister} shows") from None
    if not 0 < number <= MAX_ID:
        raise PerpError(what, f"no {what} {value}; ids are whole numbers from 1, and {lister} lists them")
    return number


def _insert_records(conn: sqlite3.Connection, table: str, columns: Sequence[str], records: list[dict], run_id: int) -> None:
    """Insert record dicts: known fields into their columns (NOT NULL ones must be there), the rest as JSON."""
    values = [(run_id, *(r.get(c) for c in columns),
               json.dumps({k: v for k, v in r.items() if k not in columns}) if set(r) - set(columns) else None)
              for r in records]
    conn.executemany(f"INSERT INTO {table} (run_id, {', '.join(columns)}, extra) VALUES ({', '.join('?' * (len(columns) + 2))})",
                     values)


def _status(conn: sqlite3.Connection, run_id: int) -> str:
    row = conn.execute("SELECT status FROM runs WHERE id = ?", (_run_id(run_id),)).fetchone()
    if row is None:
        raise PerpError("run", f"no run {run_id}; perp runs lists them")
    return row[0]


def _mark_running(conn: sqlite3.Connection, run_id: int, pid: int) -> None:
    now = time.time()
    conn.execute("UPDATE runs SET status = 'running', started_at = ?, heartbeat_at = ?, pid = ?, pid_start = ?,"
                 " host = ?, stage = NULL, fraction = 0, message = 'starting', stage_started_at = NULL,"
                 " stage_seconds = '{}' WHERE id = ?",
                 (now, now, pid, start_time(pid), hostname(), run_id))
