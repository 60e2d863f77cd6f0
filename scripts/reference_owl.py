"""Run the official OWL code (luuyin/OWL, lib/prune_all.py) on tiny random models and freeze what it gives.

    python scripts/reference_owl.py --official /work/.mirror/luuyin+OWL/repo [--out tests/pruning/references]

``--official`` is a git snapshot of the official repository (as the repository tools fetch it; a bare git folder
or a checkout). Its ``lib/`` is exported to a temporary folder and imported from there; nothing of it is copied
into this project. Only what keeps it from running on a CPU with transformers 5 is patched, from outside (the
export, the tiny models and all but the CUDA patches are ``official_code.py``'s, shared with the other scripts):
- ``get_loaders`` (C4 from the Hub) returns our calibration ids;
- ``model.hf_device_map`` (set by accelerate's device_map loading) is an empty map, ``model.seqlen`` our length;
- its CUDA calls (``.cuda()``, ``torch.cuda.synchronize``, ``empty_cache``) do nothing;
- a LLaMA decoder layer called the official way (hidden states, attention mask, position ids) gets the rotary
  ``position_embeddings`` that transformers 5 computes once per model and passes to every layer.

For each family (LLaMA, OPT; 4 blocks, weights rounded to float16 so the file stays small) and each case it writes
``owl_<family>.safetensors``: the dense weights, the calibration ids, the outlier share of every block (the values
the official ``check_outlier_mean`` returned), the block densities the official code printed after adjustment (at
full precision), and for ``wanda_owl`` the official masks (packed bits, row-major, True = pruned). The metadata
names the repository, its commit, the functions and their arguments.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import types

import numpy as np
import official_code
import torch

SEQLEN, SAMPLES, VOCAB = 16, 8, 128
CASES = [  # (official function, sparsity, Lamda, Hyper_m); Lamda / Hyper_m as the official README's recipes
    ("prune_wanda_outlier", 0.5, 0.08, 5.0),
    ("prune_wanda_outlier", 0.7, 0.08, 5.0),
    ("prune_wanda_outlier", 0.6, 0.2, 3.0),
    ("prune_sparsegpt_outlier", 0.6, 0.08, 5.0),
    ("prune_mag_outlier", 0.7, 0.08, 5.0),
]
WITH_MASKS = "prune_wanda_outlier"


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    model = official_code.tiny_model(family, official_code.tiny_config(family, layers=4, vocab=VOCAB, max_positions=64))
    official_code.round_to_half(model)
    return model


def run_official(prune_all, family: str, model, ids: torch.Tensor, case) -> dict:
    function, sparsity, lamda, hyper_m = case
    model = official_code.ready(copy.deepcopy(model), family, SEQLEN, prune_all, ids)
    shares: list[float] = []
    original = prune_all.check_outlier_mean

    def recording(mask, threshold):
        shares.append(original(mask, threshold))
        return shares[-1]

    prune_all.check_outlier_mean = recording
    args = types.SimpleNamespace(model=f"{family}-tiny", nsamples=len(ids), seed=0, sparsity_ratio=sparsity,
                                 Lamda=lamda, Hyper_m=hyper_m, use_variant=False)
    printed = io.StringIO()
    np.set_printoptions(precision=17, floatmode="unique", threshold=10**6, linewidth=10**6)
    try:
        with contextlib.redirect_stdout(printed), torch.no_grad():
            if function == "prune_sparsegpt_outlier":
                getattr(prune_all, function)(args, model, None, torch.device("cpu"))
            else:
                getattr(prune_all, function)(args, model, None, device=torch.device("cpu"))
    finally:
        prune_all.check_outlier_mean = original
    line = next(x for x in printed.getvalue().splitlines() if x.startswith("after adjustment"))
    density = np.array(line[line.index("[") + 1: line.index("]")].split(), dtype=np.float64)
    return {"model": model, "shares": shares, "density": density}


def main() -> int:
    args = official_code.command_line(__doc__, "luuyin/OWL")
    torch.cuda.empty_cache = lambda: None  # the official code's CUDA housekeeping: nothing to do on a CPU
    torch.cuda.synchronize = lambda *a: None
    torch.Tensor.cuda = lambda self, *a, **k: self  # prune_mag_outlier sorts on the GPU
    with official_code.exported(args.official, ["lib"]) as (_, commit):
        prune_all = importlib.import_module("lib.prune_all")
        for family in ("llama", "opt"):
            dense = tiny(family)
            ids = torch.randint(0, VOCAB, (SAMPLES, SEQLEN), generator=torch.Generator().manual_seed(1))
            tensors = {f"weight.{k}": v for k, v in official_code.half_state(dense).items()}
            tensors["ids"] = ids
            cases = []
            for index, case in enumerate(CASES):
                got = run_official(prune_all, family, dense, ids, case)
                tensors[f"case{index}.shares"] = torch.tensor(got["shares"], dtype=torch.float64)
                tensors[f"case{index}.density"] = torch.from_numpy(got["density"])
                if case[0] == WITH_MASKS:
                    pruned = official_code.pruned_linears(got["model"])
                    tensors.update(official_code.packed_masks(pruned, f"case{index}.pruned."))
                cases.append(dict(zip(("function", "sparsity", "Lamda", "Hyper_m"), case)))
            meta = {"repository": "luuyin/OWL", "commit": commit, "file": "lib/prune_all.py",
                    "config": json.dumps(dense.config.to_diff_dict()), "family": family,
                    "samples": str(SAMPLES), "seqlen": str(SEQLEN), "generated_by": "scripts/reference_owl.py"}
            official_code.save_reference(args.out / f"owl_{family}.safetensors", tensors, meta, cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
