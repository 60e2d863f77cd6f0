"""A PERP Lab server and a headless Chromium for the browser test and scripts/screenshots.py.

`streamlit run app/main.py` on a free 127.0.0.1 port with a given store, and Debian's /usr/bin/chromium driven
by Playwright (no `playwright install`): plain functions, no pytest.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(store_path: Path, log_path: Path) -> Iterator[str]:
    """Serve the app on a free local port with ``store_path`` as its store; yields its URL. RuntimeError with
    the end of the server's log when it does not start."""
    port = free_port()
    env = {**os.environ, "PERP_STORE": str(store_path), "HF_HUB_OFFLINE": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("streamlit did not start:\n" + log_path.read_text()[-3000:]) from None
                    time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def launch_chromium(playwright):
    """Headless Debian Chromium through Playwright."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def settle(page) -> None:
    """Wait until the app has finished rerunning after an input."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def live_button(page, name: str):
    """The button ``name`` of the app's current run. While a rerun is under way Streamlit keeps the previous
    run's elements on the page, marked stale, beside the ones already redrawn: a moved button is there twice."""
    return (page.locator('[data-testid="stElementContainer"]:not([data-stale="true"])')
            .get_by_role("button", name=name, exact=True))


def screenshot(page, path: Path, full_page: bool = False) -> None:
    """A screenshot once the app is idle and the charts have drawn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    settle(page)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(path), full_page=full_page)
