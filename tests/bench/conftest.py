"""Importing a bench script in a test: bench/ is not a package, and its scripts import harness (and each other) as
siblings."""

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench_module(monkeypatch):
    """``load(name, *siblings)``: bench/<name>.py imported afresh (it and the sibling modules it imports, harness
    always, are dropped from ``sys.modules`` first, so another test's module of the same name does not answer, and
    again after the test)."""
    loaded: list[str] = []

    def load(name: str, *siblings: str):
        monkeypatch.syspath_prepend(str(BENCH))
        for module in (name, *siblings, "harness"):
            monkeypatch.delitem(sys.modules, module, raising=False)
            loaded.append(module)
        return importlib.import_module(name)

    yield load
    for module in loaded:
        sys.modules.pop(module, None)
