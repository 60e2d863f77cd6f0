"""The windows of token ids a run uses, cut from a tokenized source (where each one goes: :mod:`.windows`).

``MEASURE_WINDOWS`` held-out windows spread evenly over the calibration text measure the layer-wise errors;
calibration and retraining windows are drawn at seeded random offsets that never overlap them, so the errors are
measured on text nothing was pruned or trained on. Evaluation windows follow the WikiText protocol on the
evaluation text.
"""

from __future__ import annotations

import os

import torch

from ..errors import PerpError
from .tokens import Source, token_ids, token_stream
from .windows import allowed_ranges, cut, held_out_starts, random_starts

MEASURE_WINDOWS = 8  # held-out calibration-source windows on which the layer-wise errors are measured
TRAIN_SEED_OFFSET = 1_000_003  # retraining windows use another random stream than calibration windows


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
