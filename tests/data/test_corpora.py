"""perp_engine.data.corpora: users' text files, dataset names and the on-disk corpus cache (offline)."""

from __future__ import annotations

import pytest

from perp_engine.data import named_corpora
from perp_engine.data.corpora import Corpus, load_corpus
from perp_engine.errors import PerpError


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


def test_named_corpus_is_built_once_then_read_from_its_cache(tmp_path, monkeypatch):
    calls = []

    def build():
        calls.append(1)
        return "calibration text", "evaluation text", "a test corpus"

    monkeypatch.setitem(named_corpora.BUILDERS, "c4", build)
    first = load_corpus("c4", home=tmp_path)
    second = load_corpus("c4", home=tmp_path)
    assert first == second == Corpus("c4", "calibration text", "evaluation text", "a test corpus")
    assert len(calls) == 1
    assert sorted(p.name for p in (tmp_path / "data" / "c4").iterdir()) == ["calib.txt", "eval.txt", "meta.json"]


def test_a_document_corpus_is_cached_as_documents(monkeypatch, tmp_path):
    build = lambda: (("first document", "second\n\ndocument"), "evaluation text", "documents")  # noqa: E731
    monkeypatch.setitem(named_corpora.BUILDERS, "c4", build)
    first, second = load_corpus("c4", home=tmp_path), load_corpus("c4", home=tmp_path)
    assert first == second
    assert first.calib_source == ("first document", "second\n\ndocument")
    assert first.calib_text == "first document\n\nsecond\n\ndocument"
