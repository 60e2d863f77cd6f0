"""The charts as a browser draws them: Plotly figures rendered by plotly.js in headless Chromium at the widths of
a 1400 px window, their titles, legends and axis labels measured on the page. Titles never overlap each other,
an axis's labels or a long run name, and stay inside the figure; legends never sit on an axis title."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import made_up, record
from plotly.offline import get_plotlyjs

from app import figures
from app import layer_figures as lf
from perp_engine.config import RunConfig
from perp_engine.store import RunStore

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
WIDTHS = (1000, 1400)  # the chart in a 1400 px window with the sidebar open, and alone
LONG = "#12 baseline for the lecture on Thursday: wanda + OWL 70% · perp-masklora, lr 0.002"
KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def records(scale: float, blocks: int = 12) -> list[dict]:
    """Layer records of a 12-block model: errors growing with depth, halved by repair."""
    out = []
    for b in range(blocks):
        for j, kind in enumerate(KINDS):
            err = scale * 1e-3 * (b + 1) * (j + 1)
            out.append({"name": f"model.layers.{b}.{kind}", "block": b, "kind": kind, "sparsity": 0.5,
                        "recon_error": err, "recon_error_after": err / 2, "drift": 10 * err, "drift_after": 5 * err})
    return out


def block_records(scale: float, blocks: int = 12) -> list[dict]:
    return [{"block": b, "loss_before": scale * (b + 1), "loss_after": scale * (b + 1) / 2,
             "drift_before": 2 * scale * (b + 1), "drift_after": scale * (b + 1)} for b in range(blocks)]


RUNS = {
    "long name": {LONG: records(1.0), "#13 wanda 50% · perp": records(2.0)},
    "three runs": {"#1 wanda 50% · perp-masklora": records(1.0), "#2 magnitude 50% · perp": records(3.0),
                   "#3 sparsegpt 2:4 · full-ft": records(0.5)},
}


def _boxes(page, fig, width: int) -> dict[str, list[dict]]:
    """Bounding boxes of what the browser drew: the figure title, the annotations (subplot titles), the x tick
    labels, the x axis titles, the legend and the figure itself."""
    page.set_viewport_size({"width": width, "height": 900})
    page.evaluate("""async ([json, width]) => {
        const div = document.getElementById('chart');
        Plotly.purge(div);
        const fig = JSON.parse(json);
        await Plotly.newPlot(div, fig.data, {...fig.layout, width: width}, {responsive: false});
    }""", [fig.to_json(), width])
    return page.evaluate("""() => {
        const root = document.getElementById('chart');
        const box = e => { const r = e.getBoundingClientRect();
                           return {x0: r.left, x1: r.right, y0: r.top, y1: r.bottom, text: e.textContent}; };
        const all = s => [...root.querySelectorAll(s)].map(box).filter(b => b.x1 > b.x0 && b.y1 > b.y0);
        return {title: all('.gtitle'), annotations: all('.annotation-text-g'), xticks: all('.xtick text'),
                xtitles: all('[class^="xtitle"], [class*=" xtitle"]'), legend: all('.legend .bg'),
                figure: all('.main-svg').slice(0, 1)};
    }""")


def _overlap(a: dict, b: dict, slack: float = 1.0) -> bool:
    across = a["x0"] + slack < b["x1"] and b["x0"] + slack < a["x1"]
    return across and a["y0"] + slack < b["y1"] and b["y0"] + slack < a["y1"]


@pytest.fixture
def store_rows(tmp_path):
    """Nine finished runs, each with a long label."""
    with RunStore(tmp_path / "runs.sqlite") as store:
        rows = []
        for i in range(9):
            config = RunConfig.create("perp-masklora", sparsity=0.3 + 0.05 * i, seed=i)
            rows.append(store.get_run(record(store, config, made_up(config, 30.9, 100.0 + 40 * i, 45.0 + i, 0.006))))
        yield rows


@pytest.fixture(scope="module")
def page():
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"{chromium} is missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_content(f"<html><body style='margin:0'><script>{get_plotlyjs()}</script><div id='chart'></div>"
                         "</body></html>")
        yield page
        browser.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", list(RUNS))
@pytest.mark.parametrize("view", ["both", "change"])
def test_heatmap_titles_never_overlap_and_stay_inside(page, case, view, width):
    boxes = _boxes(page, lf.error_heatmaps(RUNS[case], "local", view), width)
    titles = boxes["annotations"] + boxes["title"]
    figure = boxes["figure"][0]
    assert len(boxes["annotations"]) == len(RUNS[case]) * (2 if view == "both" else 1)
    for i, a in enumerate(titles):
        assert figure["x0"] <= a["x0"] and a["x1"] <= figure["x1"], f"{a['text']!r} is clipped"
        for b in titles[i + 1:] + boxes["xticks"]:
            assert not _overlap(a, b), f"{a['text']!r} overlaps {b['text']!r}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", list(RUNS))
@pytest.mark.parametrize("chart", ["lines", "blocks", "sparsity", "bars"])
def test_legends_sit_under_the_axis_titles(page, case, chart, width, store_rows):
    runs = RUNS[case]
    fig = {"lines": lambda: lf.layer_lines(runs, "local", "both"),
           "blocks": lambda: lf.block_errors({k: block_records(i + 1) for i, k in enumerate(runs)}, "local", "both"),
           "sparsity": lambda: lf.sparsity_lines(runs),
           "bars": lambda: figures.ppl_bars(store_rows)}[chart]()
    boxes = _boxes(page, fig, width)
    legend, figure = boxes["legend"][0], boxes["figure"][0]
    assert legend["y1"] <= figure["y1"] + 1  # inside the figure, not cut off at its bottom
    for other in boxes["xtitles"] + boxes["xticks"]:
        assert not _overlap(legend, other), f"the legend overlaps {other['text']!r}"
        assert legend["y0"] >= other["y0"]  # under the axis, never above or on it


@pytest.mark.parametrize("width", WIDTHS)
def test_per_run_bars_label_nine_runs_without_a_smear(page, width, store_rows):
    boxes = _boxes(page, figures.ppl_bars(store_rows), width)
    ticks = boxes["xticks"]
    assert [t["text"] for t in ticks] == [f"#{r.id}" for r in store_rows]
    assert not any(_overlap(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1:])
