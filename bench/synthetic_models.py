"""Random-initialised models saved as local model folders (no download): LLaMAs of the SmolLM2 family's shapes, and
OPT, GPT-2 and Qwen2 models of their small checkpoints' shapes (the memory bench's hold-out set).

Built from a config (``AutoConfig.for_model(family, ...)``), initialised at random, saved in bfloat16 (half
the files of float32; a run upcasts at load for ``--dtype float32``) with the embedded model's tokenizer, so
the normal pipeline loads them like any user's folder: ``RunConfig(model=<folder>)``. Their perplexity is
meaningless (random weights); their memory and time are those of the real models of the same shapes.

Imported by file location from the bench scripts (``import synthetic_models``), like harness.py.
"""

from __future__ import annotations

import os
from pathlib import Path

# name -> (hidden, intermediate, layers, attention heads, key/value heads); vocabulary 49,152, tied head
SHAPES = {
    "smollm2-135m": (576, 1536, 30, 9, 3),
    "smollm2-360m": (960, 2560, 32, 15, 5),
    "smollm2-1.7b": (2048, 8192, 24, 32, 32),
}
VOCAB = 49152
# name -> (family, its config's fields): other families' shapes (OPT-125M, GPT-2 small, Qwen2-0.5B), each with its
# own vocabulary (larger than the tokenizer's, so every token id fits)
OTHER_FAMILIES = {
    "opt-125m": ("opt", {"hidden_size": 768, "ffn_dim": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                         "word_embed_proj_dim": 768, "vocab_size": 50272, "max_position_embeddings": 2048}),
    "gpt2-124m": ("gpt2", {"n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}),
    "qwen2-0.5b": ("qwen2", {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                             "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                             "tie_word_embeddings": True, "max_position_embeddings": 32768}),
}
SAVED_DTYPE = "bfloat16"


def model_config(name: str):
    """The transformers config of one of ``SHAPES`` or ``OTHER_FAMILIES``."""
    from transformers import AutoConfig

    if name in OTHER_FAMILIES:
        family, fields = OTHER_FAMILIES[name]
        return AutoConfig.for_model(family, **fields)
    hidden, intermediate, layers, heads, kv_heads = SHAPES[name]
    return AutoConfig.for_model("llama", hidden_size=hidden, intermediate_size=intermediate,
                                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                vocab_size=VOCAB, tie_word_embeddings=True, max_position_embeddings=8192,
                                rope_theta=100000.0, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def synthetic_model(name: str, home: str | os.PathLike | None = None) -> Path:
    """The folder of the random ``name`` model under ``<PERP_HOME>/synthetic``, made on first use (written
    beside, then renamed into place)."""
    from perp_engine.paths import atomic_dir, resolve_home

    folder = resolve_home(home) / "synthetic" / name
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM

    from perp_engine.model.load import load_model

    _, tokenizer = load_model("smollm2-135m", device="cpu", home=home)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config(name), dtype=getattr(torch, SAVED_DTYPE))
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder
