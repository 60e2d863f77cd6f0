"""One ``perp reproduce --quick`` per test session (the CLI in this process, the runs in real worker processes),
shared by the reproduction and Paper page tests: import ``quick_run`` into a test module."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from perp_engine.cli import main


@dataclass(frozen=True)
class QuickRun:
    home: Path  # its PERP_HOME: the tiny model, the caches
    store: Path
    out: Path  # the report folder
    code: int
    output: str  # what the command printed (stdout and stderr)


def reproduce(argv: list[str], home: Path) -> tuple[int, str]:
    """``perp reproduce ARGV`` with PERP_HOME=home (its worker processes inherit it); (exit code, output)."""
    saved = os.environ.get("PERP_HOME")
    os.environ["PERP_HOME"] = str(home)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            code = main(["reproduce", *argv])
    finally:
        if saved is None:
            os.environ.pop("PERP_HOME", None)
        else:
            os.environ["PERP_HOME"] = saved
    return code, buffer.getvalue()


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> QuickRun:
    folder = tmp_path_factory.mktemp("reproduce-quick")
    home, store, out = folder / "home", folder / "home" / "runs.sqlite", folder / "report"
    code, output = reproduce(["--quick", "--out", str(out), "--store", str(store)], home)
    return QuickRun(home=home, store=store, out=out, code=code, output=output)
