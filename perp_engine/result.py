"""RunResult: everything one run measured, JSON-serialisable. The store, the CLI and the app read this."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

# What the layer-error fields hold. 1 (runs recorded before it existed): ``recon_error`` & co. were the accumulated
# error on calibration windows; the store migrated them to ``drift``. 2: local and accumulated errors on held-out windows.
ERRORS_FORMAT = 2


# How a line about a subset the model lacks ends (perp_engine.repair.subsets): a note while something else trains.
NOTHING_TRAINED = "nothing is trained for it"
LEVELS = ("note", "warning")  # note: informational; warning: something went wrong or needs a look


@dataclass(frozen=True)
class Notice:
    level: str  # one of LEVELS
    text: str


def notices(record: Mapping) -> list[Notice]:
    """A stored result's warnings, then its notes, each with its level (the divergence, shown on its own, left out).
    Runs recorded before a missing subset became a note stored it as a warning: with something trained it is a note."""
    trained = bool(record.get("trainable_params"))
    warnings = [w for w in record.get("warnings") or [] if w != record.get("diverged")]
    demoted = [w for w in warnings if trained and w.endswith(NOTHING_TRAINED)]
    return ([Notice("warning", w) for w in warnings if w not in demoted]
            + [Notice("note", n) for n in [*demoted, *(record.get("notes") or [])]])


@dataclass
class LayerRecord:
    name: str  # full dotted name in the model, e.g. model.layers.3.self_attn.q_proj
    block: int
    kind: str  # q_proj, k_proj, ..., c_attn, fc1
    sparsity: float
    # The two layer-wise errors (perp_engine.evaluation.layer_errors), relative, on the held-out measurement windows:
    recon_error: float | None  # local: dense vs pruned layer on the inputs it sees in the pruned model
    recon_error_after: float | None = None  # local, after retraining / reconstruction
    numel: int = 0
    drift: float | None = None  # accumulated: dense layer in the dense model vs this layer in the pruned model
    drift_after: float | None = None  # accumulated, after retraining / reconstruction


@dataclass
class BlockRecord:
    block: int
    loss_before: float | None  # local block-output error (dense vs pruned block, same inputs), after pruning
    loss_after: float | None = None  # the same after retraining / reconstruction
    train_loss_before: float | None = None  # reconstruct mode: the block's training objective before ...
    train_loss_after: float | None = None  # ... and after training that block
    drift_before: float | None = None  # accumulated block-output error (each model on its own activations)
    drift_after: float | None = None
    train_seconds: float | None = None  # reconstruct mode: seconds of this block's training steps
    # reconstruct mode with eval_every: the block's held-out relative error by step, [{"step", "seconds", "error"}]
    curve: list[dict] = field(default_factory=list)


@dataclass
class RunResult:
    config: dict
    dense_ppl: float | None = None
    pruned_ppl: float | None = None
    final_ppl: float | None = None
    sparsity: float = 0.0  # overall, over the pruned linears
    block_sparsity: list[float] = field(default_factory=list)  # each block's target, from the allocation (uniform: all equal)
    outlier_share: list[float] = field(default_factory=list)  # OWL: each dense block's share of outlier scores, in %
    layers: list[LayerRecord] = field(default_factory=list)
    blocks: list[BlockRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each timed part (prune, measure, ...)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall seconds of each progress stage, parts included
    # the time estimate made as the run started (perp_engine.resources.estimate): {"seconds", "breakdown", "device",
    # "threads"}; empty for runs recorded before it was kept
    estimate: dict = field(default_factory=dict)
    peak_memory_mb: float = 0.0  # the highest of stage_memory_mb
    stage_memory_mb: dict[str, float] = field(default_factory=dict)  # peak of each stage (perp_engine.resources.memory_meter)
    total_params: int = 0  # every parameter, adapters and an untied head copy included
    trainable_params: int = 0  # adapter weights included
    # of the model's own parameters (perp_engine.model.parameters.trainable_share); runs recorded before
    # model_params existed (0) stored trainable / total_params, until store schema 8 recounted them
    trainable_fraction: float = 0.0
    model_params: int = 0  # the model's own parameters: before adapters and before a tied head gets its own copy
    adapter_params: int = 0  # weights of the adapters the repair attached (merged at the end, except plain LoRA)
    head_copy_params: int = 0  # the untied head's own copy of the tied embedding matrix
    trainable_by_category: dict[str, int] = field(default_factory=dict)
    trained_tensors: list[str] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    # retrain mode with eval_every: held-out perplexity (the evaluation windows) by step, [{"step", "seconds", "ppl"}],
    # seconds = training seconds before the point; curve_seconds: what every curve point of the run cost
    curve: list[dict] = field(default_factory=list)
    curve_seconds: float = 0.0
    final_sparsity: float | None = None  # counted from the final model's weights after the merge (every pruned linear)
    device: str = "cpu"
    environment: dict = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)  # stages taken from the artifact cache, e.g. dense_ppl
    measure_windows: dict = field(default_factory=dict)  # which windows the layer-wise errors were measured on
    errors_format: int = ERRORS_FORMAT
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    eval_tokens: int = 0  # tokens actually scored per perplexity (whole windows; less than asked on a short text)
    diverged: str | None = None  # why the repair was judged diverged; final_ppl is then None (see divergence.py)
    # zero-shot accuracy per scored model ("dense", "pruned", "final"): one TaskScore dict per task
    # (perp_engine.evaluation.zero_shot), each naming its split, docs, limit, seed and data source
    zero_shot: dict[str, list[dict]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunResult":
        data = dict(data)
        data["layers"] = [LayerRecord(**r) for r in data.get("layers", [])]
        data["blocks"] = [BlockRecord(**r) for r in data.get("blocks", [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
