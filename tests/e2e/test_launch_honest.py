"""Experiment's Launch in a real browser (issue 30): it queues what the form shows or nothing.

A value typed beyond what a field allows (adapter rank 100000 on a tiny model, sequence length 10000) disables
Launch, "Before you launch" names the field and says which input to change, and no run is queued. A runnable
config launches once: the page then offers the identical run instead of a copy, with a link to its page. The run
stays listed after a reload (this browser's cookie), and not in another browser. A finished identical run is
offered too, and its link opens its page.

Needs /usr/bin/chromium and the playwright package, as tests/e2e/test_browser.py (skipped without them).
"""

from __future__ import annotations

import pytest
from app_fixtures import made_up, record
from fixtures_tiny import tiny_model_dir, tiny_text_file  # noqa: F401  (pytest fixtures)
from harness import live_button, settle
from test_browser import choose, chromium, number, server  # noqa: F401  (chromium, server: pytest fixtures)

from app import forms
from perp_engine.store import RunStore

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TINY = {"Sequence length": 16, "Evaluation tokens": 64, "Calibration sequences": 2}
VIEWPORT = {"width": 1400, "height": 1500}


def before_you_launch(page, text: str):
    """The first element of the cost column that shows ``text``."""
    return page.get_by_text(text).first


def launch_button(page):
    """Launch once the app has finished the rerun that the last input started."""
    settle(page)
    return live_button(page, "Launch")


def open_experiment(browser, url: str):
    """Experiment in a new page of ``browser`` (a Playwright browser context: its own cookies)."""
    page = browser.new_page()
    page.goto(url)
    page.get_by_role("heading", name="Experiment").wait_for(timeout=60_000)
    return page


def test_out_of_range_values_disable_launch_and_identical_runs_are_offered(chromium, server, tiny_model_dir,  # noqa: F811
                                                                           tiny_text_file):  # noqa: F811
    url, store_path = server
    mine = chromium.new_context(viewport=VIEWPORT)
    page = open_experiment(mine, url)
    choose(page, "Model", str(tiny_model_dir), typed=True)
    choose(page, "Text for calibration, retraining and perplexity", str(tiny_text_file), typed=True)
    choose(page, "Recipe", forms.CUSTOM)
    choose(page, "Adapter on the pruned layers", "masklora")
    page.get_by_text(forms.ADVANCED).click()
    for label, value in TINY.items():
        number(page, label, value)
    launch_button(page).wait_for()
    assert launch_button(page).is_enabled()

    number(page, "Adapter rank", 100_000)  # the old field's maximum was 256: the browser kept the previous value
    before_you_launch(page, "rank: 100000 exceeds").wait_for(timeout=30_000)
    before_you_launch(page, "Change Adapter rank.").wait_for()
    assert launch_button(page).is_disabled()
    number(page, "Evaluation tokens", 20_000)
    number(page, "Sequence length", 10_000)  # beyond the tiny model's context
    number(page, "Adapter rank", 8)
    before_you_launch(page, "seqlen: 10000 is beyond the context").wait_for(timeout=30_000)
    before_you_launch(page, "Change Sequence length (under Run size and advanced settings).").wait_for()
    assert launch_button(page).is_disabled()
    assert RunStore(store_path).list_runs() == []  # nothing was queued

    for label, value in TINY.items():
        number(page, label, value)
    launch_button(page).click()
    offer = before_you_launch(page, "Identical to run #")
    offer.wait_for(timeout=30_000)
    (row,) = RunStore(store_path).list_runs()
    assert f"Identical to run #{row.id}" in offer.text_content()
    assert row.config["rank"] == 8 and row.config["seqlen"] == TINY["Sequence length"]
    assert launch_button(page).is_disabled()
    link = page.get_by_role("link", name=f"Open run #{row.id}")
    assert link.get_attribute("href").endswith(f"run?run={row.id}")

    page.reload()  # the same browser: its run is still listed, under "Your runs"
    page.get_by_role("heading", name="Your runs").wait_for(timeout=60_000)
    page.get_by_role("link", name=f"Run #{row.id}: details, log, export").wait_for(timeout=30_000)
    other = chromium.new_context(viewport=VIEWPORT)
    stranger = open_experiment(other, url)  # another browser (no cookie): not its run
    stranger.get_by_role("heading", name="Your runs").wait_for(timeout=60_000)
    stranger.get_by_role("link", name="Every run: Compare").wait_for(timeout=30_000)
    assert stranger.get_by_role("link", name=f"Run #{row.id}: details, log, export").count() == 0
    other.close()
    mine.close()


def test_a_finished_identical_run_opens_from_the_offer(chromium, server):  # noqa: F811
    url, store_path = server
    config = forms.ExperimentForm().to_config()  # what a new form shows
    with RunStore(store_path) as store:
        done = record(store, config, made_up(config, 30.0, 60.0, 40.0, 0.01))
    browser = chromium.new_context(viewport=VIEWPORT)
    page = open_experiment(browser, url)
    before_you_launch(page, f"Identical to run #{done}").wait_for(timeout=60_000)
    assert launch_button(page).is_disabled()
    page.get_by_role("link", name=f"Open run #{done}").click()
    page.get_by_role("heading", name=f"Run #{done}").wait_for(timeout=60_000)
    assert page.url.endswith(f"/run?run={done}")
    browser.close()
