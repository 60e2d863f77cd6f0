"""RunResult: everything one run measured, JSON-serialisable. The store, the CLI and the app read this."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class LayerRecord:
    name: str  # full dotted name in the model, e.g. model.layers.3.self_attn.q_proj
    block: int
    kind: str  # q_proj, k_proj, ..., c_attn, fc1
    sparsity: float
    recon_error: float  # relative ||W x - W' x||^2 / ||W x||^2 on calibration inputs, after pruning
    recon_error_after: float | None = None  # same with the retrained / reconstructed weights
    numel: int = 0


@dataclass
class BlockRecord:
    block: int
    loss_before: float  # in-situ relative block-output error vs the dense model, right after pruning
    loss_after: float | None = None  # the same after retraining / reconstruction
    train_loss_before: float | None = None  # reconstruct mode: the block's training objective before ...
    train_loss_after: float | None = None  # ... and after training that block


@dataclass
class RunResult:
    config: dict
    dense_ppl: float | None = None
    pruned_ppl: float | None = None
    final_ppl: float | None = None
    sparsity: float = 0.0  # overall, over the pruned linears
    layers: list[LayerRecord] = field(default_factory=list)
    blocks: list[BlockRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    total_params: int = 0
    trainable_params: int = 0
    trainable_fraction: float = 0.0
    trainable_by_category: dict[str, int] = field(default_factory=dict)
    trained_tensors: list[str] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    device: str = "cpu"
    environment: dict = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)  # stages taken from the artifact cache, e.g. dense_ppl
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    eval_tokens: int = 0  # tokens actually scored per perplexity (whole windows; less than asked on a short text)
    diverged: str | None = None  # why the repair was judged diverged; final_ppl is then None (see divergence.py)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunResult":
        data = dict(data)
        data["layers"] = [LayerRecord(**r) for r in data.get("layers", [])]
        data["blocks"] = [BlockRecord(**r) for r in data.get("blocks", [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
