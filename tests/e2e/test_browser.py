"""The app in a real browser: `streamlit run` on 127.0.0.1, headless Debian Chromium driven by Playwright.

Launches a short run of a tiny saved model from the Experiment page (RIA pruning with OWL's block sparsities),
waits for it to finish (a real worker process runs it), opens Compare and checks that the chart shows the run,
then visits every other page (Inside a layer on the model chosen on Experiment; Paper with the shipped report of
docs/paper when there is one, checking that each claim's verdict shows). Screenshots of every page go to
artifacts/screenshots/ (kept by CI as test artifacts); the slow test opens Inside a layer on the embedded model
(the README's screenshot).

Then the run's own page opens from its address (and again after a reload), and on a 1280x720 projector the
Compare chart starts above the fold with readable tick labels.

Needs /usr/bin/chromium (`apt-get install chromium`) and the playwright Python package; no `playwright install`.
Skipped when Chromium is missing, unless PERP_REQUIRE_E2E=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os

import pytest
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from harness import CHROMIUM, ROOT, app_server, launch_chromium, live_button, screenshot, settle

from perp_engine.config import RunConfig
from perp_engine.resources.estimate import estimate_run
from perp_engine.store import RunStore

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SHOTS = ROOT / "artifacts" / "screenshots"
RUN = {"preset": "perp", "method": "ria", "allocation": "owl", "sparsity": 0.5, "steps": 3, "seqlen": 32,
       "eval_tokens": 256, "calib_samples": 8, "batch_size": 2}
RUN_TIMEOUT_MS = 150_000
PROJECTOR = {"width": 1280, "height": 720}
INSIDE_TRAIN = 'button:has-text("Train the adapters")'  # the adapters train only when this is pressed
INSIDE_READY = '[data-testid="stMetricLabel"]:has-text("MaskLoRA")'  # the last thing the adapters draw


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        if os.environ.get("PERP_REQUIRE_E2E") == "1":
            pytest.fail(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`streamlit run app/main.py` on a free local port with an empty store; yields (url, store path)."""
    folder = tmp_path_factory.mktemp("e2e")
    store_path = folder / "runs.sqlite"
    try:
        with app_server(store_path, folder / "streamlit.log") as url:
            yield url, store_path
    except RuntimeError as err:
        pytest.fail(str(err))
    finally:
        with RunStore(store_path) as store:
            for row in store.list_runs(status=("queued", "running")):
                store.request_cancel(row.id)


def shoot(page, name: str) -> None:
    screenshot(page, SHOTS / f"{name}.png")


def choose(page, label: str, value: str, typed: bool = False) -> None:
    box = page.get_by_role("combobox", name=label)
    box.click()
    box.fill(value)
    if typed:
        box.press("Enter")
    else:
        page.get_by_role("option", name=value, exact=True).click()
    settle(page)


def segment(page, label: str, value: str) -> None:
    """Pick ``value`` in the segmented control ``label``."""
    page.get_by_role("radiogroup", name=label).get_by_role("radio", name=value, exact=True).click()
    settle(page)


def number(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    settle(page)


def test_launch_a_run_and_compare_it(chromium, server, tiny_model_dir, tiny_text_file):  # noqa: F811
    url, store_path = server
    config = RunConfig.create(RUN["preset"], model=str(tiny_model_dir), dataset=str(tiny_text_file),
                              **{k: v for k, v in RUN.items() if k != "preset"})
    expected = estimate_run(config).trainable_params
    page = chromium.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(url)
    page.get_by_role("heading", name="Experiment").wait_for(timeout=60_000)
    settle(page)
    shoot(page, "experiment-empty")

    choose(page, "Model", str(tiny_model_dir), typed=True)
    choose(page, "Text for calibration, retraining and perplexity", str(tiny_text_file), typed=True)
    segment(page, "Method", RUN["method"])
    segment(page, "Allocation", RUN["allocation"])
    page.get_by_label("OWL spread λ", exact=True).wait_for()  # OWL's knobs appear once it is chosen
    choose(page, "Recipe", RUN["preset"])
    number(page, "Training steps", RUN["steps"])
    page.get_by_text("Run size and advanced settings").click()
    number(page, "Sequence length", RUN["seqlen"])
    number(page, "Evaluation tokens", RUN["eval_tokens"])
    number(page, "Calibration sequences", RUN["calib_samples"])
    number(page, "Batch size", RUN["batch_size"])
    # The estimate is computed from the page's config: seeing the tiny model's count proves the inputs took.
    page.locator('[data-testid="stMetricValue"]', has_text=f"{expected:,}").first.wait_for(timeout=30_000)

    live_button(page, "Launch").click()
    page.get_by_text("You can leave this page").or_(page.get_by_text("Queued:")).first.wait_for(timeout=30_000)
    shoot(page, "experiment-running")
    page.locator('[data-testid="stMetricLabel"]', has_text="Retrained").wait_for(timeout=RUN_TIMEOUT_MS)
    shoot(page, "experiment")

    (row,) = RunStore(store_path).list_runs()
    assert row.status == "done", row.error
    assert row.config["model"] == str(tiny_model_dir) and row.config["steps"] == RUN["steps"]
    assert (row.config["method"], row.config["allocation"]) == (RUN["method"], RUN["allocation"])

    page.get_by_role("link", name="Compare", exact=True).click()
    page.get_by_role("heading", name="Compare runs").wait_for()
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for(timeout=30_000)
    legend = [text.text_content() for text in chart.locator(".legendtext").all()]
    assert "ria + OWL · perp" in legend and "ria + OWL · no retraining" in legend and "dense" in legend
    points = chart.locator(".scatterlayer .point")
    assert points.count() >= 2  # pruned, retrained; the dense model is a labelled dashed line
    assert any(t.startswith("dense ") for t in chart.locator(".scatterlayer .textpoint").all_text_contents())
    shoot(page, "compare")

    ready = {"layers": ".js-plotly-plot", "inside_layer": INSIDE_TRAIN, "sweep": 'button:has-text("Launch sweep")',
             "paper": 'button:has-text("runs here")', "about": ".katex"}
    for name, link, heading in (("layers", "Layers", "Layers"), ("inside_layer", "Inside a layer", "Inside a layer"),
                                ("sweep", "Sweep", "Sweep"), ("paper", "Paper", "The paper, reproduced"),
                                ("about", "About", "About PERP Lab")):
        page.get_by_role("link", name=link, exact=True).click()
        page.get_by_role("heading", name=heading).wait_for()
        page.locator(ready[name]).first.wait_for(timeout=60_000)
        shoot(page, name)
        if name == "inside_layer":  # the model chosen on Experiment, not the default one
            assert page.get_by_text(str(tiny_model_dir)).count() >= 1
            page.locator(INSIDE_TRAIN).first.click()
            page.locator(INSIDE_READY).first.wait_for(timeout=60_000)
            assert page.locator(".js-plotly-plot").count() == 8
        if name == "paper":  # the shipped report's verdicts, or the note that there is none yet
            shipped = ROOT / "docs" / "paper" / "report.json"
            expected = ([f"Shipped results: {claim['verdict']['status']}." for claim in
                         json.loads(shipped.read_text())["claims"]] if shipped.is_file() else ["No shipped results yet"])
            assert all(page.get_by_text(text).count() >= 1 for text in expected), expected

    page.goto(f"{url}/run?run={row.id}")
    for _ in range(2):  # the run's address opens its page, and a reload keeps it
        page.get_by_role("heading", name=f"Run #{row.id}").wait_for(timeout=60_000)
        page.locator('[data-testid="stMetricLabel"]', has_text="Retrained").wait_for(timeout=30_000)
        assert page.url.endswith(f"/run?run={row.id}")
        page.reload()
    shoot(page, "run")
    page.close()

    projector = chromium.new_page(viewport=PROJECTOR)
    for path, heading in (("compare", "Compare runs"), (f"layers?run={row.id}", "Layers")):
        projector.goto(f"{url}/{path}")
        projector.get_by_role("heading", name=heading).wait_for(timeout=60_000)
        chart = projector.locator(".js-plotly-plot").first
        chart.wait_for(timeout=30_000)
        settle(projector)
        box = chart.bounding_box()
        assert box["y"] < PROJECTOR["height"] / 2 and box["height"] < PROJECTOR["height"], (path, box)  # above the fold
        shoot(projector, f"{path.split('?')[0]}-1280x720")
    projector.goto(f"{url}/compare")
    chart = projector.locator(".js-plotly-plot").first
    chart.wait_for(timeout=30_000)
    ticks = [t.text_content() for t in chart.locator(".ytick text").all()]
    assert ticks and all(float(t.replace(",", "")) >= 10 for t in ticks), ticks  # perplexities: no bare minor digit
    projector.close()


@pytest.mark.slow
def test_inside_a_layer_on_the_embedded_model(chromium, server):
    """A fresh session opens the page on the default (embedded) model; its screenshot is the README's."""
    url, _ = server
    page = chromium.new_page(viewport={"width": 1280, "height": 1560})
    page.goto(f"{url}/inside_layer")
    page.get_by_role("heading", name="Inside a layer").wait_for(timeout=60_000)
    page.locator(INSIDE_TRAIN).first.click(timeout=RUN_TIMEOUT_MS)
    page.locator(INSIDE_READY).first.wait_for(timeout=RUN_TIMEOUT_MS)
    assert page.get_by_text("smollm2-135m").count() >= 1
    assert page.locator('[data-testid="stMetricValue"]', has_text="0 of 165,888").count() == 1  # LoRA filled them all
    shoot(page, "inside_layer_embedded")
    page.close()
