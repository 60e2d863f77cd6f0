"""Token ids of a source, one text or documents that windows must not cross, tokenized once and cached on disk.

Documents are tokenized one by one, so their boundaries are known as ranges of the ids. Ids are cached under
``<home>/tokens/<key>.safetensors``, the key a hash of the text and of the tokenizer, so a second run does not
tokenize again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import torch

from ..errors import PerpError
from ..paths import atomic_write_bytes, read_cache, resolve_home
from .corpora import DOCUMENT_SEPARATOR

Source = str | Sequence[str]  # one text, or documents that windows must not cross


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


def _tokenize(tokenizer, text: str) -> torch.Tensor:
    if not text.strip():
        raise PerpError("dataset", "the text is empty")
    # verbose=False: the whole corpus is one long sequence on purpose, windows are cut afterwards
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
