"""Command-line flags generated from RunConfig's fields, so every field has a flag with its default and allowed values."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..config import (
    ADAPTERS,
    ALLOCATIONS,
    DEVICES,
    DSNOT_SAME_SIGN,
    DSNOT_SKIP_LAYERS,
    DTYPES,
    METHODS,
    MODES,
    NAMED_DATASETS,
    REFINES,
    RIA_PERMUTATIONS,
    SEQUENTIAL_MODES,
    SUBSETS,
    ZERO_SHOT_MODELS,
    ZERO_SHOT_TASKS,
    RunConfig,
    field_values,
    zero_shot_limit_value,
)
from ..errors import PerpError
from ..presets import DESCRIPTIONS

HELP = {
    "model": "'smollm2-135m' (embedded, offline), a local folder, or a Hugging Face causal-LM id (needs internet)",
    "dataset": f"evaluation (and default calibration) text: {', '.join(NAMED_DATASETS)} or a text file path",
    "calib_dataset": "calibration/training text if different from --dataset (same choices)",
    "method": f"pruning method: {', '.join(METHODS)}",
    "sparsity": "fraction of weights pruned in every linear of the decoder blocks, in [0, 1)",
    "pattern": "'unstructured' or N:M such as 2:4 / 4:8 (N of every M consecutive weights pruned; sparsity must be N/M)",
    "seqlen": "tokens per calibration / evaluation window",
    "calib_samples": "number of calibration windows",
    "eval_tokens": "evaluation tokens (non-overlapping windows of seqlen; remainder dropped)",
    "eval_batch_size": "windows per evaluation batch",
    "blocksize": "SparseGPT column block size (with an N:M pattern rounded down to a multiple of M, at least M)",
    "percdamp": "SparseGPT dampening, as a fraction of mean(diag H)",
    "allocation": f"how the sparsity is shared among the blocks: {', '.join(ALLOCATIONS)} (owl: blocks with more "
                  "outlier weights are pruned less, averaging to --sparsity; unstructured only; Yin et al. 2024)",
    "owl_m": "OWL's M: a weight is an outlier when its Wanda score exceeds M times its block's mean score",
    "owl_lambda": "OWL's lambda: block sparsities spread up to 2 x lambda around --sparsity",
    "ria_power": "RIA's power of the input activation norm in the score (Zhang et al. 2024)",
    "ria_permute": f"RIA's channel permutation for N:M: {', '.join(RIA_PERMUTATIONS)} (reallocation: regroup the "
                   "input channels so that each group of M keeps more important weights; lsa: then refine the "
                   "grouping by linear sum assignment; method ria with an N:M pattern)",
    "refine": f"mask refinement after pruning each layer: {', '.join(REFINES)} (dsnot: training-free grow/prune "
              "swaps that lower the layer's reconstruction error; Zhang et al. 2024)",
    "dsnot_skip_layer": f"linears DSnoT leaves as pruned: {', '.join(DSNOT_SKIP_LAYERS)} (mlp, the official default: "
                        "only the attention linears are refined)",
    "dsnot_max_cycles": "DSnoT's grow/prune swaps per output row, at most (0 = no change)",
    "dsnot_update_threshold": "DSnoT stops a row once its expected output error (summed over a sequence's tokens, "
                              "averaged over sequences) is below this",
    "dsnot_pow_of_var_regrowing": "DSnoT divides a pruned weight's regrowth gain by its input's variance to this power",
    "dsnot_same_sign": f"DSnoT skips a swap that flips the sign of the row's error: {', '.join(DSNOT_SAME_SIGN)} "
                       "(auto: as the official code, off for unstructured, on for N:M)",
    "sequential": f"pruning order inside a block: {', '.join(SEQUENTIAL_MODES)} (block: every linear on the block's "
                  "inputs as they are, the official Wanda and SparseGPT default; layer: each linear on inputs that "
                  "pass through the linears pruned before it, SparseGPT's --true-sequential, in one forward per block)",
    "preset": "named recipe that sets mode/train/adapter/lr: " + "; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()),
    "mode": f"repair after pruning: {', '.join(MODES)}",
    "train": f"comma list of parameter subsets to train: {', '.join(SUBSETS)}",
    "adapter": f"adapter on the pruned linears: {', '.join(ADAPTERS)}",
    "rank": "adapter rank r",
    "alpha": "adapter alpha (scaling s = alpha / r)",
    "target_modules": "comma list of linear names to adapt (e.g. q_proj,down_proj); empty = all",
    "untie_head": "untie lm_head from the embeddings before training the head",
    "steps": "optimizer steps (per block in reconstruct mode)",
    "lr": "AdamW learning rate (linear schedule with warm-up)",
    "batch_size": "training batch size (windows), also the calibration forward batch",
    "grad_accum": "gradient accumulation micro-batches per step",
    "warmup_ratio": "fraction of steps used for linear warm-up",
    "weight_decay": "AdamW weight decay",
    "max_grad_norm": "clip the gradient norm at this value before each optimizer step, as the paper's training does (0 = off)",
    "grad_checkpointing": "recompute activations in backward to save memory",
    "master_weights": "with a bfloat16/float16 model, train float32 master copies of the trained tensors "
                      "(--no-master-weights: update them in the model's dtype)",
    "train_samples": "training windows (0 = steps x batch size x grad accum)",
    "eval_every": "learning curve: every K optimizer steps (and before the first, after the last) measure the held-out "
                  "perplexity (retrain: the evaluation windows) or each block's held-out error (reconstruct: the "
                  "measurement windows); never on training windows; each point costs one such evaluation (0 = off)",
    "seed": "random seed (calibration windows, random pruning, adapter init, batch order)",
    "device": f"{', '.join(DEVICES)} or cuda:N (auto = GPU when present, else CPU)",
    "dtype": f"model dtype: {', '.join(DTYPES)}",
    "offload": "where the decoder blocks wait between uses: none (all on the device), cpu (CPU memory, each block "
               "visits the device), disk (files, each block read in turn); auto picks the first that the memory "
               "model says fits (perp estimate shows it)",
    "trust_remote_code": "allow custom model code from the Hub (off unless asked)",
    "zero_shot": f"comma list of zero-shot tasks scored with lm-eval (offline data): paper (all seven) or "
                 f"{', '.join(ZERO_SHOT_TASKS)}; perp tasks lists them",
    "zero_shot_limit": "docs per zero-shot task, a subset drawn with --seed; 'all' or 0 for every doc of the split",
    "zero_shot_on": f"comma list of the models scored zero-shot: {', '.join(ZERO_SHOT_MODELS)} (final: after repair)",
    "zero_shot_samples": "write each scored doc's log-likelihoods to this JSON-lines file (as lm-eval's --log_samples)",
}


def zero_shot_limit(text: str) -> int:
    """--zero-shot-limit: a count, or 'all' (0)."""
    try:
        return zero_shot_limit_value(text)
    except PerpError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (default None = preset or RunConfig default), plus --config FILE."""
    defaults = RunConfig()
    parser.add_argument("--config", metavar="FILE", help="JSON file of RunConfig fields; flags override it")
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        text = f"{HELP[f.name]} (default: {shown if shown not in ('', None) else 'none'})"
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            kind = zero_shot_limit if f.name == "zero_shot_limit" else {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=text, metavar=f.name.upper())
    parser.set_defaults(_config_fields=[f.name for f in dataclasses.fields(RunConfig)])


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig named by --config, --preset and the field flags (flags win over the file, the file over the preset)."""
    values: dict = {}
    if args.config:
        values = field_values(_read_config_file(args.config))
    for name in args._config_fields:
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    preset = values.pop("preset", None)
    return RunConfig.create(preset, **values)


def _read_config_file(name: str) -> dict:
    """The JSON object in file ``name``; PerpError("config") for a missing, unreadable, binary or non-JSON file."""
    path = Path(name)
    if not path.is_file():
        raise PerpError("config", f"{name!r} is not a file")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PerpError("config", f"{name} is not UTF-8 text; it must hold a JSON object of RunConfig fields") from None
    except OSError as err:
        raise PerpError("config", f"cannot read {name}: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise PerpError("config", f"{name} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(values, dict):
        raise PerpError("config", f"{name} must hold a JSON object of RunConfig fields")
    return values
