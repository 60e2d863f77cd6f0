"""How the named corpora are extracted from their sources (the cache around them: :mod:`perp_engine.data.corpora`).

- ``wiki-embedded``: the Wikipedia excerpt shipped in gensim's test data (106 articles), cleaned to prose.
  Split by article in file order: an article goes to evaluation while evaluation holds less than 15% of the
  characters seen so far, else to calibration. Deterministic, ~85/15 by size, evaluation spread over the file.
- ``wikitext2``: Salesforce/wikitext ``wikitext-2-raw-v1``; eval = test split, calib = train split.
- ``c4``: allenai/c4 ``en`` as in Wanda/SparseGPT; calib = the first train shard (its first 5000 documents, kept
  as documents: calibration and training windows never cross a document boundary, as in their loaders),
  eval = the first 1100 documents of the first validation shard joined with spaces.

``wikitext2`` and ``c4`` come from the Hugging Face Hub (:data:`HUB_CORPORA`), downloaded on first use.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ..errors import PerpError
from ..paths import hub_unavailable_reason
from .wikipedia import wiki_articles

HUB_CORPORA = {"wikitext2": "Salesforce/wikitext", "c4": "allenai/c4"}  # downloaded on first use
EVAL_SHARE = 0.15  # wiki-embedded: share of the text held out for evaluation

_WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_C4_TRAIN = "en/c4-train.00000-of-01024.json.gz"
_C4_VALID = "en/c4-validation.00000-of-00008.json.gz"
_C4_CALIB_DOCS = 5000
_C4_EVAL_DOCS = 1100

# () -> (calibration text, or its documents, evaluation text, description)
Builder = Callable[[], tuple[str | tuple[str, ...], str, str]]


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


def check_hub(corpus: str) -> None:
    """PerpError("dataset") when the Hub corpus cannot be downloaded now (offline, or the Hub out of reach)."""
    reason = hub_unavailable_reason(HUB_CORPORA[corpus], repo_type="dataset")
    if reason is not None:
        raise PerpError("dataset", f"{corpus} needs internet the first time ({reason}); offline use wiki-embedded or a text file")


def _hub_dataset(corpus: str, **kwargs):
    check_hub(corpus)
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


BUILDERS: dict[str, Builder] = {
    "wiki-embedded": _build_wiki_embedded,
    "wikitext2": _build_wikitext2,
    "c4": _build_c4,
}
