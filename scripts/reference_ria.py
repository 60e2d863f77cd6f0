"""Freeze the official RIA code's masks on two tiny random models, for tests/pruning/test_pruning_ria.py.

    .venv/bin/python scripts/reference_ria.py --official <git dir of the official repository>

(the official repository: github.com/biomedical-cybernetics/Relative-importance-and-activation-pruning)

``--official`` is a git directory of the official repository (a bare mirror or a checkout). Its lib/ at HEAD is
exported to a temporary folder and ``lib.prune.prune_ria`` runs there, on CPU, for every case below on a tiny
LLaMA and a tiny OPT (the two families the official code knows), with main.py's defaults for every other
argument. What keeps it from running on CPU with this transformers, and how it is patched (the export, the tiny
models and the patches made from outside are ``official_code.py``'s, shared with the other reference scripts):

- lib/prune.py moves tensors to CUDA (``.cuda()`` on the score for the unstructured threshold, ``permutation_device
  = "cuda:7"`` for the LSA): the exported copy drops ``.cuda()`` and uses "cpu" (text edits, counted).
- ``get_loaders`` (C4 from the Hub) is replaced by the frozen calibration ids, one sequence per batch as the
  official loader gives (no targets: the official code reads only the inputs); ``model.hf_device_map`` (set by
  device_map="auto") is an empty dict; ``model.seqlen`` is set as main.py does.
- transformers >= 4.48 LLaMA decoder layers need ``position_embeddings``, which the official code (written for
  4.36) does not pass: a forward pre-hook on each LLaMA layer computes them from the ``position_ids`` it passes.

Each model is float32 with float16-representable weights (stored as float16). The official code marks the pruned
weights by zeroing them; none of the dense linear weights is zero, so the mask is ``weight != 0`` afterwards.
Writes tests/pruning/references/ria_<family>.safetensors: the dense weights, the calibration ids and, per case,
the masks of every linear (True = kept), flattened row-major, concatenated in the order of the metadata's
"linears" ("<block>.<name>") and packed 8 to a byte (numpy.packbits), key "mask/<case>"; the metadata also says
the repository, commit, function, arguments, cases, model config and patches. The tied LM head is not stored.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json

import official_code
import torch
import transformers

REPO = "biomedical-cybernetics/Relative-importance-and-activation-pruning"
NSAMPLES, SEQLEN, VOCAB = 8, 32, 64
CONFIGS = {family: official_code.tiny_config(family, layers=2, vocab=VOCAB, max_positions=SEQLEN)
           for family in ("llama", "opt")}
# every argument prune_ria reads: main.py's defaults, but 8 calibration sequences of 32 tokens (not 128 of 2048)
DEFAULTS = dict(seed=0, calib_dataset="c4", nsamples=NSAMPLES, seqlen=SEQLEN, prune_method="ria", a=0.5,
                reconstruction=False, reallocation=False, lsa=False, importance_score="sum", gptq=False,
                per_outneuron=False, semi_sparse_acc=False, fast=False)
CASES = {  # name -> (sparsity_ratio, sparsity_type, changed arguments)
    "unstructured-0.5": (0.5, "unstructured", {}),
    "unstructured-0.6": (0.6, "unstructured", {}),
    "unstructured-0.7": (0.7, "unstructured", {}),
    "unstructured-0.5-a1": (0.5, "unstructured", {"a": 1.0}),
    "2:4": (0.5, "2:4", {}),
    "2:4-reallocation": (0.5, "2:4", {"reallocation": True}),
    "2:4-lsa": (0.5, "2:4", {"reallocation": True, "lsa": True}),
    "4:8-lsa": (0.5, "4:8", {"reallocation": True, "lsa": True}),
}
EDITS = [  # (file, text, replacement, occurrences)
    ("lib/prune.py", ".cuda()", "", 3),
    ("lib/prune.py", 'permutation_device = "cuda:7"', 'permutation_device = "cpu"', 1),
]


def build_model(family: str, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    model = official_code.tiny_model(family, CONFIGS[family])
    if state is not None:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model


def official_masks(prune, family: str, state: dict, ids: torch.Tensor, sparsity: float, pattern: str, changed: dict):
    """Run the official prune_ria on the dense model; returns every linear's mask by "<block>.<name>"."""
    model = official_code.ready(build_model(family, state), family, SEQLEN, prune, ids)
    args = argparse.Namespace(**{**DEFAULTS, **changed}, model=f"tiny-{family}", sparsity_ratio=sparsity,
                              sparsity_type=pattern)
    prune_n, prune_m = (0, 0) if pattern == "unstructured" else map(int, pattern.split(":"))
    with contextlib.redirect_stdout(io.StringIO()):  # its progress: a line per linear
        prune.prune_ria(args, model, None, torch.device("cpu"), prune_n=prune_n, prune_m=prune_m)
    layers = model.model.layers if family == "llama" else model.model.decoder.layers
    return {f"{i}.{name}": linear.weight.detach() != 0 for i, layer in enumerate(layers)
            for name, linear in prune.find_layers(layer).items()}


def main() -> None:
    cli = official_code.command_line(__doc__, REPO)
    with official_code.exported(cli.official, ["lib"], EDITS) as (_, commit):
        prune = importlib.import_module("lib.prune")
        for seed, family in enumerate(CONFIGS):
            torch.manual_seed(seed)
            state = official_code.half_state(build_model(family))
            if not all(v.ne(0).all() for k, v in state.items() if ".layers." in k and v.ndim == 2):
                raise SystemExit(f"{family}: a dense linear weight is zero in float16; pick another seed")
            ids = torch.randint(0, VOCAB, (NSAMPLES, SEQLEN), generator=torch.Generator().manual_seed(seed))
            tensors = {f"weight/{k}": v for k, v in state.items()}
            tensors["ids"] = ids
            for case, (sparsity, pattern, changed) in CASES.items():
                masks = official_masks(prune, family, state, ids, sparsity, pattern, changed)
                flat = torch.cat([mask.reshape(-1) for mask in masks.values()])
                tensors[f"mask/{case}"] = official_code.pack_bits(flat)
            metadata = {
                "repo": REPO, "commit": commit, "function": "lib.prune.prune_ria(args, model, tokenizer=None, "
                "device=cpu, prune_n, prune_m)", "args": json.dumps(DEFAULTS),
                "linears": json.dumps(list(masks)), "family": family, "config": json.dumps(CONFIGS[family]),
                "patches": json.dumps(EDITS), "torch": torch.__version__, "transformers": transformers.__version__,
            }
            official_code.save_reference(cli.out / f"ria_{family}.safetensors", tensors, metadata, CASES)


if __name__ == "__main__":
    main()
