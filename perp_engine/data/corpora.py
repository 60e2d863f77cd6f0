"""Corpora: the calibration text and held-out evaluation text of a named data set or of a user's text file.

:func:`load_corpus` takes
- ``wiki-embedded``, ``wikitext2`` or ``c4`` (how each is extracted: :mod:`perp_engine.data.named_corpora`),
  extracted once and cached under ``<home>/data/<name>/`` (``calib.txt``, ``eval.txt``, ``meta.json``), so a second
  run does not parse again;
- a text file (``file:PATH`` or an existing path): paragraphs; the last ~10% are held out for evaluation.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import NAMED_DATASETS
from ..errors import PerpError
from ..paths import atomic_dir, resolve_home
from .named_corpora import BUILDERS, HUB_CORPORA, Builder, check_hub

FILE_EVAL_SHARE = 0.10  # user text files: share of the paragraphs held out for evaluation
# ASCII record separator: between the documents of a cached document corpus, and of their token-cache key (.tokens)
DOCUMENT_SEPARATOR = "\x1e"
_CORPUS_FORMAT = 2  # bump when an extraction rule changes: cached corpora of another format are rebuilt
_ALLOWED = "allowed: wiki-embedded, wikitext2, c4, a text file path or file:PATH"


@dataclass(frozen=True)
class Corpus:
    """Calibration and held-out evaluation text of one corpus. ``calib_documents``, when given, are the
    documents ``calib_text`` joins: windows are then cut inside documents only."""

    name: str
    calib_text: str
    eval_text: str
    description: str
    calib_documents: tuple[str, ...] = ()

    @property
    def calib_source(self) -> str | tuple[str, ...]:
        """What the window functions take: the documents when there are some, else the text."""
        return self.calib_documents or self.calib_text


def load_corpus(name: str, home: str | os.PathLike | None = None) -> Corpus:
    """A named corpus (cached under ``<home>/data``) or a user's text file. PerpError("dataset") otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise PerpError("dataset", f"empty dataset name; {_ALLOWED}")
    if name in NAMED_DATASETS:
        return _cached_corpus(name, resolve_home(home), BUILDERS[name])
    path = name[len("file:"):] if name.startswith("file:") else name
    if name.startswith("file:") or Path(path).expanduser().exists():
        return _file_corpus(name, Path(path).expanduser())
    raise PerpError("dataset", f"{name!r} is neither a known dataset nor an existing file; {_ALLOWED}")


def needs_download(name: str, home: str | os.PathLike | None = None) -> bool:
    """True when ``load_corpus(name)`` would download (a Hub corpus not extracted yet), after checking that the
    download can happen now: PerpError("dataset") when offline or the Hub cannot be reached. Downloads nothing."""
    if name not in HUB_CORPORA or _read_cached(name, resolve_home(home) / "data" / name) is not None:
        return False
    check_hub(name)
    return True


def _read_cached(name: str, folder: Path) -> Corpus | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") == _CORPUS_FORMAT:
            calib = (folder / "calib.txt").read_text(encoding="utf-8")
            if meta.get("documents"):
                calib = tuple(calib.split(DOCUMENT_SEPARATOR))
            return _corpus(name, calib, (folder / "eval.txt").read_text(encoding="utf-8"), meta["description"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def _cached_corpus(name: str, home: Path, build: Builder) -> Corpus:
    folder = home / "data" / name
    cached = _read_cached(name, folder)
    if cached is not None:
        return cached
    calib, evaluation, description = build()
    documents = not isinstance(calib, str)
    with atomic_dir(folder) as tmp:
        (tmp / "calib.txt").write_text(DOCUMENT_SEPARATOR.join(calib) if documents else calib, encoding="utf-8")
        (tmp / "eval.txt").write_text(evaluation, encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps({"format": _CORPUS_FORMAT, "description": description,
                                                   "documents": documents}))
    return _corpus(name, calib, evaluation, description)


def _corpus(name: str, calib: str | tuple[str, ...], evaluation: str, description: str) -> Corpus:
    if isinstance(calib, str):
        return Corpus(name, calib, evaluation, description)
    return Corpus(name, "\n\n".join(calib), evaluation, description, calib_documents=tuple(calib))


def _file_corpus(name: str, path: Path) -> Corpus:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PerpError("dataset", f"file {str(path)!r} not found; {_ALLOWED}") from None
    except UnicodeDecodeError:
        raise PerpError("dataset", f"{str(path)!r} is not UTF-8 text") from None
    except OSError as err:
        raise PerpError("dataset", f"cannot read {str(path)!r}: {err.strerror or err}") from None
    units, sep = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()], "\n\n"
    if len(units) < 2:
        units, sep = [line.strip() for line in text.splitlines() if line.strip()], "\n"
    if not units:
        raise PerpError("dataset", f"{str(path)!r} is empty")
    if len(units) < 2:
        raise PerpError("dataset", f"{str(path)!r} has a single paragraph; it needs at least two "
                                   "(the last ~10% are held out for evaluation)")
    n_eval = max(1, round(FILE_EVAL_SHARE * len(units)))
    description = f"text file {path.name}: {len(units)} paragraphs, the last {n_eval} held out for evaluation"
    return Corpus(name, sep.join(units[:-n_eval]), sep.join(units[-n_eval:]), description)
