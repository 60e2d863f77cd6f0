"""Named recipes from the PERP paper, so a user need not know every knob.

Learning rates come from short CPU runs on the embedded model (magnitude 50%, 30 steps of 4x256 tokens,
10% warm-up then linear decay): full retraining is best near 2e-4, norms alone near 5e-3 (1e-3 recovers far
less), norms + MaskLoRA near 2e-3 (see bench/lr_bench.py and the README). So norms-only, perp and recon-norms
take 5e-3, full-ft 2e-4 and perp-masklora 2e-3. The recipes that were not swept take the rate of the swept one
they vary: the other adapters on the pruned linears (LoRA, both ScaleLoRAs) and reconstruction with an adapter
take MaskLoRA's 2e-3.
"""

from __future__ import annotations

from .errors import PerpError

# The adapters on the pruned linears: their rank and alpha (scaling alpha / rank) in the presets that attach one, and
# RunConfig's defaults. The head LoRA of ``head-lora`` is the paper's own recipe (perp_engine.repair.subsets).
DEFAULT_RANK = 16
DEFAULT_ALPHA = 32.0

PRESETS: dict[str, dict] = {
    "none": {
        "mode": "none",
        "train": (),
        "adapter": "none",
    },
    "norms-only": {
        "mode": "retrain",
        "train": ("norms",),
        "adapter": "none",
        "lr": 5e-3,
    },
    "perp": {
        "mode": "retrain",
        "train": ("biases", "norms", "head-lora"),
        "adapter": "none",
        "lr": 5e-3,
    },
    "perp-masklora": {
        "mode": "retrain",
        "train": ("biases", "norms", "head-lora"),
        "adapter": "masklora",
        "rank": DEFAULT_RANK,
        "alpha": DEFAULT_ALPHA,
        "lr": 2e-3,
    },
    "perp-scalelora": {
        "mode": "retrain",
        "train": ("biases", "norms", "head-lora"),
        "adapter": "scalelora",
        "rank": DEFAULT_RANK,
        "alpha": DEFAULT_ALPHA,
        "lr": 2e-3,
    },
    "perp-scalelora-paper": {
        "mode": "retrain",
        "train": ("biases", "norms", "head-lora"),
        "adapter": "scalelora-paper",
        "rank": DEFAULT_RANK,
        "alpha": DEFAULT_ALPHA,
        "lr": 2e-3,
    },
    "perp-lora": {
        "mode": "retrain",
        "train": ("biases", "norms", "head-lora"),
        "adapter": "lora",
        "rank": DEFAULT_RANK,
        "alpha": DEFAULT_ALPHA,
        "lr": 2e-3,
    },
    "full-ft": {
        "mode": "retrain",
        "train": ("full",),
        "adapter": "none",
        "lr": 2e-4,
    },
    "recon-norms": {
        "mode": "reconstruct",
        "train": ("biases", "norms"),
        "adapter": "none",
        "lr": 5e-3,
    },
    "recon-masklora": {
        "mode": "reconstruct",
        "train": ("biases", "norms"),
        "adapter": "masklora",
        "rank": DEFAULT_RANK,
        "alpha": DEFAULT_ALPHA,
        "lr": 2e-3,
    },
    "recon-scalelora": {
        "mode": "reconstruct",
        "train": ("biases", "norms"),
        "adapter": "scalelora",
        "rank": DEFAULT_RANK,
        "alpha": DEFAULT_ALPHA,
        "lr": 2e-3,
    },
}

DESCRIPTIONS: dict[str, str] = {
    "none": "Prune only, no retraining.",
    "norms-only": "Retrain only the normalisation layers' weights (LayerNorm / RMSNorm): the smallest PERP subset.",
    "perp": "PERP: retrain biases + norms + a LoRA on the head (the paper's released recipe for the head).",
    "perp-masklora": f"PERP + MaskLoRA r{DEFAULT_RANK} on every pruned linear; merges back without breaking sparsity.",
    "perp-scalelora": f"PERP + ScaleLoRA r{DEFAULT_RANK} (multiplicative, W * (1 + s BA), full rank) on every pruned linear.",
    "perp-scalelora-paper": f"PERP + the paper's ScaleLoRA r{DEFAULT_RANK} (W * BA, A = B = 1/sqrt(r): stays rank 1), for reproduction.",
    "perp-lora": f"PERP + plain LoRA r{DEFAULT_RANK} on every pruned linear, kept unmerged (merging would fill the zeros back in).",
    "full-ft": "Full retraining of every parameter, pruning masks enforced after each step.",
    "recon-norms": "Layer-wise reconstruction, block by block, training biases + norms against the dense block.",
    "recon-masklora": f"Layer-wise reconstruction with MaskLoRA r{DEFAULT_RANK} + biases + norms, block by block.",
    "recon-scalelora": f"Layer-wise reconstruction with ScaleLoRA r{DEFAULT_RANK} (full rank) + biases + norms, block by block.",
}


# How each preset's learning rate was chosen (the reproduction report prints it beside the rate).
_SWEPT = "measured best of {} on the embedded model (magnitude 50%, 30 steps of 4x256 tokens; bench/lr_bench.py)"
_MASKLORA = "not swept: MaskLoRA's rate (the same recipe with another adapter on the pruned linears)"
LR_ORIGIN: dict[str, str] = {
    "norms-only": "measured near-best for norms alone in the same runs (1e-3 recovers far less), as perp",
    "perp": _SWEPT.format("1e-3, 5e-3, 1e-2"),
    "perp-masklora": _SWEPT.format("1e-3, 2e-3, 5e-3"),
    "perp-scalelora": _MASKLORA,
    "perp-scalelora-paper": _MASKLORA,
    "perp-lora": _MASKLORA,
    "full-ft": _SWEPT.format("1e-4, 2e-4, 5e-4"),
    "recon-norms": "not swept: the rate of norms in retraining",
    "recon-masklora": "not swept: MaskLoRA's rate in retraining",
    "recon-scalelora": "not swept: MaskLoRA's rate in retraining",
}


def preset_fields(name: str) -> dict:
    """The RunConfig fields a preset sets."""
    if name not in PRESETS:
        raise PerpError("preset", f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
