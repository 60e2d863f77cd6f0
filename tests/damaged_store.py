"""A store with many runs, and one of its pages damaged: the faults tests (tests/run/test_faults.py) and the app's
Launch tests (tests/app/test_app_launch.py) both recover from it."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from app_fixtures import made_up, record

from perp_engine.config import RunConfig
from perp_engine.result import LayerRecord
from perp_engine.store import RunStore


def seeded_store(path: Path, runs: int = 40) -> None:
    """Enough runs (with layers and logs) that the runs table spans many pages."""
    store = RunStore(path)
    config = RunConfig(method="magnitude")
    layers = [LayerRecord(name=f"model.layers.0.l{i}", block=0, kind="q_proj", sparsity=0.5, recon_error=0.1)
              for i in range(8)]
    for seed in range(runs):
        run_id = record(store, config.replace(seed=seed), made_up(config, 10.0, 20.0 + seed, layers=layers))
        for i in range(4):
            store.log(run_id, f"line {i} " + "x" * 200)
    store.close()


def damage_a_page(path: Path, table: str = "runs", last: bool = False) -> None:
    """Garbage over most of one leaf page in the middle of ``table`` (SQLite's dbstat finds the page), or over its
    last leaf page (``last``: the table's newest rows)."""
    conn = sqlite3.connect(path)
    try:
        leaves = [r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY"
                                             " pageno", (table,))]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table to find a page with")
    finally:
        conn.close()
    with open(path, "r+b") as f:
        f.seek((leaves[-1 if last else len(leaves) // 2] - 1) * page_size + 16)
        f.write(random.Random(0).randbytes(page_size - 32))  # the same garbage each time: a test that fails, fails again
