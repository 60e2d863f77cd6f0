"""The run store's SQLite schema as an ordered list of migrations.

``PRAGMA user_version`` holds the number of migrations applied; ``PRAGMA application_id`` marks the file as a
PERP Lab store so that another program's SQLite file is refused instead of altered. A migration is a tuple of
single SQL statements, applied in one transaction together with the new version number, so a store is always
at exactly one version. Never edit a released migration: append a new one.
"""

from __future__ import annotations

import sqlite3

APPLICATION_ID = 0x50455250  # "PERP"
CONFIG_KEY_SQL = "perp_config_key"  # SQL function (registered on every store connection): a config's key
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

_STATUS_CHECK = "CHECK (status IN ({}))".format(", ".join(f"'{s}'" for s in STATUSES))

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs and their measurements.
    (
        f"""CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            status TEXT NOT NULL {_STATUS_CHECK},
            config TEXT NOT NULL,
            config_key TEXT NOT NULL,
            model TEXT NOT NULL,
            method TEXT NOT NULL,
            preset TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            stage TEXT,
            fraction REAL NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            heartbeat_at REAL,
            error TEXT,
            pid INTEGER,
            pid_start REAL,
            host TEXT,
            dense_ppl REAL,
            pruned_ppl REAL,
            final_ppl REAL,
            sparsity REAL,
            trainable_params INTEGER,
            total_params INTEGER,
            trainable_fraction REAL,
            peak_memory_mb REAL,
            timings TEXT NOT NULL DEFAULT '{{}}',
            reused TEXT NOT NULL DEFAULT '[]',
            environment TEXT NOT NULL DEFAULT '{{}}',
            warnings TEXT NOT NULL DEFAULT '[]',
            result TEXT
        )""",
        "CREATE INDEX runs_status ON runs (status)",
        "CREATE INDEX runs_config_key ON runs (config_key)",
        """CREATE TABLE layers (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            name TEXT NOT NULL,
            block INTEGER NOT NULL,
            kind TEXT NOT NULL,
            sparsity REAL NOT NULL,
            recon_error REAL,
            recon_error_after REAL,
            numel INTEGER NOT NULL DEFAULT 0,
            extra TEXT,
            PRIMARY KEY (run_id, idx)
        )""",
        """CREATE TABLE blocks (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            block INTEGER NOT NULL,
            loss_before REAL,
            loss_after REAL,
            train_loss_before REAL,
            train_loss_after REAL,
            extra TEXT,
            PRIMARY KEY (run_id, block)
        )""",
        """CREATE TABLE curves (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            PRIMARY KEY (run_id, name, step)
        )""",
        """CREATE TABLE logs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            time REAL NOT NULL,
            line TEXT NOT NULL
        )""",
        "CREATE INDEX logs_run ON logs (run_id, id)",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ),
    # 2: job control: sweeps, cancellation, kept models, the registry of worker processes.
    (
        """CREATE TABLE sweeps (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            grid TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "ALTER TABLE runs ADD COLUMN sweep_id INTEGER REFERENCES sweeps (id)",
        "ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN keep_model INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN recompute INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN artifact TEXT",
        "CREATE INDEX runs_sweep ON runs (sweep_id)",
        """CREATE TABLE workers (
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_start REAL,
            started_at REAL NOT NULL,
            PRIMARY KEY (host, pid)
        )""",
    ),
    # 3: two layer-wise errors. Before, recon_error / loss_before (and their *_after) held the accumulated error
    # (each model on its own activations) on calibration windows; they move to drift / drift_before (in the
    # record's extra JSON) and the local columns stay empty for those runs, marked errors_format 1.
    (
        "ALTER TABLE runs ADD COLUMN errors_format INTEGER",
        "UPDATE runs SET errors_format = 1 WHERE status = 'done'",
        """UPDATE layers SET extra = json_set(coalesce(extra, '{}'), '$.drift', recon_error, '$.drift_after',
            recon_error_after), recon_error = NULL, recon_error_after = NULL""",
        """UPDATE blocks SET extra = json_set(coalesce(extra, '{}'), '$.drift_before', loss_before, '$.drift_after',
            loss_after), loss_before = NULL, loss_after = NULL""",
    ),
    # 4: why a finished run's repair was judged diverged (NULL when it was not): the run stays done, with its
    # pruned weights kept, and charts leave its final perplexity out.
    (
        "ALTER TABLE runs ADD COLUMN diverged TEXT",
    ),
    # 5: runs users can find again (a name and tags) and stage times while a run is still running.
    (
        "ALTER TABLE runs ADD COLUMN name TEXT",
        "ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE runs ADD COLUMN stage_started_at REAL",
        "ALTER TABLE runs ADD COLUMN stage_seconds TEXT NOT NULL DEFAULT '{}'",
    ),
    # 6: config keys digest only the fields that differ from their defaults (run_store.config_key), so that new
    # fields keep the keys of older runs; the store's connection provides the SQL function.
    (
        f"UPDATE runs SET config_key = {CONFIG_KEY_SQL}(config)",
    ),
    # 7: a run that does not repair is keyed without the repair's fields (perp_engine.config.REPAIR_FIELDS), so
    # prune-only runs that differ only in, say, the steps they never take find each other.
    (
        f"UPDATE runs SET config_key = {CONFIG_KEY_SQL}(config)",
    ),
    # 8: runs recorded before the model's own parameter count was kept (the result's model_params) stored their
    # trainable share of every parameter, adapters and a tied head's new copy included, so the same recipe sat at
    # two shares. They get the model's own count from the prune-only runs of the same model in the store (whose
    # total is the model's own; a model whose prune-only runs disagree is left alone), the adapters' weights from
    # their trainable categories, the head copy as the rest, and the share of the model's own parameters
    # (perp_engine.model.parameters.trainable_share). Runs with no prune-only run of their model keep theirs.
    (
        """CREATE TEMP TABLE own_counts AS SELECT model, min(total_params) AS params FROM runs
            WHERE status = 'done' AND json_extract(config, '$.mode') = 'none' AND total_params > 0
            GROUP BY model HAVING count(DISTINCT total_params) = 1""",
        """CREATE TEMP TABLE recounts AS SELECT runs.id AS id, own_counts.params AS params,
            coalesce(runs.trainable_params, 0) AS trainable, runs.total_params AS total,
            coalesce(json_extract(runs.result, '$.trainable_by_category.adapter'), 0)
              + coalesce(json_extract(runs.result, '$.trainable_by_category."head-lora"'), 0) AS adapters
            FROM runs JOIN own_counts ON own_counts.model = runs.model
            WHERE runs.status = 'done' AND runs.result IS NOT NULL
              AND coalesce(json_extract(runs.result, '$.model_params'), 0) = 0""",
        "DELETE FROM recounts WHERE total IS NULL OR total - params - adapters < 0",
        """UPDATE runs SET
            result = (SELECT json_set(runs.result, '$.model_params', params, '$.adapter_params', adapters,
                                      '$.head_copy_params', total - params - adapters,
                                      '$.trainable_fraction', CAST(trainable AS REAL) / params)
                      FROM recounts WHERE recounts.id = runs.id)
            WHERE id IN (SELECT id FROM recounts)""",
        # the column takes the number as the result's JSON holds it, so that both give the same share
        """UPDATE runs SET trainable_fraction = json_extract(result, '$.trainable_fraction')
            WHERE id IN (SELECT id FROM recounts)""",
        "DROP TABLE temp.recounts",
        "DROP TABLE temp.own_counts",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the pending migrations up to ``target`` in one write transaction; return the version reached.

    The version is re-read after the write lock is taken, so two processes opening a new store at once do not
    both apply a migration. ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn)
        for number in range(version + 1, target + 1):
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(version, target)
