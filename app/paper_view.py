"""The Paper page's plain pieces: where the shipped report is, which run set "run it here" means, how far this
machine's runs of it are, and the claims' tables (and zero-shot tables) as the page shows them. No Streamlit here."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from perp_engine.errors import PerpError
from perp_engine.reproduce import RunSet, assemble, load_report, paper_set
from perp_engine.reproduce.decisions import FAILS, HOLDS, PARTLY, UNDECIDED, UNMEASURED
from perp_engine.reproduce.wording import Table, fmt
from perp_engine.store import RunRow

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "docs" / "paper" / "report.json"  # what `perp reproduce --out docs/paper` writes
SHIPPED_ENV = "PERP_PAPER_REPORT"  # another report.json to show as the shipped one
VERDICT_STYLE = {HOLDS: "success", PARTLY: "warning", FAILS: "error", UNDECIDED: "info", UNMEASURED: "info"}
VERDICT_ICONS = {HOLDS: ":material/check_circle:", PARTLY: ":material/rule:", FAILS: ":material/cancel:",
                 UNDECIDED: ":material/hourglass_empty:", UNMEASURED: ":material/help:"}


def shipped_path() -> Path:
    return Path(os.environ.get(SHIPPED_ENV) or SHIPPED)


def read_shipped(path: Path) -> tuple[dict | None, str | None]:
    """``(report, None)``, or ``(None, why)`` when there is no usable report at ``path``."""
    if not path.is_file():
        return None, (f"No shipped results yet: `perp reproduce --out docs/paper` writes them ({path} is missing). "
                      "You can run the set on this machine below.")
    try:
        return load_report(path), None
    except PerpError as err:
        return None, str(err)


def runset_of(report: Mapping | None) -> RunSet:
    """The set "run it on this machine" queues: the one the shipped report was made from, else the full set."""
    return RunSet.from_dict(report["set"]) if report else paper_set()


def progress(rows: Mapping[str, RunRow | None]) -> Counter:
    """How many runs of the set are done, running, queued, failed, cancelled, or never ran here (missing)."""
    return Counter(row.status if row is not None else "missing" for row in rows.values())


def local_report(runset: RunSet, rows: Mapping[str, RunRow | None]) -> dict | None:
    """This machine's report of the set once every run of it is done (None before)."""
    if not rows or any(row is None or row.status != "done" for row in rows.values()):
        return None
    return assemble(runset, rows, command="the Paper page of the app")


def table_frame(table: Table) -> pd.DataFrame:
    """A claim's table (or one of its zero-shot tables) as the report prints it (formatted cells, "–" where there
    is no value)."""
    return pd.DataFrame([[fmt(v, f) for v, f in zip(row, table.formats)] for row in table.rows], columns=table.columns)
