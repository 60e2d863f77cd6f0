"""perp_engine.data.sampling: measurement, calibration, training and evaluation windows (offline, a word tokenizer)."""

from __future__ import annotations

import pytest
import torch
from word_tokenizer import N_WORDS, word_tokenizer, words

from perp_engine.data.sampling import (
    MEASURE_WINDOWS,
    TRAIN_SEED_OFFSET,
    calibration_samples,
    eval_windows,
    measure_windows,
    train_samples,
)
from perp_engine.errors import PerpError


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
