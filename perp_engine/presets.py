"""Named recipes from the PERP paper, so a user need not know every knob.

Learning rates come from short CPU runs on the embedded model (magnitude 50%, 30 steps of 4x256 tokens,
10% warm-up then linear decay): full retraining is best near 2e-4, norms alone near 5e-3, norms + MaskLoRA
near 2e-3 (see bench/retrain_bench.py and the README).
"""

from __future__ import annotations

from .errors import PerpError

PRESETS: dict[str, dict] = {
    "none": {
        "mode": "none",
        "train": (),
        "adapter": "none",
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
        "rank": 16,
        "alpha": 32.0,
        "lr": 2e-3,
    },
    "perp-scalelora": {
        "mode": "retrain",
        "train": ("biases", "norms", "head-lora"),
        "adapter": "scalelora",
        "rank": 16,
        "alpha": 32.0,
        "lr": 2e-3,
    },
    "perp-scalelora-paper": {
        "mode": "retrain",
        "train": ("biases", "norms", "head-lora"),
        "adapter": "scalelora-paper",
        "rank": 16,
        "alpha": 32.0,
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
        "rank": 16,
        "alpha": 32.0,
        "lr": 2e-3,
    },
}

DESCRIPTIONS: dict[str, str] = {
    "none": "Prune only, no retraining.",
    "perp": "PERP: retrain biases + norms + a LoRA on the head (the paper's released recipe for the head).",
    "perp-masklora": "PERP + MaskLoRA r16 on every pruned linear; merges back without breaking sparsity.",
    "perp-scalelora": "PERP + ScaleLoRA r16 (multiplicative, W * (1 + s BA), full rank) on every pruned linear.",
    "perp-scalelora-paper": "PERP + the paper's ScaleLoRA r16 (W * BA, A = B = 1/sqrt(r): stays rank 1), for reproduction.",
    "full-ft": "Full retraining of every parameter, pruning masks enforced after each step.",
    "recon-norms": "Layer-wise reconstruction, block by block, training biases + norms against the dense block.",
    "recon-masklora": "Layer-wise reconstruction with MaskLoRA r16 + biases + norms, block by block.",
}


def preset_fields(name: str) -> dict:
    """The RunConfig fields a preset sets."""
    if name not in PRESETS:
        raise PerpError("preset", f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
