"""The numbers of one run of the set, as the claims use them: taken from a store row, kept in report.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..evaluation.recovery import recovered_share
from ..store import RunRow
from .runset import Planned


@dataclass
class RunNumbers:
    """What one run measured, or why it has no numbers (``status`` other than done)."""

    key: str
    claims: list[int]
    preset: str
    method: str
    sparsity: float  # asked for
    pattern: str
    mode: str
    lr: float | None
    steps: int
    status: str = "missing"  # done | failed | cancelled | queued | running | missing (never ran here)
    run_id: int | None = None
    error: str | None = None
    dense_ppl: float | None = None
    pruned_ppl: float | None = None
    final_ppl: float | None = None  # after repair; None for prune-only runs and diverged repairs
    pruned_sparsity: float | None = None  # zeros of the pruned linears after pruning
    final_sparsity: float | None = None  # the same counted from the final weights, after the merge (None: prune-only)
    trainable_params: int | None = None
    trainable_fraction: float | None = None
    # the model's own parameters (a run recorded before they were counted: all of them, adapters and a head copy in)
    model_params: int | None = None
    adapter_params: int = 0  # parameters of the adapters on the pruned linears (a plain LoRA keeps them unmerged)
    train_seconds: float | None = None  # the train stage without its learning curve
    seconds_per_step: float | None = None  # retrain: per optimizer step; reconstruct: per block and step (curve apart)
    curve: list[dict] = field(default_factory=list)  # retrain: held-out perplexity by step ({"step", "seconds", "ppl"})
    block_curves: list[list[dict]] = field(default_factory=list)  # reconstruct: each block's held-out error by step
    curve_seconds: float = 0.0  # what the curves cost (not in seconds_per_step)
    train_peak_mb: float | None = None  # peak memory of the train stage: the repair's memory
    peak_mb: float | None = None
    duration: float | None = None  # wall seconds of the run, start to finish
    diverged: str | None = None
    notes: list[str] = field(default_factory=list)
    device: str | None = None
    zero_shot: dict = field(default_factory=dict)  # RunResult.zero_shot: stored scores by model (dense, pruned, final)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def unmerged(self) -> bool:
        """A plain LoRA kept beside the sparse layers (merging it would make them dense)."""
        return any(note.startswith("lora: kept unmerged") for note in self.notes)

    @property
    def end_ppl(self) -> float | None:
        """The perplexity the run ends with: after repair, or after pruning for a prune-only run."""
        return self.pruned_ppl if self.mode == "none" else self.final_ppl

    @property
    def recovered(self) -> float | None:
        """Share of the pruning damage the repair undid (log-perplexity scale); None without a repair."""
        return None if self.mode == "none" else recovered_share(self.dense_ppl, self.pruned_ppl, self.final_ppl)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunNumbers":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def numbers_of(planned: Planned, row: RunRow | None) -> RunNumbers:
    """The numbers of ``planned`` from its latest store row (None: it never ran on this store)."""
    config = planned.config
    numbers = RunNumbers(key=planned.key, claims=list(planned.claims), preset=config.preset or "", method=config.method,
                         sparsity=config.sparsity, pattern=config.pattern, mode=config.mode,
                         lr=None if config.mode == "none" else config.lr, steps=config.steps)
    if row is None:
        return numbers
    numbers.status, numbers.run_id, numbers.duration = row.status, row.id, row.duration
    if row.status != "done" or not row.result:
        numbers.error = row.error or row.message or None
        return numbers
    result = row.result
    timings, memory = result.get("timings", {}), result.get("stage_memory_mb", {})
    train = timings.get("train")
    units = config.steps * (len(result.get("blocks", [])) if config.mode == "reconstruct" else 1)
    numbers.dense_ppl, numbers.pruned_ppl, numbers.final_ppl = (result.get("dense_ppl"), result.get("pruned_ppl"),
                                                                result.get("final_ppl"))
    numbers.pruned_sparsity, numbers.final_sparsity = result.get("sparsity"), result.get("final_sparsity")
    numbers.trainable_params = result.get("trainable_params")
    numbers.trainable_fraction = result.get("trainable_fraction")
    numbers.model_params = result.get("model_params") or result.get("total_params")
    numbers.adapter_params = int(result.get("trainable_by_category", {}).get("adapter", 0))
    numbers.curve_seconds = float(result.get("curve_seconds") or 0.0)
    numbers.curve = list(result.get("curve") or [])
    numbers.block_curves = [list(b.get("curve") or []) for b in result.get("blocks", [])] if config.mode == "reconstruct" else []
    numbers.train_seconds = None if train is None else train - numbers.curve_seconds
    numbers.seconds_per_step = numbers.train_seconds / units if train is not None and units else None
    numbers.train_peak_mb = memory.get("train")
    numbers.peak_mb = result.get("peak_memory_mb")
    numbers.diverged = result.get("diverged")
    numbers.notes = list(result.get("notes", []))
    numbers.device = result.get("device")
    numbers.zero_shot = dict(result.get("zero_shot") or {})
    return numbers
