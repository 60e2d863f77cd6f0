"""Run the official OWL code (luuyin/OWL, lib/prune_all.py) on tiny random models and freeze what it gives.

    python scripts/reference_owl.py --official /work/.mirror/luuyin+OWL/repo [--out tests/pruning/references]

``--official`` is a git snapshot of the official repository (as the repository tools fetch it; a bare git folder
or a checkout). Its ``lib/`` is exported to a temporary folder and imported from there; nothing of it is copied
into this project. Only what keeps it from running on a CPU with transformers 5 is patched, from outside:
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

import argparse
import contextlib
import copy
import importlib
import io
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

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
    if family == "llama":
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                          tie_word_embeddings=True)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=4, num_attention_heads=4,
                        max_position_embeddings=64, word_embed_proj_dim=32)
        model = OPTForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model.eval()


def export_official(snapshot: Path, into: Path) -> tuple[Path, str]:
    """The official ``lib`` package exported from ``snapshot`` into ``into``; returns its folder and the commit."""
    commit = subprocess.run(["git", "-C", str(snapshot), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(snapshot), "archive", "HEAD", "lib"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "lib", commit


def with_rotary(model) -> None:
    """transformers 5 passes each LLaMA layer the rotary embeddings; the official code calls layers without them."""
    rotary = model.model.rotary_emb

    def hook(_module, args, kwargs):
        if kwargs.get("position_embeddings") is None:
            hidden = args[0] if args else kwargs["hidden_states"]
            positions = kwargs.get("position_ids")
            if positions is None:
                positions = torch.arange(hidden.shape[1]).unsqueeze(0)
            kwargs["position_embeddings"] = rotary(hidden, positions)
        return args, kwargs

    for layer in model.model.layers:
        layer.register_forward_pre_hook(hook, with_kwargs=True)


def run_official(prune_all, family: str, model, ids: torch.Tensor, case) -> dict:
    function, sparsity, lamda, hyper_m = case
    model = copy.deepcopy(model)
    model.seqlen = SEQLEN
    model.hf_device_map = {}
    if family == "llama":
        with_rotary(model)
    shares: list[float] = []
    original = prune_all.check_outlier_mean

    def recording(mask, threshold):
        shares.append(original(mask, threshold))
        return shares[-1]

    prune_all.check_outlier_mean = recording
    prune_all.get_loaders = lambda *a, **k: ([(row.unsqueeze(0), None) for row in ids], None)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="git snapshot of luuyin/OWL")
    parser.add_argument("--out", type=Path, default=Path("tests/pruning/references"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.cuda.empty_cache = lambda: None  # the official code's CUDA housekeeping: nothing to do on a CPU
    torch.cuda.synchronize = lambda *a: None
    torch.Tensor.cuda = lambda self, *a, **k: self  # prune_mag_outlier sorts on the GPU
    with tempfile.TemporaryDirectory() as tmp:
        lib, commit = export_official(args.official, Path(tmp))
        sys.path.insert(0, tmp)
        prune_all = importlib.import_module("lib.prune_all")
        for family in ("llama", "opt"):
            dense = tiny(family)
            ids = torch.randint(0, VOCAB, (SAMPLES, SEQLEN), generator=torch.Generator().manual_seed(1))
            tensors = {f"weight.{k}": v.half().contiguous() for k, v in dense.state_dict().items()
                       if k != "lm_head.weight" or not dense.config.tie_word_embeddings}
            tensors["ids"] = ids
            cases = []
            for index, case in enumerate(CASES):
                got = run_official(prune_all, family, dense, ids, case)
                tensors[f"case{index}.shares"] = torch.tensor(got["shares"], dtype=torch.float64)
                tensors[f"case{index}.density"] = torch.from_numpy(got["density"])
                if case[0] == WITH_MASKS:
                    for name, module in got["model"].named_modules():
                        if isinstance(module, torch.nn.Linear) and name != "lm_head":
                            bits = np.packbits((module.weight == 0).numpy().reshape(-1))
                            tensors[f"case{index}.pruned.{name}"] = torch.from_numpy(bits)
                cases.append(dict(zip(("function", "sparsity", "Lamda", "Hyper_m"), case)))
            meta = {"repository": "luuyin/OWL", "commit": commit, "file": "lib/prune_all.py",
                    "config": json.dumps(dense.config.to_diff_dict()), "family": family,
                    "cases": json.dumps(cases), "samples": str(SAMPLES), "seqlen": str(SEQLEN),
                    "generated_by": "scripts/reference_owl.py"}
            path = args.out / f"owl_{family}.safetensors"
            save_file(tensors, str(path), metadata=meta)
            print(f"{path}: {path.stat().st_size // 1024} KiB, {len(cases)} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
