"""perp_engine.data.tokens: token ids cached per text and tokenizer (offline, a word tokenizer)."""

from __future__ import annotations

import torch
from word_tokenizer import word_tokenizer, words

from perp_engine.data import tokens
from perp_engine.data.sampling import eval_windows
from perp_engine.data.tokens import token_ids


def test_token_ids_are_cached_per_text_and_tokenizer(tmp_path, monkeypatch):
    text = words(50)
    tok = word_tokenizer()
    first = token_ids(tok, text, home=tmp_path)
    cached = list((tmp_path / "tokens").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".safetensors"

    def no_tokenizing(*_):
        raise AssertionError("tokenized again although the ids are cached")

    with monkeypatch.context() as patch:
        patch.setattr(tokens, "_tokenize", no_tokenizing)
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
