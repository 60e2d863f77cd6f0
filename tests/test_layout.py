"""The engine's house rules: imports point only down the groups, the engine never imports Streamlit, and the import
paths that users' scripts rely on keep working."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "perp_engine"

# Each group's rank: a module may import its own group and groups of a lower rank, never a higher or an equal one.
# The root modules are the vocabulary every group shares.
RANKS = {
    "config": 0, "presets": 0, "result": 0, "progress": 0, "errors": 0, "paths": 0, "palette": 0, "ticks": 0,
    "model": 1, "data": 1,
    "offload": 2,
    "evaluation": 3,
    "pruning": 4,
    "repair": 5,
    "resources": 6,
    "store": 7,
    "run": 8, "inspect_layer": 8,
    "jobs": 9,
    "reproduce": 10,
    "cli": 11,
}


def _group(parts: list[str]) -> str:
    """The group of a module given as its dotted parts below ``perp_engine``."""
    return parts[0] if parts else "root"


def _imports() -> list[tuple[str, str, str]]:
    """(importing file, its group, the imported group) for every import of another engine module."""
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        parts = list(path.relative_to(ENGINE).with_suffix("").parts)
        package = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)]
                targets = [base + node.module.split(".")] if node.module else [base + [a.name] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("perp_engine."):
                targets = [node.module.split(".")[1:]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1:] for a in node.names if a.name.startswith("perp_engine.")]
            else:
                continue
            for target in targets:
                found.append((str(path.relative_to(ENGINE)), _group(parts), _group(target)))
    return found


def test_every_engine_module_belongs_to_a_ranked_group():
    groups = {_group(list(p.relative_to(ENGINE).with_suffix("").parts)) for p in ENGINE.rglob("*.py")}
    assert groups - {"__init__"} <= set(RANKS), sorted(groups - set(RANKS))


def test_imports_point_only_down():
    upward = [(f, g, t) for f, g, t in _imports()
              if t in RANKS and g in RANKS and g != t and RANKS[t] >= RANKS[g] and not (RANKS[g] == RANKS[t] == 0)]
    assert not upward, "\n".join(f"{f} ({g}) imports {t}" for f, g, t in upward)


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The check above is not vacuous: an engine file that imports a higher group is reported."""
    fake = tmp_path / "perp_engine"
    (fake / "model").mkdir(parents=True)
    (fake / "model" / "bad.py").write_text("from ..repair.retrain import retrain\n")
    monkeypatch.setattr(__import__(__name__), "ENGINE", fake)
    assert [(f, g, t) for f, g, t in _imports()] == [("model/bad.py", "model", "repair")]


def test_the_engine_never_imports_streamlit():
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "streamlit"], path


@pytest.mark.parametrize("module, name", [
    ("perp_engine.pruning", "prune_weight"),
    ("perp_engine.pruning", "LayerStats"),
    ("perp_engine.pruning", "reconstruction_error"),
    ("perp_engine.inspect_layer", "inspect_layer"),
    ("perp_engine.inspect_layer", "capture_block"),
    ("perp_engine.config", "RunConfig"),
    ("perp_engine.jobs", "LocalExecutor"),
])
def test_the_import_paths_of_users_scripts_work(module, name):
    assert callable(getattr(importlib.import_module(module), name))


def test_mib_and_gib_have_one_home():
    """Byte units are written once (resources/memory_meter.py: MIB, GIB); the engine, the app and the benches
    import them."""
    home = ENGINE / "resources" / "memory_meter.py"
    pattern = re.compile(r"\b2\s*\*\*\s*(20|30)\b")
    sources = [p for folder in ("perp_engine", "app", "pages", "bench", "scripts")
               for p in (ENGINE.parent / folder).rglob("*.py")]
    assert home in sources
    assert [p for p in sources if p != home and pattern.search(p.read_text())] == []
    assert len(pattern.findall(home.read_text())) == 2
