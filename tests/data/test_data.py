"""perp_engine.data.corpora: corpora, token caching and the windows cut from them (offline, small tokenizers)."""

from __future__ import annotations

import bz2
import os

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from perp_engine import data
from perp_engine.data.corpora import (
    EVAL_SHARE,
    MEASURE_WINDOWS,
    TRAIN_SEED_OFFSET,
    calibration_samples,
    eval_windows,
    load_corpus,
    measure_windows,
    token_ids,
    train_samples,
    wiki_articles,
)
from perp_engine.errors import PerpError
from perp_engine.paths import atomic_dir, perp_home

N_WORDS = 200


def word_tokenizer(n_words: int = N_WORDS, offset: int = 0) -> PreTrainedTokenizerFast:
    """Whitespace word-level tokenizer over w0..w{n-1}: 'wK' has id K+1+offset, anything else is [UNK] (0)."""
    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 + offset for i in range(n_words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def words(n: int) -> str:
    """n distinct words in order, so token ids are 1..n and windows show where they were cut."""
    return " ".join(f"w{i}" for i in range(n))


@pytest.mark.parametrize(
    "n_tokens, seqlen, max_tokens, expected_windows",
    [
        (73, 7, None, 10),  # remainder of 3 dropped
        (70, 7, None, 10),  # exact fit
        (73, 7, 30, 4),  # max_tokens // seqlen
        (73, 7, 7, 1),
        (73, 7, 10_000, 10),  # cap above what exists
        (8, 8, None, 1),
    ],
)
def test_eval_windows_cut_from_start_and_drop_remainder(n_tokens, seqlen, max_tokens, expected_windows):
    tok = word_tokenizer()
    windows = eval_windows(tok, words(n_tokens), seqlen, max_tokens, home=False)
    assert windows.dtype == torch.long
    assert windows.shape == (expected_windows, seqlen)
    assert torch.equal(windows.flatten(), torch.arange(1, expected_windows * seqlen + 1))


def test_eval_windows_errors_name_the_field_and_counts():
    tok = word_tokenizer()
    with pytest.raises(PerpError) as err:
        eval_windows(tok, words(5), 8, None, home=False)
    assert err.value.field == "dataset" and "5 tokens" in err.value.message and "seqlen=8" in err.value.message
    with pytest.raises(PerpError) as err:
        eval_windows(tok, words(50), 8, 4, home=False)
    assert err.value.field == "eval_tokens"
    with pytest.raises(PerpError) as err:
        eval_windows(tok, words(50), 0, None, home=False)
    assert err.value.field == "seqlen"
    with pytest.raises(PerpError) as err:
        eval_windows(tok, "  \n\n ", 4, None, home=False)
    assert err.value.field == "dataset"


def test_calibration_samples_are_seeded_windows_of_the_text():
    tok = word_tokenizer()
    text = words(N_WORDS)
    a = calibration_samples(tok, text, 6, 16, seed=0, home=False, held_out=2)
    b = calibration_samples(tok, text, 6, 16, seed=0, home=False, held_out=2)
    c = calibration_samples(tok, text, 6, 16, seed=1, home=False, held_out=2)
    assert a.shape == (6, 16) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for row in torch.cat([a, c]):
        start = int(row[0])
        assert torch.equal(row, torch.arange(start, start + 16))  # a contiguous slice of the token stream
        assert start + 16 <= N_WORDS + 1  # never runs past the end


def spans(windows: torch.Tensor) -> list[set[int]]:
    return [set(row.tolist()) for row in windows]


@pytest.mark.parametrize("seqlen", [4, 8, 11])
def test_held_out_windows_are_spread_and_never_used_for_calibration_or_training(seqlen):
    tok = word_tokenizer()
    text = words(N_WORDS)
    held = measure_windows(tok, text, seqlen, n=MEASURE_WINDOWS, home=False)
    assert held.shape == (MEASURE_WINDOWS, seqlen)
    starts = [int(row[0]) for row in held]
    assert starts == sorted(starts) and starts[0] < N_WORDS / MEASURE_WINDOWS < starts[1]  # spread over the text
    assert starts[-1] > N_WORDS * (1 - 1.5 / MEASURE_WINDOWS)
    reserved = set().union(*spans(held))
    for seed in range(5):
        used = torch.cat([calibration_samples(tok, text, 20, seqlen, seed, home=False),
                          train_samples(tok, text, 20, seqlen, seed, home=False)])
        assert all(not (window & reserved) for window in spans(used))


@pytest.mark.parametrize("n_words", [150, 200, 260])
def test_a_short_text_groups_its_held_out_windows_to_leave_room_for_calibration(n_words):
    tok = word_tokenizer(n_words)
    text = " ".join(f"w{i}" for i in range(n_words))
    held = measure_windows(tok, text, 16, home=False)
    reserved = set().union(*spans(held))
    assert len(reserved) == MEASURE_WINDOWS * 16  # no overlap between held-out windows
    calib = calibration_samples(tok, text, 30, 16, seed=0, home=False)
    assert all(not (window & reserved) for window in spans(calib))
    assert min(int(row[0]) for row in held) < n_words / 2 < max(int(row[0]) for row in held)


def test_windows_never_cross_a_document(tmp_path):
    tok = word_tokenizer()
    docs = [" ".join(f"w{i}" for i in range(a, b)) for a, b in ((0, 40), (40, 45), (45, 120), (120, 200))]
    bounds = [(1, 40), (41, 45), (46, 120), (121, 200)]  # token ids of each document
    windows = torch.cat([calibration_samples(tok, docs, 50, 10, seed, home=False, held_out=3) for seed in range(4)])
    held = measure_windows(tok, docs, 10, n=3, home=False)
    for row in torch.cat([windows, held]):
        assert any(lo <= int(row[0]) and int(row[-1]) <= hi for lo, hi in bounds)
    assert not any(int(row[0]) >= 41 and int(row[-1]) <= 45 for row in windows)  # a 5-token document fits none
    cached = calibration_samples(tok, docs, 50, 10, 0, home=tmp_path, held_out=3)
    assert torch.equal(cached, calibration_samples(tok, docs, 50, 10, 0, home=False, held_out=3))


def test_train_samples_use_another_stream_than_calibration():
    tok = word_tokenizer()
    text = words(N_WORDS)
    calib = calibration_samples(tok, text, 8, 16, seed=3, home=False, held_out=2)
    train = train_samples(tok, text, 8, 16, seed=3, home=False, held_out=2)
    assert not torch.equal(calib, train)
    assert torch.equal(train, calibration_samples(tok, text, 8, 16, seed=3 + TRAIN_SEED_OFFSET, home=False, held_out=2))


def test_random_windows_need_seqlen_tokens_besides_the_held_out_ones():
    tok = word_tokenizer()
    assert calibration_samples(tok, words(16), 4, 16, seed=0, home=False, held_out=0).shape == (4, 16)
    with pytest.raises(PerpError) as err:
        calibration_samples(tok, words(15), 4, 16, seed=0, home=False, held_out=0)
    assert err.value.field == "seqlen" and "has 15" in err.value.message
    with pytest.raises(PerpError) as err:
        calibration_samples(tok, words(100), 4, 16, seed=0, home=False)
    assert err.value.field == "dataset" and "held-out" in err.value.message
    with pytest.raises(PerpError) as err:
        calibration_samples(tok, words(50), 0, 16, seed=0, home=False)
    assert err.value.field == "calib_samples"
    with pytest.raises(PerpError) as err:
        train_samples(tok, words(50), -2, 16, seed=0, home=False)
    assert err.value.field == "train_samples"


def test_token_ids_are_cached_per_text_and_tokenizer(tmp_path, monkeypatch):
    text = words(50)
    tok = word_tokenizer()
    first = token_ids(tok, text, home=tmp_path)
    cached = list((tmp_path / "tokens").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".safetensors"

    def no_tokenizing(*_):
        raise AssertionError("tokenized again although the ids are cached")

    with monkeypatch.context() as patch:
        patch.setattr(data, "_tokenize", no_tokenizing)
        assert torch.equal(token_ids(tok, text, home=tmp_path), first)
        assert torch.equal(eval_windows(tok, text, 10, None, home=tmp_path).flatten(), first)
    # another tokenizer (other ids) and another text get their own entries, not the cached ids
    shifted = token_ids(word_tokenizer(offset=7), text, home=tmp_path)
    assert torch.equal(shifted, first + 7)
    token_ids(tok, words(51), home=tmp_path)
    assert len(list((tmp_path / "tokens").iterdir())) == 3


def test_token_cache_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("PERP_HOME", str(tmp_path))
    token_ids(word_tokenizer(), words(20), home=False)
    assert not (tmp_path / "tokens").exists()
    token_ids(word_tokenizer(), words(20))  # home=None -> PERP_HOME
    assert len(list((tmp_path / "tokens").iterdir())) == 1


def test_perp_home_reads_the_environment_each_call(tmp_path, monkeypatch):
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "a"))
    assert perp_home() == tmp_path / "a" and (tmp_path / "a").is_dir()
    monkeypatch.setenv("PERP_HOME", str(tmp_path / "b"))
    assert perp_home() == tmp_path / "b"


def test_atomic_dir_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed midway")
    assert list(tmp_path.iterdir()) == []
    for content in ("old", "new"):
        with atomic_dir(final) as tmp:
            (tmp / "x.txt").write_text(content)
    assert (final / "x.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


# ---- corpora ------------------------------------------------------------------------------------------------

def paragraphs(n: int) -> str:
    return "\n\n".join(f"Paragraph {i} has a few words.\nAnd a second line." for i in range(n))


@pytest.mark.parametrize("prefix", ["file:", ""])
def test_text_file_holds_out_the_last_tenth_of_paragraphs(tmp_path, prefix):
    path = tmp_path / "notes.txt"
    path.write_text(paragraphs(20) + "\n\n\n")
    corpus = load_corpus(f"{prefix}{path}")
    calib = corpus.calib_text.split("\n\n")
    evaluation = corpus.eval_text.split("\n\n")
    assert len(calib) == 18 and len(evaluation) == 2
    assert evaluation[0].startswith("Paragraph 18") and calib[-1].startswith("Paragraph 17")
    assert "20 paragraphs" in corpus.description and corpus.name == f"{prefix}{path}"


def test_text_file_of_lines_splits_by_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"line {i}" for i in range(30)))
    corpus = load_corpus(str(path))
    assert corpus.eval_text == "line 27\nline 28\nline 29"
    assert corpus.calib_text.splitlines()[-1] == "line 26"


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"  \n\n \n", "empty"), (b"one lonely line", "single paragraph"), (b"\xff\xfe\x00bad", "UTF-8")],
)
def test_bad_text_files_name_the_dataset_field(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(PerpError) as err:
        load_corpus(f"file:{path}")
    assert err.value.field == "dataset" and message in err.value.message


@pytest.mark.parametrize("name", ["file:/no/such/file.txt", "no-such-dataset", "", "wikitext-103"])
def test_unknown_dataset_names_say_what_is_allowed(name):
    with pytest.raises(PerpError) as err:
        load_corpus(name)
    assert err.value.field == "dataset"
    assert "wiki-embedded" in err.value.message


@pytest.mark.parametrize("name", ["wikitext2", "c4"])
def test_online_corpora_fail_fast_offline(tmp_path, monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PerpError) as err:
        load_corpus(name, home=tmp_path)
    assert err.value.field == "dataset"
    assert "needs internet" in err.value.message and "wiki-embedded" in err.value.message
    assert not (tmp_path / "data" / name).exists()


def test_named_corpus_is_built_once_then_read_from_its_cache(tmp_path, monkeypatch):
    calls = []

    def build():
        calls.append(1)
        return "calibration text", "evaluation text", "a test corpus"

    monkeypatch.setitem(data._BUILDERS, "c4", build)
    first = load_corpus("c4", home=tmp_path)
    second = load_corpus("c4", home=tmp_path)
    assert first == second == data.Corpus("c4", "calibration text", "evaluation text", "a test corpus")
    assert len(calls) == 1
    assert sorted(p.name for p in (tmp_path / "data" / "c4").iterdir()) == ["calib.txt", "eval.txt", "meta.json"]


def test_corpus_share_split_is_deterministic_and_balanced():
    sizes = [5000, 300, 12000, 800, 4000, 900, 7000, 2500, 600, 3000, 1500, 9000]
    articles = [f"{i}:" + "x" * n for i, n in enumerate(sizes)]
    calib, evaluation = data._split_by_share(articles, EVAL_SHARE)
    assert (calib, evaluation) == data._split_by_share(articles, EVAL_SHARE)
    assert sorted(calib + evaluation) == sorted(articles)  # each article in exactly one part
    share = sum(map(len, evaluation)) / sum(map(len, articles))
    assert 0.08 < share < 0.25
    assert calib and evaluation


WIKITEXT = """{{Infobox thing|name=Widget|size={{convert|3|m}}}}
'''Widget''' is a [[tool|hand tool]] used in ''workshops''.<ref>{{cite book|title=Tools}}</ref> It is sold in [[Star Wars: Episode IV|cinemas]] too.<ref name="a"/>
[[File:Widget.jpg|thumb|A [[widget]] on a bench]]

== History ==
Widgets date from 1900.<!-- hidden comment --> See [http://example.com the maker].
{| class="wikitable"
|-
| cell one || cell two
|}
The formula <math>x^2</math> is used.

== See also ==
* [[Gadget]]

== References ==
{{Reflist}}
[[Category:Tools]]
[[de:Werkzeug]]
"""


def test_wiki_markup_is_stripped_to_prose():
    import mwparserfromhell

    prose = data._wiki_prose(mwparserfromhell, WIKITEXT)
    assert prose.split("\n\n") == [
        "Widget is a hand tool used in workshops. It is sold in cinemas too.",
        "History",
        "Widgets date from 1900. See the maker.",
        "The formula is used.",
    ]


def test_wiki_articles_skip_redirects_and_other_namespaces(tmp_path):
    def page(title, ns, body, redirect=False):
        red = f'<redirect title="{body}" />' if redirect else ""
        return (f"<page><title>{title}</title><ns>{ns}</ns><id>1</id>{red}"
                f"<revision><text>{body}</text></revision></page>")

    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">'
           + page("Alpha", 0, "Alpha is a letter.")
           + page("Old", 0, "#REDIRECT [[Alpha]]", redirect=True)
           + page("Wikipedia:Rules", 4, "Project page text.")
           + page("Beta", 0, "Beta is the second letter.")
           + "</mediawiki>")
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(xml.encode()))
    assert wiki_articles(path) == [("Alpha", "Alpha is a letter."), ("Beta", "Beta is the second letter.")]


@pytest.fixture(scope="session")
def wiki_embedded(tmp_path_factory):
    """The real wiki-embedded corpus in a fresh home, extracted once per session, with its articles."""
    home = tmp_path_factory.mktemp("perp_home")
    recorded = []

    def recording(path):
        recorded.extend(wiki_articles(path))
        return recorded

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "wiki_articles", recording)
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

    monkeypatch.setattr(data, "wiki_articles", no_extraction)
    assert load_corpus("wiki-embedded", home=home) == corpus
    assert not [p for p in os.listdir(home / "data") if p.startswith(".")]  # no temporary folders left


def test_a_document_corpus_is_cached_as_documents(monkeypatch, tmp_path):
    build = lambda: (("first document", "second\n\ndocument"), "evaluation text", "documents")  # noqa: E731
    monkeypatch.setitem(data._BUILDERS, "c4", build)
    first, second = load_corpus("c4", home=tmp_path), load_corpus("c4", home=tmp_path)
    assert first == second
    assert first.calib_source == ("first document", "second\n\ndocument")
    assert first.calib_text == "first document\n\nsecond\n\ndocument"
