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

from pathlib import Path

import pytest
from tiny_models import TINY_MODELS

from perp_engine.config import RunConfig
from perp_engine.reproduce.tiny import save_model, tiny_text


def write_tiny_text(path: str | Path, n_paragraphs: int = 40, seed: int = 0) -> Path:
    path = Path(path)
    path.write_text(tiny_text(n_paragraphs, seed))
    return path


def save_tiny_model(path: str | Path, family: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random model of ``family`` (see tiny_models.TINY_MODELS) with a tokenizer to ``path``."""
    return save_model(TINY_MODELS[family](seed), path)


def tiny_run_config(model_dir: str | Path, text_file: str | Path, **changes) -> RunConfig:
    """A RunConfig that runs end to end in about a second on CPU: 16-token windows, 4 calibration windows,
    64 eval tokens."""
    return tiny_preset_config(model_dir, text_file, None, **changes)


def tiny_preset_config(model_dir: str | Path, text_file: str | Path, preset: str | None, **changes) -> RunConfig:
    """``preset`` (its recipe kept) at :func:`tiny_run_config`'s sizes, with ``changes``."""
    sizes = dict(model=str(model_dir), dataset=str(text_file), seqlen=16, calib_samples=4, eval_tokens=64,
                 eval_batch_size=4, batch_size=2, device="cpu")
    return RunConfig.create(preset, **{**sizes, **changes})


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
