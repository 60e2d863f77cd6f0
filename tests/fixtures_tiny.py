"""A tiny model saved like a real one (``save_pretrained`` + a tokenizer) and a tiny text file, built offline.

So that end-to-end code paths (pipeline, jobs, export) can load ``RunConfig(model=<folder>, dataset=<file>)``
exactly as they load a user's model, in well under a second. The tokenizer is a character-level BPE trained on
the text itself, with at most ``VOCAB`` (128) ids so every id fits the tiny model's embedding.

Use the pytest fixtures ``tiny_model_dir`` / ``tiny_text_file`` (session-scoped; import them into a test
module), or call :func:`save_tiny_model` / :func:`write_tiny_text` directly; :func:`tiny_run_config` makes a
fast RunConfig for them. Tests that run the pipeline should use the ``perp_home`` fixture (a temporary
``PERP_HOME``: the pipeline caches token ids there).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from perp_engine.config import RunConfig
from tiny_models import TINY_MODELS, VOCAB

WORDS = ("the model prunes weights and the network keeps its accuracy after retraining a few parameters "
         "small language models run on a laptop while sparse matrices store zeros layer norms and biases "
         "adapt quickly masks stay fixed when adapters merge back into every linear layer").split()
SPECIAL = ("<unk>", "<s>", "</s>")


def tiny_text(n_paragraphs: int = 40, seed: int = 0) -> str:
    """Deterministic pseudo-English: paragraphs of sentences drawn from a small word list."""
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(n_paragraphs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
                     for _ in range(rng.randint(2, 4))]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def write_tiny_text(path: str | Path, n_paragraphs: int = 40, seed: int = 0) -> Path:
    path = Path(path)
    path.write_text(tiny_text(n_paragraphs, seed))
    return path


def tiny_tokenizer(text: str | None = None) -> PreTrainedTokenizerFast:
    """A byte-free BPE tokenizer with ``VOCAB`` ids or fewer, trained on ``text`` (default :func:`tiny_text`)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=list(SPECIAL), show_progress=False)
    tok.train_from_iterator((text or tiny_text()).splitlines(), trainer=trainer)
    assert tok.get_vocab_size() <= VOCAB
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def save_tiny_model(path: str | Path, family: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random model of ``family`` (see tiny_models.TINY_MODELS) with a tokenizer to ``path``."""
    path = Path(path)
    model = TINY_MODELS[family](seed)
    tokenizer = tiny_tokenizer()
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def tiny_run_config(model_dir: str | Path, text_file: str | Path, **changes) -> RunConfig:
    """A RunConfig that runs end to end in about a second on CPU: 16-token windows, 4 calibration windows,
    64 eval tokens."""
    values = dict(model=str(model_dir), dataset=str(text_file), seqlen=16, calib_samples=4, eval_tokens=64,
                  eval_batch_size=4, batch_size=2, device="cpu")
    return RunConfig(**{**values, **changes})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny LLaMA with its tokenizer."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_text_file(tmp_path_factory) -> Path:
    """A small text file usable as ``RunConfig.dataset``."""
    return write_tiny_text(tmp_path_factory.mktemp("tiny-text") / "tiny.txt")


@pytest.fixture
def perp_home(monkeypatch, tmp_path) -> Path:
    """A temporary PERP_HOME, so caches written by the pipeline stay out of the user's home."""
    home = tmp_path / "perp-home"
    monkeypatch.setenv("PERP_HOME", str(home))
    return home
