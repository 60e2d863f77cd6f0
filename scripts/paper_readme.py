"""Fill the README's "Reproducing the paper" results from the report `perp reproduce --out docs/paper` wrote.

    .venv/bin/python scripts/paper_readme.py [REPORT_DIR]      # default: docs/paper

Everything between the README's two paper-results markers is replaced with the report's sizes, main figure,
verdicts and tables (perp_engine.reproduce.readme_section), so the committed numbers are the command's, never
typed by hand. Run it again after every `perp reproduce --out docs/paper`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perp_engine.reproduce import load_report, readme_section  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- paper-results:start -->", "<!-- paper-results:end -->"


def fill(readme: str, section: str) -> str:
    """``readme`` with the text between the markers replaced by ``section``."""
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"{README} has no {START} ... {END} block")
    return f"{head}{START}\n{section.strip()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    folder = (Path(argv[0]) if argv else ROOT / "docs" / "paper").resolve()
    report = load_report(folder / "report.json")
    prefix = f"{Path(os.path.relpath(folder, ROOT)).as_posix()}/"  # figure paths as the README sees them
    README.write_text(fill(README.read_text(), readme_section(report, prefix)))
    print(f"README.md: results of {folder / 'report.json'} ({report['created']}) written between the markers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
