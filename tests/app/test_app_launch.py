"""Experiment launches only what can run (issue 15): whenever the pre-run checks fail, Launch is disabled and the
page says why; an N:M pattern shows its fixed sparsity; a damaged store is one line, not a traceback."""

from __future__ import annotations

import pytest
from damaged_store import damage_a_page, seeded_store
from fixtures_tiny import tiny_model_dir, tiny_text, tiny_text_file  # noqa: F401  (pytest fixtures)
from test_app_pages import open_page, texts

from perp_engine.store import RunStore


def launch(at):
    return next(b for b in at.button if b.label == "Launch")


@pytest.mark.parametrize("case, session, field, fragment", [
    ("no such folder", {"exp_model": "/no/such/model/folder"}, "model", "not a built-in model"),
    ("Hub id offline", {"exp_model": "some-org/some-model"}, "model", "offline mode is on"),
    ("rank above a layer", {"exp_model": "{model}", "exp_dataset": "{text}", "exp_seqlen": 16, "exp_recipe": "custom",
                            "exp_adapter": "masklora", "exp_rank": 256}, "rank", "exceeds min(in, out) = 32"),
    ("28-byte upload", {"exp_dataset": "{upload}"}, "dataset", "has a single paragraph"),
    ("upload too short for a window", {"exp_model": "{model}", "exp_dataset": "{short}", "exp_seqlen": 16}, "seqlen",
     "longer text"),
])
def test_launch_is_disabled_with_the_reason(case, session, field, fragment, tmp_path, monkeypatch, tiny_model_dir,  # noqa: F811
                                            tiny_text_file):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "home"))
    (tmp_path / "upload.txt").write_bytes(b"A text of 28 bytes, no more.")
    (tmp_path / "short.txt").write_text(f"{tiny_text(1)}\n\nEnd.")
    files = {"model": str(tiny_model_dir), "text": str(tiny_text_file), "upload": str(tmp_path / "upload.txt"),
             "short": str(tmp_path / "short.txt")}
    session = {k: v.format(**files) if isinstance(v, str) else v for k, v in session.items()}
    store = tmp_path / "runs.sqlite"
    at = open_page("experiment", store, monkeypatch, **session)
    [error] = [e for e in at.error if str(e.value).startswith(f"{field}: ")]
    assert fragment in error.value and "\n" not in error.value
    assert launch(at).disabled and fragment in launch(at).help
    assert not at.metric  # no estimate for a run that cannot start
    assert RunStore(store).list_runs() == []


def test_a_runnable_choice_keeps_launch_enabled(tmp_path, monkeypatch, tiny_model_dir, tiny_text_file):  # noqa: F811
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch, exp_model=str(tiny_model_dir),
                   exp_dataset=str(tiny_text_file), exp_seqlen=16)
    assert not at.error and not launch(at).disabled


def test_an_nm_pattern_shows_its_sparsity(tmp_path, monkeypatch):
    at = open_page("experiment", tmp_path / "runs.sqlite", monkeypatch)
    at.slider(key="exp_sparsity").set_value(0.7)
    at.segmented_control(key="exp_pattern").set_value("2:4").run()
    fixed = at.slider(key="exp_sparsity_2:4")
    assert fixed.value == 0.5 and fixed.disabled
    assert "2:4 prunes exactly 50% of the weights." in texts(at, "caption")
    at.segmented_control(key="exp_pattern").set_value("unstructured").run()
    assert at.slider(key="exp_sparsity").value == 0.7 and not at.slider(key="exp_sparsity").disabled


def test_a_damaged_store_is_one_line_in_the_page(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    seeded_store(path)
    damage_a_page(path)
    monkeypatch.setenv("PERP_STORE", str(path))
    from streamlit.testing.v1 import AppTest
    from test_app_pages import MAIN, TIMEOUT

    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith(f"store: {path} is damaged") and f"perp store recover --store {path}" in error.value
