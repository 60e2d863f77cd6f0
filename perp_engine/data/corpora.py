"""All text-data loading: corpora (embedded Wikipedia, WikiText-2, C4, a user's file), token ids, windows.

Corpora:
- ``wiki-embedded``: the Wikipedia excerpt shipped in gensim's test data (106 articles), cleaned to prose.
  Split by article in file order: an article goes to evaluation while evaluation holds less than 15% of the
  characters seen so far, else to calibration. Deterministic, ~85/15 by size, evaluation spread over the file.
- ``wikitext2``: Salesforce/wikitext ``wikitext-2-raw-v1``; eval = test split, calib = train split.
- ``c4``: allenai/c4 ``en`` as in Wanda/SparseGPT; calib = the first train shard (its first 5000 documents, kept
  as documents: calibration and training windows never cross a document boundary, as in their loaders),
  eval = the first 1100 documents of the first validation shard joined with spaces.
- a text file (``file:PATH`` or an existing path): paragraphs; the last ~10% are held out for evaluation.

Windows (placement rules in :mod:`perp_engine.data.windows`): ``MEASURE_WINDOWS`` held-out windows spread evenly over
the calibration text measure the layer-wise errors; calibration and retraining windows are drawn at seeded
random offsets that never overlap them, so the errors are measured on text nothing was pruned or trained on.
Evaluation windows follow the WikiText protocol on the evaluation text.

Named corpora are extracted once and cached under ``<home>/data/<name>/``; token ids are cached under
``<home>/tokens/`` keyed by the text and the tokenizer, so a second run neither parses nor tokenizes.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import NAMED_DATASETS
from ..errors import PerpError
from ..paths import atomic_dir, atomic_write_bytes, hub_unavailable_reason, read_cache, resolve_home
from .windows import allowed_ranges, cut, held_out_starts, random_starts

HUB_CORPORA = {"wikitext2": "Salesforce/wikitext", "c4": "allenai/c4"}  # downloaded on first use
EVAL_SHARE = 0.15  # wiki-embedded: share of the text held out for evaluation
FILE_EVAL_SHARE = 0.10  # user text files: share of the paragraphs held out for evaluation
TRAIN_SEED_OFFSET = 1_000_003  # retraining windows use another random stream than calibration windows
MEASURE_WINDOWS = 8  # held-out calibration-source windows on which the layer-wise errors are measured
DOCUMENT_SEPARATOR = "\x1e"  # ASCII record separator: between the documents of a cached document corpus
_CORPUS_FORMAT = 2  # bump when an extraction rule changes: cached corpora of another format are rebuilt
_ALLOWED = "allowed: wiki-embedded, wikitext2, c4, a text file path or file:PATH"

_WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# appendix sections: Wikipedia's manual of style puts them last, so an article is cut at the first one
_APPENDIX = re.compile(
    r"^==\s*(see also|notes|references|further reading|external links|bibliography|sources|citations|"
    r"footnotes|notes and references|works cited|works)\s*==\s*$", re.IGNORECASE | re.MULTILINE)
_NON_PROSE_TAGS = {"ref", "references", "table", "gallery", "math", "chem", "timeline", "imagemap", "score",
                   "syntaxhighlight", "source", "hiero", "graph", "mapframe", "templatedata", "pre"}
_NON_PROSE_LINKS = {"file", "image", "category", "media"}
_INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]+)*$")
_LEFTOVER_TAG = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>|</?[a-zA-Z][^<>]*>", re.IGNORECASE)
_LEFTOVER_LINE = re.compile(r"\[\[|\]\]|\{\{|\}\}|^\s*(\{\||\|\}|\||!)")

_C4_TRAIN = "en/c4-train.00000-of-01024.json.gz"
_C4_VALID = "en/c4-validation.00000-of-00008.json.gz"
_C4_CALIB_DOCS = 5000
_C4_EVAL_DOCS = 1100


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
        return _cached_corpus(name, resolve_home(home), _BUILDERS[name])
    path = name[len("file:"):] if name.startswith("file:") else name
    if name.startswith("file:") or Path(path).expanduser().exists():
        return _file_corpus(name, Path(path).expanduser())
    raise PerpError("dataset", f"{name!r} is neither a known dataset nor an existing file; {_ALLOWED}")


def token_ids(tokenizer, text: str, home: str | os.PathLike | None | bool = None) -> torch.Tensor:
    """The whole ``text`` tokenized once (no special tokens added) as a 1-D LongTensor.

    Cached under ``<home>/tokens`` by (text, tokenizer) hash; ``home=False`` disables the cache."""
    if home is False:
        return _tokenize(tokenizer, text)
    from safetensors.torch import load_file, save

    key = hashlib.sha256(f"{tokenizer_fingerprint(tokenizer)}\0{_sha256(text)}".encode()).hexdigest()[:32]
    path = resolve_home(home) / "tokens" / f"{key}.safetensors"
    cached = read_cache(path, lambda p: load_file(p)["ids"].long())
    if cached is not None:
        return cached
    ids = _tokenize(tokenizer, text)
    atomic_write_bytes(path, save({"ids": ids.to(torch.int32)}))  # int32 halves the file: vocabularies are < 2^31
    return ids


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides how the tokenizer splits text (vocabulary, merges, normalizers)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return _sha256(f"{type(tokenizer).__name__}\0{spec}")


Source = str | Sequence[str]  # one text, or documents that windows must not cross


def token_stream(tokenizer, source: Source, home: str | os.PathLike | None | bool = None
                 ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Token ids of ``source`` and its documents as ``(start, end)`` ranges of them (one range for a text).

    Documents are tokenized one by one, so a window inside a range never mixes two documents."""
    if isinstance(source, str):
        ids = token_ids(tokenizer, source, home)
        return ids, [(0, ids.numel())]
    ids, lengths = _document_ids(tokenizer, [doc for doc in source if doc.strip()], home)
    ends = torch.tensor(lengths).cumsum(0).tolist()
    return ids, [(end - n, end) for n, end in zip(lengths, ends)]


def _document_ids(tokenizer, docs: list[str], home) -> tuple[torch.Tensor, list[int]]:
    """The documents tokenized one by one and concatenated, with their lengths; cached like :func:`token_ids`."""
    if not docs:
        raise PerpError("dataset", "the text has no documents")
    if home is False:
        parts = [_tokenize(tokenizer, doc) for doc in docs]
        return torch.cat(parts), [p.numel() for p in parts]
    from safetensors.torch import load_file, save

    joined = DOCUMENT_SEPARATOR.join(docs)
    key = hashlib.sha256(f"{tokenizer_fingerprint(tokenizer)}\0docs\0{_sha256(joined)}".encode()).hexdigest()[:32]
    path = resolve_home(home) / "tokens" / f"{key}.safetensors"
    cached = read_cache(path, lambda p: (lambda stored: (stored["ids"].long(), stored["lengths"].tolist()))(load_file(p)))
    if cached is not None:
        return cached
    ids, lengths = _document_ids(tokenizer, docs, False)
    atomic_write_bytes(path, save({"ids": ids.to(torch.int32), "lengths": torch.tensor(lengths, dtype=torch.int64)}))
    return ids, lengths


def measure_windows(tokenizer, source: Source, seqlen: int, n: int = MEASURE_WINDOWS,
                    home: str | os.PathLike | None | bool = None) -> torch.Tensor:
    """``(n, seqlen)`` held-out windows spread evenly over the calibration source, for the layer-wise errors.

    :func:`calibration_samples` and :func:`train_samples` never overlap them (with the same ``n``)."""
    _check_positive("seqlen", seqlen)
    ids, segments = token_stream(tokenizer, source, home)
    return cut(ids, held_out_starts(segments, n, seqlen), seqlen)


def calibration_samples(tokenizer, source: Source, n: int, seqlen: int, seed: int,
                        home: str | os.PathLike | None | bool = None, held_out: int = MEASURE_WINDOWS) -> torch.Tensor:
    """``(n, seqlen)`` windows at random offsets drawn from ``seed`` (as in Wanda/SparseGPT), inside documents,
    avoiding the ``held_out`` measurement windows of :func:`measure_windows`."""
    return _random_windows(tokenizer, source, n, seqlen, seed, "calib_samples", home, held_out)


def train_samples(tokenizer, source: Source, n: int, seqlen: int, seed: int,
                  home: str | os.PathLike | None | bool = None, held_out: int = MEASURE_WINDOWS) -> torch.Tensor:
    """Like :func:`calibration_samples`, from another random stream, for retraining batches."""
    return _random_windows(tokenizer, source, n, seqlen, seed + TRAIN_SEED_OFFSET, "train_samples", home, held_out)


def eval_windows(tokenizer, text: str, seqlen: int, max_tokens: int | None,
                 home: str | os.PathLike | None | bool = None) -> torch.Tensor:
    """WikiText protocol: non-overlapping ``seqlen`` windows from the start, remainder dropped, at most
    ``max_tokens // seqlen`` windows (all when ``max_tokens`` is None). Shape ``(k, seqlen)``."""
    _check_positive("seqlen", seqlen)
    if max_tokens is not None:
        _check_positive("eval_tokens", max_tokens)
        if max_tokens < seqlen:
            raise PerpError("eval_tokens", f"{max_tokens} is less than one window of seqlen={seqlen}; use at least {seqlen}")
    ids = token_ids(tokenizer, text, home)
    k = ids.numel() // seqlen
    if max_tokens is not None:
        k = min(k, max_tokens // seqlen)
    if k == 0:
        raise PerpError("dataset", f"the evaluation text has {ids.numel()} tokens, fewer than one window of seqlen={seqlen}")
    return ids[: k * seqlen].view(k, seqlen).clone()


def _random_windows(tokenizer, source: Source, n: int, seqlen: int, seed: int, field: str, home, held_out: int
                    ) -> torch.Tensor:
    _check_positive(field, n)
    _check_positive("seqlen", seqlen)
    ids, segments = token_stream(tokenizer, source, home)
    held = held_out_starts(segments, held_out, seqlen) if held_out else []
    ranges = allowed_ranges(segments, seqlen, held)
    if not ranges:
        longest = max(end - start for start, end in segments)
        raise PerpError("seqlen", f"{seqlen} needs a text of at least {seqlen} tokens in one piece besides the held-out "
                                  f"measurement windows; the calibration text's longest piece has {longest}")
    generator = torch.Generator().manual_seed(int(seed))
    return cut(ids, random_starts(ranges, n, generator), seqlen)


def _check_positive(field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PerpError(field, f"{value!r} is not allowed; use a positive whole number")


def _tokenize(tokenizer, text: str) -> torch.Tensor:
    if not text.strip():
        raise PerpError("dataset", "the text is empty")
    # verbose=False: the whole corpus is one long sequence on purpose, windows are cut afterwards
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- corpora ------------------------------------------------------------------------------------------------

# () -> (calibration text, or its documents, evaluation text, description)
Builder = Callable[[], tuple[str | tuple[str, ...], str, str]]


def needs_download(name: str, home: str | os.PathLike | None = None) -> bool:
    """True when ``load_corpus(name)`` would download (a Hub corpus not extracted yet), after checking that the
    download can happen now: PerpError("dataset") when offline or the Hub cannot be reached. Downloads nothing."""
    if name not in HUB_CORPORA or _read_cached(name, resolve_home(home) / "data" / name) is not None:
        return False
    _check_hub(name)
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


def wiki_articles(path: Path) -> list[tuple[str, str]]:
    """``[(title, prose)]`` of the main-namespace, non-redirect pages of a MediaWiki XML dump (.bz2)."""
    import mwparserfromhell

    articles = []
    with bz2.open(path) as stream:
        for _, element in ET.iterparse(stream):
            if not element.tag.endswith("}page"):
                continue
            namespace = element.findtext("{*}ns")
            text = element.findtext("{*}revision/{*}text") or ""
            if namespace == "0" and element.find("{*}redirect") is None:
                prose = _wiki_prose(mwparserfromhell, text)
                if prose:
                    articles.append((element.findtext("{*}title"), prose))
            element.clear()
    return articles


def _wiki_prose(mwparserfromhell, wikitext: str) -> str:
    """Readable paragraphs of one article: appendices, templates, references, tables, files and categories
    dropped, links replaced by their text, section titles kept as paragraphs of their own."""
    appendix = _APPENDIX.search(wikitext)
    code = mwparserfromhell.parse(wikitext[: appendix.start()] if appendix else wikitext)
    _drop_non_prose(code, mwparserfromhell.nodes)
    # markup the parser could not balance stays literal text: refs and tags are cut, table rows and
    # lines with unparsed links or templates are dropped
    text = _LEFTOVER_TAG.sub("", code.strip_code(normalize=True, collapse=True))
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [_tidy(line) for line in block.splitlines() if not _LEFTOVER_LINE.search(line)]
        lines = [line for line in lines if any(c.isalpha() for c in line)]
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _drop_non_prose(code, nodes) -> None:
    """Remove non-prose nodes in one pass down the tree (``Wikicode.remove`` searches the whole tree per call,
    quadratic on long articles), recursing only where ``strip_code`` would render text."""
    kept = []
    for node in code.nodes:
        if isinstance(node, (nodes.Template, nodes.Comment)):
            continue
        if isinstance(node, nodes.Tag):
            if str(node.tag).strip().lower() in _NON_PROSE_TAGS:
                continue
            children = [node.contents]
        elif isinstance(node, nodes.Wikilink):
            title = str(node.title).strip()
            prefix = title.split(":", 1)[0].strip().lower() if ":" in title else ""
            if prefix in _NON_PROSE_LINKS or _INTERLANGUAGE.match(prefix):
                continue
            children = [node.title, node.text]
        elif isinstance(node, (nodes.Heading, nodes.ExternalLink)):
            children = [node.title]
        else:
            children = []
        for child in children:
            if child is not None:
                _drop_non_prose(child, nodes)
        if isinstance(node, nodes.Heading):  # a section title is a paragraph of its own
            kept.extend([nodes.Text("\n\n"), node, nodes.Text("\n\n")])
        else:
            kept.append(node)
    code.nodes = kept


def _tidy(line: str) -> str:
    """Collapse the gaps that removed templates and references leave inside a sentence."""
    line = re.sub(r"[ \t\u00a0]+", " ", re.sub(r"'{2,}", "", line)).strip()
    line = re.sub(r"\(\s*[,;]?\s*\)", "", line)
    return re.sub(r" +([,.;:!?)])", r"\1", line)


def _split_by_share(articles: list[str], share: float) -> tuple[list[str], list[str]]:
    """In order: an article goes to evaluation while evaluation holds less than ``share`` of the characters
    seen so far (the first one included), else to calibration."""
    calib, evaluation, eval_chars, seen = [], [], 0, 0
    for text in articles:
        if eval_chars < share * (seen + len(text)):
            evaluation.append(text)
            eval_chars += len(text)
        else:
            calib.append(text)
        seen += len(text)
    return calib, evaluation


def _build_wiki_embedded() -> tuple[str, str, str]:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise PerpError("dataset", "wiki-embedded needs the gensim package (its test data holds the text): pip install gensim")
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / _WIKI_FILE
    if not path.is_file():
        raise PerpError("dataset", f"gensim has no {_WIKI_FILE}; reinstall it: pip install --force-reinstall gensim")
    articles = wiki_articles(path)
    calib, evaluation = _split_by_share([text for _, text in articles], EVAL_SHARE)
    description = (f"Wikipedia excerpt from gensim's test data: {len(articles)} articles, {len(calib)} for "
                   f"calibration, {len(evaluation)} held out for evaluation (split by article)")
    return "\n\n".join(calib), "\n\n".join(evaluation), description


def _check_hub(corpus: str) -> None:
    reason = hub_unavailable_reason(HUB_CORPORA[corpus], repo_type="dataset")
    if reason is not None:
        raise PerpError("dataset", f"{corpus} needs internet the first time ({reason}); offline use wiki-embedded or a text file")


def _hub_dataset(corpus: str, **kwargs):
    _check_hub(corpus)
    from datasets import load_dataset

    return load_dataset(HUB_CORPORA[corpus], **kwargs)


def _build_wikitext2() -> tuple[str, str, str]:
    data = _hub_dataset("wikitext2", name="wikitext-2-raw-v1")
    return ("\n\n".join(data["train"]["text"]), "\n\n".join(data["test"]["text"]),
            "WikiText-2 (raw): calibration from the train split, evaluation on the test split")


def _build_c4() -> tuple[tuple[str, ...], str, str]:
    data = _hub_dataset("c4", data_files={"train": _C4_TRAIN, "validation": _C4_VALID})
    return (tuple(data["train"].select(range(_C4_CALIB_DOCS))["text"]),
            " ".join(data["validation"].select(range(_C4_EVAL_DOCS))["text"]),
            f"C4 (en): calibration from the first {_C4_CALIB_DOCS} documents of {_C4_TRAIN}, evaluation on the first "
            f"{_C4_EVAL_DOCS} documents of {_C4_VALID} (as in Wanda/SparseGPT)")


_BUILDERS: dict[str, Builder] = {
    "wiki-embedded": _build_wiki_embedded,
    "wikitext2": _build_wikitext2,
    "c4": _build_c4,
}


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
