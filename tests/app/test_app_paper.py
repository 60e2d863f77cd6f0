"""The Paper page through Streamlit's AppTest, with a report written by `perp reproduce --quick` in this session
as the shipped one: its claims, verdicts, tables and figures; this machine's results beside them once its store
holds the set; the button that queues the set; the page without a shipped report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reproduce_fixtures import quick_run  # noqa: F401  (pytest fixture)
from streamlit.testing.v1 import AppTest

from perp_engine.jobs import LocalExecutor
from perp_engine.reproduce import load_report
from perp_engine.store import RunStore

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"


@pytest.fixture
def no_workers(monkeypatch):
    monkeypatch.setattr(LocalExecutor, "ensure_workers", lambda self: [])


def open_paper(monkeypatch, store: Path, shipped: Path) -> AppTest:
    monkeypatch.setenv("PERP_STORE", str(store))
    monkeypatch.setenv("PERP_PAPER_REPORT", str(shipped))
    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.run()
    at.switch_page("../pages/paper.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def alerts(at: AppTest) -> list[str]:
    return [str(e.value) for kind in ("success", "warning", "error", "info") for e in at.get(kind)]


def test_the_shipped_report_shows_each_claim_with_its_verdict_table_and_figure(quick_run, tmp_path, monkeypatch):  # noqa: F811
    at = open_paper(monkeypatch, tmp_path / "runs.sqlite", quick_run.out / "report.json")
    report = load_report(quick_run.out / "report.json")
    shown = alerts(at)
    for claim in report["claims"]:
        assert f"**Shipped results: {claim['verdict']['status']}.** {claim['verdict']['text']}" in shown
        assert f"Claim {claim['number']}: {claim['title']}" in [h.value for h in at.subheader]
        assert f"Rule: {claim['verdict']['rule']}" in [c.value for c in at.caption]
    assert len(at.dataframe) == 3 and len(at.get("plotly_chart")) == 7  # the overview; per claim, numbers and curves
    first = at.dataframe[0].value
    assert list(first.columns)[:2] == ["sparsity", "recipe"] and len(first) == 10
    assert not any(text.startswith("**This machine") for text in shown)  # nothing ran on this store
    assert [b.label for b in at.button] == ["Run the 26 runs here"]


def test_this_machines_results_appear_beside_the_shipped_ones(quick_run, monkeypatch):  # noqa: F811
    at = open_paper(monkeypatch, quick_run.store, quick_run.out / "report.json")
    shown = alerts(at)
    report = load_report(quick_run.out / "report.json")
    for claim in report["claims"]:  # the same runs: the same verdicts
        assert f"**This machine: {claim['verdict']['status']}.** {claim['verdict']['text']}" in shown
    assert len(at.dataframe) == 6 and len(at.get("plotly_chart")) == 13
    assert any("All 26 runs are done on this machine" in text for text in shown)
    assert not at.button


def test_the_button_queues_the_shipped_set(quick_run, tmp_path, monkeypatch, no_workers):  # noqa: F811
    store_path = tmp_path / "runs.sqlite"
    at = open_paper(monkeypatch, store_path, quick_run.out / "report.json")
    at.button(key="paper-run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    rows = RunStore(store_path).list_runs()
    expected = [r["config"] for r in load_report(quick_run.out / "report.json")["set"]["runs"]]
    assert sorted(r.config["sparsity"] for r in rows) == sorted(c["sparsity"] for c in expected)
    assert {r.status for r in rows} == {"queued"} and len(rows) == 26
    assert {(r.config["model"], r.config["preset"]) for r in rows} == {(c["model"], c["preset"]) for c in expected}
    assert at.get("progress")[0].proto.text.startswith("0 of 26 runs done here (26 queued)")
    assert [b.label for b in at.button] == ["Cancel the rest"]


def test_without_a_shipped_report_the_page_offers_the_full_set(tmp_path, monkeypatch):
    at = open_paper(monkeypatch, tmp_path / "runs.sqlite", tmp_path / "missing.json")
    assert any(text.startswith("No shipped results yet") for text in alerts(at))
    assert not at.dataframe and not at.get("plotly_chart")
    assert [b.label for b in at.button] == ["Run the 26 runs here"]
    assert re.search(r"\*\*26 runs\*\* to go, about \*\*[\d.]+ (s|min|h)\*\* on (cpu|cuda|mps) by the cost model",
                     "\n".join(str(m.value) for m in at.markdown))
