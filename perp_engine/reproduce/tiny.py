"""A tiny LLaMA with its own tokenizer, and a tiny text, built offline in about a second.

``perp reproduce --quick`` runs the paper's set on them (the same code as the real set; numbers that say
nothing about real models), and the test suite's fixtures build their random models and texts from the same
pieces. The tokenizer is a BPE trained on the text itself, with at most ``VOCAB`` ids so every id fits the tiny
model's embedding. The quick set's model is first trained a little on its text (perplexity ~126 -> ~6), so that
pruning damages it and a repair has something to recover, as on a real model.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from ..paths import atomic_dir, atomic_write_bytes

VOCAB = 128
PRETRAIN_STEPS = 200
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


def tiny_tokenizer(text: str | None = None):
    """A byte-free BPE tokenizer with ``VOCAB`` ids or fewer, trained on ``text`` (default :func:`tiny_text`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=list(SPECIAL), show_progress=False)
    tok.train_from_iterator((text or tiny_text()).splitlines(), trainer=trainer)
    if tok.get_vocab_size() > VOCAB:
        raise RuntimeError(f"the tiny tokenizer has {tok.get_vocab_size()} ids, more than the model's {VOCAB}")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def tiny_llama(seed: int = 0, context: int = 128):
    """A randomly initialised 2-block LLaMA (hidden 32, tied head), in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def save_model(model, path: str | Path) -> Path:
    """Save ``model`` with a tiny tokenizer (its special ids set in the config), as a user's model folder."""
    path = Path(path)
    tokenizer = tiny_tokenizer()
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def trained_tiny_llama(text: str, steps: int = PRETRAIN_STEPS, seqlen: int = 32):
    """:func:`tiny_llama` trained for ``steps`` AdamW steps of 8 windows on ``text`` (under a second)."""
    from ..data.tokens import token_ids
    from ..repair.retrain import retrain

    ids = token_ids(tiny_tokenizer(), text, home=False)
    windows = ids[: ids.numel() // seqlen * seqlen].view(-1, seqlen)
    model = tiny_llama()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices of 32 x 64: a second thread only adds synchronisation (60x slower when busy)
    try:
        model.requires_grad_(True)
        retrain(model, windows, steps=steps, lr=3e-3, batch_size=8, seed=0)
    finally:
        torch.set_num_threads(threads)
        model.requires_grad_(False)
    return model.eval()


def ensure_tiny_setup(folder: str | Path, n_paragraphs: int = 160) -> tuple[Path, Path]:
    """``(model folder, text file)`` under ``folder``: a text of ``n_paragraphs`` paragraphs and a tiny LLaMA
    trained on it, written once (each in one rename, so a concurrent or killed writer never leaves half of one)
    and reused after, so runs on them keep the same config and are found again in the run store."""
    folder = Path(folder)
    model_dir, text_file = folder / "tiny-llama", folder / f"tiny-text-{n_paragraphs}.txt"
    text = tiny_text(n_paragraphs)
    if not (model_dir / "config.json").is_file():
        with atomic_dir(model_dir) as tmp:
            save_model(trained_tiny_llama(text), tmp)
    if not text_file.is_file():
        atomic_write_bytes(text_file, text.encode())
    return model_dir.resolve(), text_file.resolve()
