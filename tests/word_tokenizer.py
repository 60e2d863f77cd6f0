"""A whitespace word-level tokenizer and texts of distinct words, so that token ids show where windows were cut."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

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
