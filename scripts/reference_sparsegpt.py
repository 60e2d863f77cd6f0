"""Run the official SparseGPT code (IST-DASLab/sparsegpt) on tiny random models and freeze the masks it gives, with
``--true-sequential`` and without.

    python scripts/reference_sparsegpt.py --official /work/.mirror/IST-DASLab+sparsegpt/repo \
        [--out tests/pruning/references]

``--official`` is a git snapshot of the official repository (a bare git folder or a checkout). Its ``llama.py``,
``opt.py``, ``sparsegpt.py``, ``modelutils.py`` and ``quant.py`` are exported to a temporary folder and imported
from there; nothing of it is copied into this project. The arguments are the defaults of the official command line
(llama.py's ``add_argument`` calls; opt.py's are the same but for ``--true-sequential``, which it lacks), with each
case's sparsity, N:M and sample count on top.

- LLaMA: the official ``llama.llama_sequential`` runs whole, once with ``args.true_sequential = True`` (groups
  [k, v, q], [o], [up, gate], [down], each pruned on inputs computed with the groups before it pruned) and once
  with False (the default: every linear pruned on the block's inputs as they were before any of it was pruned).
- OPT: the official ``opt.opt_sequential`` (no ``--true-sequential`` there) gives the default masks. The
  true-sequential ones come from :func:`true_sequential` below, a loop written here that follows
  ``llama_sequential``'s true-sequential loop step for step (one official ``SparseGPT`` per linear of a group, the
  official ``add_batch`` hooks over one forward of every sample, ``fasterprune`` and ``free`` each, the group's
  forward outputs discarded, the block's outputs recomputed once all groups are pruned) with the groups
  [k, v, q], [out_proj], [fc1], [fc2]. Each run checks that loop against the official code: with LLaMA's groups on
  the LLaMA model it gives ``llama_sequential``'s true-sequential masks, and with all of an OPT block's linears in
  one group it gives ``opt_sequential``'s, exactly.

Only what keeps the code from running on a CPU with transformers 5 is patched, from outside (the export, the tiny
models and the rotary patch are ``official_code.py``'s, shared with the other scripts):
- the official ``args`` (a module global set by the ``__main__`` block) is set on the imported module;
- the calibration loader (C4 from the Hub) is our ids, one sequence per batch as the C4 loader gives;
- ``torch.cuda.synchronize`` and ``torch.cuda.empty_cache`` (``fasterprune``, ``free``) do nothing;
- a LLaMA decoder layer called the official way (hidden states, attention mask) gets the rotary
  ``position_embeddings`` that transformers 5 computes once per model and passes to every layer.
The models run in float32 (the official code loads float16 on a GPU; its Hessian is float32 either way).

Cases: 50% and 60% unstructured, 2:4 and 4:8 (sparsity 0.5 given with them, as the official README does). The
official unstructured threshold (the sorted score at index int(numel * sparsity), compared with <=) prunes one
weight more than that count per block of columns (one block here: blocksize 128 is wider than every linear).

Per family (3 blocks, hidden 32, weights rounded to float16 with distinct magnitudes within every column, so no
score ties with another of its column; none is zero, so the pruned weights are the zero ones) it writes
``sparsegpt_true_sequential_<family>.safetensors``: the dense weights, the calibration ids (uint8), and per case
the official masks of every linear (packed bits, row-major, True = pruned), ``case<i>.layer.pruned.<module name>``
(true-sequential) and ``case<i>.block.pruned.<module name>`` (the default). The metadata names the repository, its
commit, the files, the functions of each mode and every argument given.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import types

import official_code
import torch

SEQLEN, SAMPLES, VOCAB, BLOCKS = 16, 16, 128, 3
CASES = [(0.5, 0, 0), (0.6, 0, 0), (0.5, 2, 4), (0.5, 4, 8)]  # (sparsity, prunen, prunem)
FILES = ["llama.py", "opt.py", "sparsegpt.py", "modelutils.py", "quant.py"]
GROUPS = {  # llama.py's true-sequential groups, and the same groups for OPT's linears
    "llama": [["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"], ["self_attn.o_proj"],
              ["mlp.up_proj", "mlp.gate_proj"], ["mlp.down_proj"]],
    "opt": [["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"], ["self_attn.out_proj"], ["fc1"], ["fc2"]],
}
FUNCTIONS = {  # (family, mode) -> what gave the masks
    ("llama", "layer"): "llama.llama_sequential (args.true_sequential = True)",
    ("llama", "block"): "llama.llama_sequential (args.true_sequential = False)",
    ("opt", "layer"): "sparsegpt.SparseGPT, group by group: scripts/reference_sparsegpt.py true_sequential, "
                      "following llama_sequential's true-sequential loop",
    ("opt", "block"): "opt.opt_sequential",
}


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    config = official_code.tiny_config(family, layers=BLOCKS, vocab=VOCAB, max_positions=64)
    model = official_code.tiny_model(family, config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(official_code.distinct_magnitudes(module.weight.T).T)
    official_code.round_to_half(model)
    return model


def layers_of(model, family: str):
    return model.model.layers if family == "llama" else model.model.decoder.layers


@torch.no_grad()
def true_sequential(official, model, layers, dataloader, args, groups) -> None:
    """``llama_sequential``'s loop with ``args.true_sequential`` for any decoder ``layers`` and ``groups`` (lists of
    linear names), with ``official``'s SparseGPT and find_layers: block 0's inputs caught (a pre-hook raising, as
    the official Catcher does), then per layer and group an official SparseGPT per linear, its add_batch hooked on
    one forward of every sample, fasterprune and free; then the layer's outputs for the next layer. Every linear
    is pruned and none quantized (the official --minlayer, --maxlayer, --prune_only and --wbits defaults)."""
    use_cache = model.config.use_cache
    model.config.use_cache = False
    inps = torch.zeros((args.nsamples, model.seqlen, model.config.hidden_size))
    cache = {"i": 0, "attention_mask": None}

    def catch(_module, inputs, kwargs):
        inps[cache["i"]] = inputs[0]
        cache["i"] += 1
        cache["attention_mask"] = kwargs["attention_mask"]
        raise ValueError

    handle = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    for batch in dataloader:
        with contextlib.suppress(ValueError):
            model(batch[0])
    handle.remove()
    outs, attention_mask = torch.zeros_like(inps), cache["attention_mask"]
    for layer in layers:
        full = official.find_layers(layer)
        for names in groups:
            gpts = {name: official.SparseGPT(full[name]) for name in names}
            handles = [full[name].register_forward_hook(
                lambda _m, inp, out, gpt=gpts[name]: gpt.add_batch(inp[0].data, out.data)) for name in names]
            for j in range(args.nsamples):
                outs[j] = layer(inps[j].unsqueeze(0), attention_mask=attention_mask)[0]
            for h in handles:
                h.remove()
            for name in names:
                gpts[name].fasterprune(args.sparsity, prunen=args.prunen, prunem=args.prunem, percdamp=args.percdamp,
                                       blocksize=args.blocksize)
                gpts[name].free()
        for j in range(args.nsamples):
            outs[j] = layer(inps[j].unsqueeze(0), attention_mask=attention_mask)[0]
        inps, outs = outs, inps
    model.config.use_cache = use_cache


def run(official, family: str, dense, ids: torch.Tensor, arguments: dict, how: str, groups=None) -> dict:
    """A copy of ``dense`` pruned by the official ``how`` ("llama_sequential", "opt_sequential") or by
    :func:`true_sequential` with ``groups``; returns its masks by module name (True = pruned)."""
    model = official_code.ready(copy.deepcopy(dense), family, SEQLEN, official, ids)
    dataloader, _ = official.get_loaders()
    official.args = types.SimpleNamespace(**arguments)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        if how == "true_sequential":
            true_sequential(official, model, layers_of(model, family), dataloader, official.args, groups)
        else:
            getattr(official, how)(model, dataloader, torch.device("cpu"))
    return official_code.pruned_linears(model)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def official_masks(official, family: str, dense, ids, arguments: dict) -> dict[str, dict]:
    """The official masks of one case, by mode ("layer": true-sequential, "block": the default), after checking
    :func:`true_sequential` against the official function of the family."""
    if family == "llama":
        layer = run(official, family, dense, ids, {**arguments, "true_sequential": True}, "llama_sequential")
        block = run(official, family, dense, ids, {**arguments, "true_sequential": False}, "llama_sequential")
        loop = run(official, family, dense, ids, arguments, "true_sequential", GROUPS["llama"])
        if not same(loop, layer):
            raise SystemExit("true_sequential with LLaMA's groups does not give llama_sequential's masks")
        return {"layer": layer, "block": block}
    block = run(official, family, dense, ids, arguments, "opt_sequential")
    whole = [[name for group in GROUPS["opt"] for name in group]]
    if not same(run(official, family, dense, ids, arguments, "true_sequential", whole), block):
        raise SystemExit("true_sequential with one group per block does not give opt_sequential's masks")
    return {"layer": run(official, family, dense, ids, arguments, "true_sequential", GROUPS["opt"]), "block": block}


def main() -> int:
    args = official_code.command_line(__doc__, "IST-DASLab/sparsegpt")
    torch.cuda.synchronize = lambda *a: None  # the official code's CUDA housekeeping: nothing to do on a CPU
    torch.cuda.empty_cache = lambda: None
    with official_code.exported(args.official, FILES) as (folder, commit):
        for family in ("llama", "opt"):
            official = importlib.import_module(family)
            defaults = {k.replace("-", "_"): v for k, v in official_code.main_defaults(folder / f"{family}.py").items()}
            dense = tiny(family)
            assert not any(bool(zero.any()) for zero in official_code.pruned_linears(dense).values())
            ids = torch.randint(0, VOCAB, (SAMPLES, SEQLEN), generator=torch.Generator().manual_seed(1))
            tensors = {f"weight.{k}": v for k, v in official_code.half_state(dense).items()}
            tensors["ids"] = ids.to(torch.uint8)
            cases = []
            for index, (sparsity, prunen, prunem) in enumerate(CASES):
                arguments = {**defaults, "model": f"{family}-tiny", "dataset": "c4", "nsamples": SAMPLES,
                             "sparsity": sparsity, "prunen": prunen, "prunem": prunem}
                masks = official_masks(official, family, dense, ids, arguments)
                if same(masks["layer"], masks["block"]):
                    raise SystemExit(f"{family} case {index}: true-sequential masks equal the default ones")
                for mode, pruned in masks.items():
                    tensors.update(official_code.packed_masks(pruned, f"case{index}.{mode}.pruned."))
                cases.append({"sparsity": sparsity, "prunen": prunen, "prunem": prunem, "arguments": arguments})
            meta = {"repository": "IST-DASLab/sparsegpt", "commit": commit, "files": json.dumps(FILES),
                    "functions": json.dumps({mode: FUNCTIONS[family, mode] for mode in ("layer", "block")}),
                    "groups": json.dumps(GROUPS[family]), "family": family,
                    "config": json.dumps(dense.config.to_diff_dict()), "samples": str(SAMPLES), "seqlen": str(SEQLEN),
                    "generated_by": "scripts/reference_sparsegpt.py"}
            path = args.out / f"sparsegpt_true_sequential_{family}.safetensors"
            official_code.save_reference(path, tensors, meta, cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
