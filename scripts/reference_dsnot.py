"""Run the official DSnoT code (zyxxmu/DSnoT) on tiny random models and freeze the masks it gives.

    python scripts/reference_dsnot.py --official /work/.mirror/zyxxmu+DSnoT/repo [--out tests/pruning/references]

``--official`` is a git snapshot of the official repository (a bare git folder or a checkout). Its ``lib/`` and
``main.py`` are exported to a temporary folder; ``lib.prune.prune_DSnoT`` (LLaMA) and ``lib.prune_opt.prune_DSnoT_opt``
(OPT) are imported from there and run whole, block by block, as ``main.py`` runs them. Nothing of it is copied into
this project. The arguments are ``main.py``'s defaults, read from its ``add_argument`` calls, with each case's
own values on top. Only what keeps the code from running on a CPU with transformers 5 is patched, from outside (the
export, the tiny models and all but the CUDA patch are ``official_code.py``'s, shared with the other scripts):
- ``get_loaders`` (C4 from the Hub) returns our calibration ids, one sequence per batch as C4's loader does;
- ``model.hf_device_map`` (set by accelerate's device_map loading) is an empty map, ``model.seqlen`` our length;
- ``torch.cuda.empty_cache`` does nothing;
- a LLaMA decoder layer called the official way (hidden states, attention mask, position ids) gets the rotary
  ``position_embeddings`` that transformers 5 computes once per model and passes to every layer.
The models run in float32 (the official code loads float16 on a GPU; its statistics are float32 either way).

Cases: Wanda and magnitude starts at 50% and 60% unstructured, and 2:4 and 4:8 for LLaMA, with the default knobs
and with others. Not frozen, because the official code does not run them: OPT with N:M (its N:M loop reads
``args.update_threshold_for_sum``, which main.py does not define, and ``name.split(".")[1]`` fails on ``fc1``),
and the "sparsegpt" start (its wrapper never accumulates the Hessian, so the score is zero everywhere and it
prunes the first columns of every row). The N:M cases run 5 cycles: on layers 32 inputs wide, more cycles walk
the official pointers past the candidates of the needed sign (see perp_engine/pruning/dsnot.py), which changes
rows' counts of pruned weights; this script refuses any case whose official masks do not keep every row's count
(every N:M group's).

Per family (2 blocks, hidden 32, weights rounded to float16 with distinct magnitudes within every row, so no
decision rests on a tie-break) it writes ``dsnot_<family>.safetensors``: the dense weights, the calibration ids
(uint8), and per case the official masks of every linear (packed bits, row-major, True = pruned). The metadata
names the repository, its commit, the function and every argument it was given.
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

SEQLEN, SAMPLES, VOCAB = 16, 128, 128
CASES = [  # (initial_method, sparsity_type, sparsity_ratio, arguments that differ from main.py's defaults)
    ("wanda", "unstructured", 0.5, {}),
    ("wanda", "unstructured", 0.5, {"skip_layer": "no_skip"}),
    ("wanda", "unstructured", 0.6, {"skip_layer": "no_skip"}),
    ("magnitude", "unstructured", 0.5, {"skip_layer": "no_skip"}),
    ("magnitude", "unstructured", 0.6, {}),
    ("wanda", "unstructured", 0.6, {"skip_layer": "no_skip", "without_same_sign": False, "pow_of_var_regrowing": 2.0,
                                    "update_threshold": 0.05}),
    ("wanda", "unstructured", 0.5, {"skip_layer": "self_attn", "pow_of_var_regrowing": 0.0, "max_cycle_time": 3}),
    ("wanda", "2:4", 0.5, {"skip_layer": "no_skip", "max_cycle_time": 5}),
    ("magnitude", "2:4", 0.5, {"max_cycle_time": 5}),
    ("wanda", "4:8", 0.5, {"skip_layer": "no_skip", "max_cycle_time": 5, "update_threshold": 0.05}),
]
FUNCTIONS = {"llama": ("lib.prune", "prune_DSnoT"), "opt": ("lib.prune_opt", "prune_DSnoT_opt")}


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    model = official_code.tiny_model(family, official_code.tiny_config(family, layers=2, vocab=VOCAB, max_positions=64))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(official_code.distinct_magnitudes(module.weight))
    official_code.round_to_half(model)
    return model


def run_official(module, function: str, family: str, dense, ids: torch.Tensor, arguments: dict) -> dict:
    """The official function on a copy of ``dense``; returns its pruned masks by linear name (True = pruned)."""
    model = official_code.ready(copy.deepcopy(dense), family, SEQLEN, module, ids)
    prune_n, prune_m = (0, 0) if arguments["sparsity_type"] == "unstructured" else \
        map(int, arguments["sparsity_type"].split(":"))
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        getattr(module, function)(types.SimpleNamespace(**arguments), model, None, torch.device("cpu"),
                                  prune_n=prune_n, prune_m=prune_m)
    return official_code.pruned_linears(model)


def check_counts(masks: dict, arguments: dict) -> None:
    """Every row (every N:M group) of every official mask prunes what the initial mask did, or refuse the case."""
    for name, pruned in masks.items():
        if arguments["sparsity_type"] == "unstructured":
            groups, expected = pruned, int(pruned.shape[1] * arguments["sparsity_ratio"])
        else:
            n, m = map(int, arguments["sparsity_type"].split(":"))
            groups, expected = pruned.reshape(-1, m), n
        if not bool((groups.sum(dim=1) == expected).all()):
            raise SystemExit(f"{name}: the official masks changed some rows' counts; this case leaves the regime "
                             f"where the official code is defined ({arguments})")


def main() -> int:
    args = official_code.command_line(__doc__, "zyxxmu/DSnoT")
    torch.cuda.empty_cache = lambda: None  # the official code's CUDA housekeeping: nothing to do on a CPU
    with official_code.exported(args.official, ["lib", "main.py"]) as (folder, commit):
        defaults = official_code.main_defaults(folder / "main.py")
        for family, (module_name, function) in FUNCTIONS.items():
            module = importlib.import_module(module_name)
            dense = tiny(family)
            zeros = official_code.pruned_linears(dense).values()
            assert not any(bool(zero.any()) for zero in zeros)  # a zero weight would read as pruned
            ids = torch.randint(0, VOCAB, (SAMPLES, SEQLEN), generator=torch.Generator().manual_seed(1))
            tensors = {f"weight.{k}": v for k, v in official_code.half_state(dense).items()}
            tensors["ids"] = ids.to(torch.uint8)
            cases = []
            for initial, sparsity_type, ratio, own in CASES:
                if family == "opt" and sparsity_type != "unstructured":
                    continue
                arguments = {**defaults, "model": f"{family}-tiny", "model_type": family, "nsamples": SAMPLES,
                             "prune_method": "DSnoT", "initial_method": initial, "sparsity_type": sparsity_type,
                             "sparsity_ratio": ratio, **own}
                masks = run_official(module, function, family, dense, ids, arguments)
                check_counts(masks, arguments)
                tensors.update(official_code.packed_masks(masks, f"case{len(cases)}.pruned."))
                cases.append(arguments)
            meta = {"repository": "zyxxmu/DSnoT", "commit": commit, "file": f"{module_name.replace('.', '/')}.py",
                    "function": function, "family": family, "config": json.dumps(dense.config.to_diff_dict()),
                    "samples": str(SAMPLES), "seqlen": str(SEQLEN), "generated_by": "scripts/reference_dsnot.py"}
            official_code.save_reference(args.out / f"dsnot_{family}.safetensors", tensors, meta, cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
