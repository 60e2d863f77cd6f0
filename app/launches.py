"""Which runs were launched from which browser, so Experiment can list a user's own runs after a reload.

**How a browser is known.** A random id (32 hex digits) kept in a cookie, ``perp_lab_browser``, for a year. The
app reads it from the request that opened the session (``st.context.cookies``); a browser without one gets a new
id, which the page stores with a line of JavaScript (``document.cookie``). A cookie rather than the page address:
the address changes with every page and link (Compare, a run's page, the sidebar) and a reload of another page
would lose an id kept there, while a cookie comes with every request of this browser whatever page it opens;
it is also not copied when a user shares a link. It only names a list of run ids, it grants nothing: the app
serves one user on 127.0.0.1, and every run stays visible to everyone on Compare.

**Where the lists are.** One text file per store and browser beside the store
(``<store folder>/browsers/<store name>-<id>.txt``), one run id per line, appended as runs are launched: appends
of a line from two tabs of one browser never mix. Ids of runs deleted since are skipped when read.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

COOKIE = "perp_lab_browser"
COOKIE_DAYS = 365
_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    """A fresh browser id: 32 random hex digits."""
    return uuid.uuid4().hex


def valid_id(value: object) -> bool:
    """Whether ``value`` is a browser id as :func:`new_id` makes them (anything else, e.g. an edited cookie, is
    ignored: the id names a file)."""
    return isinstance(value, str) and bool(_ID.match(value))


def cookie_script(browser: str) -> str:
    """The JavaScript that keeps ``browser`` in this browser's cookie (every path of the app, a year)."""
    if not valid_id(browser):
        raise ValueError(f"not a browser id: {browser!r}")
    return (f"<script>document.cookie = '{COOKIE}={browser}; path=/; max-age={COOKIE_DAYS * 86400}; "
            "SameSite=Strict';</script>")


def launch_file(store_path: Path, browser: str) -> Path:
    """The file listing the runs of the store at ``store_path`` launched from ``browser``."""
    if not valid_id(browser):
        raise ValueError(f"not a browser id: {browser!r}")
    return store_path.parent / "browsers" / f"{store_path.stem}-{browser}.txt"


def record(store_path: Path, browser: str, run_id: int) -> None:
    """Add a run launched from ``browser`` to its list."""
    path = launch_file(store_path, browser)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{int(run_id)}\n")


def launched(store_path: Path, browser: str) -> list[int]:
    """The runs launched from ``browser`` into the store at ``store_path``, newest first, each once (lines that
    are not a run id are skipped)."""
    path = launch_file(store_path, browser)
    if not path.is_file():
        return []
    ids = [int(line) for line in path.read_text(encoding="utf-8").split() if line.isdigit()]
    return sorted(set(ids), reverse=True)
