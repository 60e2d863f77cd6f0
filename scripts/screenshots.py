"""Retake the README screenshots (docs/screenshots/*.png, 1400 px wide) from real runs.

    .venv/bin/python scripts/screenshots.py                          # a temporary store filled with real runs
    .venv/bin/python scripts/screenshots.py --store demo.sqlite      # reuse this store (filled first when empty)

An empty store is filled with a few short runs on the embedded model (SmolLM2-135M on wiki-embedded: prune-only,
PERP and PERP + MaskLoRA at 30-70% sparsity, one sweep; 10-30 minutes on a laptop CPU), then the app is served on
it and every page (Inside a layer on the embedded model's block 15) is photographed in headless Chromium
(/usr/bin/chromium, driven by Playwright), as the browser test does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from harness import app_server, launch_chromium, screenshot, settle  # noqa: E402

from perp_engine.config import RunConfig  # noqa: E402
from perp_engine.jobs.worker import execute_run  # noqa: E402
from perp_engine.store import RunStore  # noqa: E402

SIZE = {"seqlen": 128, "calib_samples": 8, "eval_tokens": 2048, "steps": 8, "batch_size": 4}
RUNS = (  # (preset, method, sparsity); the runs at 30/50/70% with perp form the demo sweep
    ("none", "wanda", 0.5), ("perp", "wanda", 0.5), ("perp-masklora", "wanda", 0.5), ("perp", "magnitude", 0.5),
    ("perp", "wanda", 0.3), ("perp", "wanda", 0.7),
)
NAMED = ("perp-masklora", "MaskLoRA demo", ["lecture"])  # the run given a name and a tag
VIEWPORT = {"width": 1400, "height": 1100}


def fill(store: RunStore) -> None:
    """Run RUNS in this process, one after the other, as a worker would; name one and group a sweep."""
    ids = {}
    for preset, method, sparsity in RUNS:
        config = RunConfig.create(preset, method=method, sparsity=sparsity, **SIZE)
        run_id = store.create_run(config)
        store.start_run(run_id)
        print(f"run {run_id}: {method} {sparsity:.0%} {preset}", flush=True)
        if execute_run(store, run_id) != "done":
            raise SystemExit(f"run {run_id} did not finish: {store.get_run(run_id).error}")
        ids[(preset, method, sparsity)] = run_id
    preset, name, tags = NAMED
    named = ids[(preset, "wanda", 0.5)]
    store.rename_run(named, name)
    store.set_tags(named, tags)
    sweep = [ids[("perp", "wanda", s)] for s in (0.3, 0.5, 0.7)]
    store.create_sweep("wanda {30%, 50%, 70%} x perp", {"sparsity": [0.3, 0.5, 0.7]}, sweep)


def shoot(url: str, store: RunStore, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    runs = store.list_runs(status="done")
    focus = next((r for r in runs if r.config.get("adapter") not in (None, "none")), runs[0])
    shots = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport=VIEWPORT)

        def visit(path: str, heading: str, name: str, ready: str = ".js-plotly-plot", tab: str | None = None,
                  scroll: str | None = None) -> None:
            """Open ``path``, pick ``tab``, wait for ``ready``; ``scroll``: bring that element to the top."""
            page.goto(f"{url}/{path}")
            page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
            settle(page)
            if tab:
                page.get_by_role("tab", name=tab).click()
            shown = page.locator(f"{ready}:visible").first
            shown.wait_for(timeout=60_000)
            if scroll:
                page.locator(scroll).first.evaluate("element => element.scrollIntoView({block: 'start'})")
            shots.append(out / f"{name}.png")
            screenshot(page, shots[-1])

        visit(f"?from={focus.id}", "Experiment", "experiment", ready='[data-testid="stMetricValue"]')
        visit("compare", "Compare runs", "compare", tab="Perplexity vs trainable parameters")
        visit(f"layers?run={focus.id}", "Layers", "layers", tab="Error by depth")
        visit(f"run?run={focus.id}", f"Run #{focus.id}", "run", ready='[data-testid="stMetricValue"]')
        visit("inside_layer", "Inside a layer", "inside_layer", ready='button:has-text("Train the adapters")')
        visit("sweep", "Sweep", "sweep", scroll='[data-testid="stProgress"]')  # the sweep's results, below its form
        visit("paper", "The paper, reproduced", "paper")
        visit("about", "About PERP Lab", "about", ready=".katex")
        browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="store to photograph (filled first when it has no finished run)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder of the PNG files")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="perp-screenshots-"))
    store_path = args.store or folder / "runs.sqlite"
    store = RunStore(store_path)
    if not store.list_runs(status="done"):
        fill(store)
    with app_server(store_path, folder / "streamlit.log") as url:
        for path in shoot(url, store, args.out):
            print(path)


if __name__ == "__main__":
    main()
