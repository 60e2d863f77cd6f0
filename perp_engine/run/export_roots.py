"""Where the app may export a run: only into a folder under an exports root, ``perp_home()/exports`` and the
folders listed in ``$PERP_EXPORT_ROOTS`` (separated like ``PATH``: ``:`` on Linux and macOS). The CLI exports
wherever its user says."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import PerpError
from ..paths import perp_home

EXPORT_ROOTS_ENV = "PERP_EXPORT_ROOTS"


def export_roots() -> list[Path]:
    """``perp_home()/exports``, then each folder of ``$PERP_EXPORT_ROOTS``; read from the environment on every call."""
    extra = [Path(p).expanduser().absolute() for p in os.environ.get(EXPORT_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [perp_home() / "exports", *extra]


def under_roots(dest: Path, roots: Sequence[Path]) -> Path:
    """``dest`` with every link in it resolved, when that lies inside one of ``roots`` (not a root itself);
    PerpError("dir") otherwise, so a link cannot lead an export out of the roots."""
    real = dest.resolve()
    if not any(real != root.resolve() and real.is_relative_to(root.resolve()) for root in roots):
        raise PerpError("dir", f"{dest} is not inside an exports folder ({', '.join(str(r) for r in roots)}); the app "
                               f"exports only there (add folders with {EXPORT_ROOTS_ENV}, or use perp export)")
    return real
