"""perp_engine.paths: the home folder and atomic folder writes."""

from __future__ import annotations

import pytest

from perp_engine.paths import atomic_dir, perp_home


def test_perp_home_reads_the_environment_each_call(tmp_path, monkeypatch):
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "a"))
    assert perp_home() == tmp_path / "a" and (tmp_path / "a").is_dir()
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "b"))
    assert perp_home() == tmp_path / "b"


def test_atomic_dir_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed midway")
    assert list(tmp_path.iterdir()) == []
    for content in ("old", "new"):
        with atomic_dir(final) as tmp:
            (tmp / "x.txt").write_text(content)
    assert (final / "x.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
