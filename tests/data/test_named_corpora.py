"""perp_engine.data.named_corpora: the wiki-embedded corpus extracted for real, the Hub corpora offline."""

from __future__ import annotations

import os

import pytest

from perp_engine.data import named_corpora
from perp_engine.data.corpora import load_corpus
from perp_engine.data.named_corpora import EVAL_SHARE
from perp_engine.data.wikipedia import wiki_articles
from perp_engine.errors import PerpError


@pytest.mark.parametrize("name", ["wikitext2", "c4"])
def test_online_corpora_fail_fast_offline(tmp_path, monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PerpError) as err:
        load_corpus(name, home=tmp_path)
    assert err.value.field == "dataset"
    assert "needs internet" in err.value.message and "wiki-embedded" in err.value.message
    assert not (tmp_path / "data" / name).exists()


def test_corpus_share_split_is_deterministic_and_balanced():
    sizes = [5000, 300, 12000, 800, 4000, 900, 7000, 2500, 600, 3000, 1500, 9000]
    articles = [f"{i}:" + "x" * n for i, n in enumerate(sizes)]
    calib, evaluation = named_corpora._split_by_share(articles, EVAL_SHARE)
    assert (calib, evaluation) == named_corpora._split_by_share(articles, EVAL_SHARE)
    assert sorted(calib + evaluation) == sorted(articles)  # each article in exactly one part
    share = sum(map(len, evaluation)) / sum(map(len, articles))
    assert 0.08 < share < 0.25
    assert calib and evaluation


@pytest.fixture(scope="session")
def wiki_embedded(tmp_path_factory):
    """The real wiki-embedded corpus in a fresh home, extracted once per session, with its articles."""
    home = tmp_path_factory.mktemp("perp_home")
    recorded = []

    def recording(path):
        recorded.extend(wiki_articles(path))
        return recorded

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(named_corpora, "wiki_articles", recording)
        corpus = load_corpus("wiki-embedded", home=home)
    return home, corpus, recorded


def test_wiki_embedded_is_clean_prose_split_by_article(wiki_embedded):
    home, corpus, articles = wiki_embedded
    assert 100 <= len(articles) <= 110
    assert len({title for title, _ in articles}) == len(articles)
    for part in (corpus.calib_text, corpus.eval_text):
        for markup in ("[[", "]]", "{{", "}}", "<ref", "{|", "''"):
            assert markup not in part, markup
    in_eval = [text in corpus.eval_text for _, text in articles]
    in_calib = [text in corpus.calib_text for _, text in articles]
    assert all(e != c for e, c in zip(in_eval, in_calib))  # every article in exactly one part
    assert 5 <= sum(in_eval) <= 25
    share = len(corpus.eval_text) / (len(corpus.eval_text) + len(corpus.calib_text))
    assert 0.10 < share < 0.25
    assert len(corpus.eval_text) > 250_000 and len(corpus.calib_text) > 1_500_000  # ~110k and ~500k tokens
    assert f"{len(articles)} articles" in corpus.description


def test_wiki_embedded_is_read_back_from_its_cache(wiki_embedded, monkeypatch):
    home, corpus, _ = wiki_embedded

    def no_extraction(path):
        raise AssertionError("extracted again although the corpus is cached")

    monkeypatch.setattr(named_corpora, "wiki_articles", no_extraction)
    assert load_corpus("wiki-embedded", home=home) == corpus
    assert not [p for p in os.listdir(home / "data") if p.startswith(".")]  # no temporary folders left
