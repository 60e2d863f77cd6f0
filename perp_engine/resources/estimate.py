"""What a run will train and roughly how long it will take, before it runs: no weights are read.

The model is built on the meta device (:func:`perp_engine.model.load.load_skeleton`), the run's adapters are
attached and its subsets selected exactly as the pipeline does, so the trainable-parameter count is exact.

The time is a cost model, not a measurement: every stage is counted in floating-point operations of the
matrix products it performs (2 FLOPs per weight per token for a forward pass, attention included), divided by
an effective throughput per device, plus a fixed cost for loading. Stages and their work:

- load: start the worker process (``START_S``: importing torch and transformers) and read the weights
  (``LOAD_S`` + ``LOAD_S_PER_PARAM`` x parameters; the embedded model's first use converts its GGUF once,
  about ``GGUF_CONVERT_S`` more, which is only noted).
- data: tokenize the evaluation and calibration text (``DATA_S``).
- dense_eval, pruned_eval, final_eval: one forward over ``eval_tokens`` (whole windows) each; final_eval
  also measures the per-layer errors after repair (as the pipeline reports it).
- prune: Wanda and SparseGPT pass the calibration tokens through every block three times (capturing the
  inputs, statistics, outputs of the pruned block; with ``sequential=layer`` the statistics and the outputs are
  one pass; magnitude and random need none), then the per-layer
  errors are measured on ``MEASURE_WINDOWS`` held-out sequences (per block: the dense block on its own and on
  the pruned activations, the pruned block, and each dense linear again for the local error: about four
  block passes). SparseGPT adds its
  Hessian and OBS updates (~2 d_in^2 per token and 2 d_out d_in^2 + d_in^3 per layer, plus its per-column
  loop, ``SPARSEGPT_S_PER_COLUMN``).
- train, mode retrain: steps x batch x accumulation x seqlen tokens, forward + backward to the activations
  (2 x forward) + weight gradients of what trains, + a dense forward more with gradient checkpointing,
  + the adapters' per-step cost of forming their dense update (``6 r`` FLOPs per adapted weight).
- train, mode reconstruct: per block, three passes of the calibration set (dense target, before, after) and
  ``steps`` forward + backward passes over one chunk of ``batch_size`` sequences.
- train, learning curve (``eval_every``): one point at step 0, every ``eval_every`` steps and after the last
  (:func:`curve_points`); retraining's point is a perplexity of the evaluation tokens, reconstruction's a pass of
  the measurement windows through the block (and one more per block for the dense target and the next inputs).
- dense_zero_shot, pruned_zero_shot, final_zero_shot (each model the config scores): per task, the docs scored
  times the tokens the model reads per doc (``ZeroShotTask.tokens_per_doc``, measured over each whole split),
  one forward each at ``ZERO_SHOT_SEQLEN``, plus ``ZERO_SHOT_TASK_S`` per task (lm-eval builds the task's
  requests, the docs are read).

Calibration: the CPU rate comes from the benches of the embedded model (SmolLM2-135M, float32, torch 2.13) on
the 2-core Intel Xeon host of 2026-12-06 (quiet, 2 threads): perplexity 909 tokens/s (prune_bench: 252 GFLOP/s
in this model's count), zero-shot 736 tokens/s over the seven tasks (zero_shot_bench: ~214), perp retraining
2.83 s per step of 4 x 256 tokens (retrain_bench: ~202), full retraining 7.02 s per step (~122: its optimizer
step over every weight is memory-bound, so it comes out ~1.6x faster than it is). The earlier constant (45
GFLOP/s, five shared-machine runs on an AMD EPYC host) predicted these 4.5-5x too slow on this host: hosts differ,
so take the CPU constants as +-2x. SparseGPT's column loop: ``SPARSEGPT_S_PER_COLUMN``. CPU rates scale with the number of torch threads. The GPU rates are
conservative guesses for a laptop-class GPU, not measurements. The estimate is meant to tell a 30-second
run from a 30-minute one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import RunConfig
from ..data.sampling import MEASURE_WINDOWS
from ..data.zero_shot_tasks import TASKS, scored_docs
from ..errors import PerpError
from ..model.blocks import find_decoder_blocks
from ..model.load import EMBEDDED_MODELS, load_skeleton, resolve_device
from ..model.parameters import trainable_text
from ..model.shape import ModelShape
from ..progress import STAGES
from ..pruning.sequential import needs_calibration
from ..repair.adapters import attach_adapters
from ..repair.subsets import TrainableReport, select_trainable
from .memory_model import one_pass_chunks

THROUGHPUT = {"cpu": 200e9, "cuda": 8e12, "mps": 1.5e12}  # effective FLOP/s of a transformer pass, float32
CPU_THREADS_CALIBRATED = 2
START_S = 6.0
LOAD_S = 3.0
LOAD_S_PER_PARAM = 2e-8
GGUF_CONVERT_S = 30.0
DATA_S = 2.0
# SparseGPT's per-column loop (small ops, barely parallel), per input column per layer: prune_bench on the same host,
# SparseGPT's stage 25.0 s for the embedded model's 149,760 input columns (32 x 256 calibration tokens), ~12 s of it
# beyond the calibration passes and Hessians (6e-4 before, from the AMD host: 5x slower than measured here)
SPARSEGPT_S_PER_COLUMN = 1e-4
DSNOT_FLOPS = 300  # a DSnoT cycle's element-wise passes, as matmul-equivalent FLOPs per weight at THROUGHPUT's rate
# (50 cycles on a 4096 x 4096 linear took about 1.4 s on 2 CPU cores)
ZERO_SHOT_SEQLEN = 128  # a typical zero-shot request's length in tokens (the seven tasks read 43-313 tokens per doc)
ZERO_SHOT_TASK_S = 1.0


@dataclass(frozen=True)
class Estimate:
    """Counts and predicted seconds of one run. ``trainable`` is None for a prune-only run."""

    trainable: TrainableReport | None
    total_params: int
    seconds: float
    breakdown: dict[str, float]
    device: str
    notes: list[str] = field(default_factory=list)

    @property
    def trainable_params(self) -> int:
        return self.trainable.trainable if self.trainable else 0

    @property
    def trainable_fraction(self) -> float:
        """Of the model's own parameters (perp_engine.model.parameters.trainable_share)."""
        return self.trainable.fraction if self.trainable else 0.0

    @property
    def model_params(self) -> int:
        """The model's own parameters: before adapters and before a tied head gets its own copy."""
        return self.trainable.model_params if self.trainable else self.total_params

    @property
    def trainable_text(self) -> str | None:
        """``0.618% of the model's 134.5M parameters (+ 795.6k adapter weights, + untied head 28.3M)``; None
        for a prune-only run."""
        report = self.trainable
        return trainable_text(report.trainable, report.model_params, report.adapter_params,
                              report.head_copy_params) if report else None


def estimate_run(config: RunConfig, *, threads: int | None = None) -> Estimate:
    """Count what ``config`` trains and predict its wall time per stage on the device it would run on.

    PerpError for a model that cannot be read or a recipe that does not fit it (e.g. a rank above a layer's size).
    """
    device = resolve_device(config.device)
    model = load_skeleton(config.model, trust_remote_code=config.trust_remote_code)
    shape = ModelShape.of(model)
    report = trainable_report(model, config)
    rate = throughput(device.type, threads)
    breakdown = stage_seconds(config, shape, report, rate)
    notes = []
    if config.model in EMBEDDED_MODELS:
        notes.append(f"the embedded model's first load converts its GGUF once (about {GGUF_CONVERT_S:.0f} s more)")
    if report is not None:
        notes.extend(report.notes)
    if (chunks := one_pass_chunks(config, shape)) is not None:
        notes.append(chunks)
    return Estimate(trainable=report, total_params=report.total if report else shape.total_params,
                    seconds=round(sum(breakdown.values()), 1), breakdown=breakdown, device=str(device), notes=notes)


def recorded_estimate(config: RunConfig, log: Callable[[str], None] = lambda line: None) -> dict:
    """The estimate a run records as it starts (``RunResult.estimate``), to be read beside the time it took;
    empty when the config cannot be estimated (the run then fails or succeeds on its own)."""
    try:
        estimate = estimate_run(config)
    except (PerpError, OSError, ValueError) as err:  # a model it cannot read: the run says so on its own
        log(f"no time estimate: {err}")
        return {}
    log(f"estimated {format_seconds(estimate.seconds)} on {estimate.device}")
    return {"seconds": estimate.seconds, "breakdown": dict(estimate.breakdown), "device": estimate.device,
            "threads": torch.get_num_threads()}


def estimate_text(estimate: Mapping | None, took: float | None) -> str | None:
    """``estimated 3.1 min, took 2.7 min`` from a recorded estimate and the run's wall seconds; None without an
    estimate (runs recorded before it was kept)."""
    if not estimate or estimate.get("seconds") is None:
        return None
    text = f"estimated {format_seconds(estimate['seconds'])}"
    return text + (f", took {format_seconds(took)}" if took is not None else "")


def trainable_report(model: nn.Module, config: RunConfig) -> TrainableReport | None:
    """Attach the run's adapters to ``model`` (a skeleton) and select its subsets as the pipeline will."""
    if config.mode == "none":
        return None
    if config.adapter != "none":
        attach_adapters(model, config.adapter, rank=config.rank, alpha=config.alpha,
                        target_modules=config.target_modules, seed=config.seed)
    if config.mode == "reconstruct":
        _, blocks = find_decoder_blocks(model)
        return select_trainable(model, config.train, untie=False, scope=blocks)
    return select_trainable(model, config.train, untie=config.untie_head)


def throughput(device_type: str, threads: int | None = None) -> float:
    """Effective FLOP/s on ``device_type``; CPU rates scale with the torch thread count."""
    rate = THROUGHPUT.get(device_type, THROUGHPUT["cpu"])
    if device_type == "cpu":
        rate *= (threads or torch.get_num_threads()) / CPU_THREADS_CALIBRATED
    return rate


def stage_seconds(config: RunConfig, shape: ModelShape, report: TrainableReport | None, rate: float) -> dict[str, float]:
    """Predicted seconds of each stage the run goes through, in pipeline order."""
    seqlen = config.seqlen
    eval_tokens = (config.eval_tokens // seqlen) * seqlen
    forward = shape.forward_flops(seqlen)
    block_forward = shape.forward_flops(seqlen, with_head=False)
    measure = 4 * MEASURE_WINDOWS * seqlen * block_forward / rate
    seconds = {
        "load": START_S + LOAD_S + LOAD_S_PER_PARAM * shape.total_params,
        "data": DATA_S,
        "dense_eval": eval_tokens * forward / rate,
        "prune": prune_flops(config, shape) / rate + measure
        + (SPARSEGPT_S_PER_COLUMN * sum(i for _, i in shape.linears) if config.method == "sparsegpt" else 0.0),
        "pruned_eval": eval_tokens * forward / rate,
    }
    if config.mode != "none":
        seconds["train"] = (train_flops(config, shape, report) + curve_flops(config, shape)) / rate
        seconds["final_eval"] = measure + eval_tokens * forward / rate
    for which in config.zero_shot_models:
        seconds[f"{which}_zero_shot"] = zero_shot_seconds(config, shape, rate)
    return {stage: round(seconds[stage], 1) for stage in STAGES if stage in seconds}


def zero_shot_seconds(config: RunConfig, shape: ModelShape, rate: float) -> float:
    """One model's zero-shot scoring on the config's tasks and limit."""
    tokens = sum(TASKS[t].tokens_per_doc * scored_docs(TASKS[t].docs, config.zero_shot_limit)
                 for t in config.zero_shot)
    return tokens * shape.forward_flops(ZERO_SHOT_SEQLEN) / rate + ZERO_SHOT_TASK_S * len(config.zero_shot)


def prune_flops(config: RunConfig, shape: ModelShape) -> float:
    """Calibration passes through the blocks (none for data-free methods; one fewer in layer mode), plus SparseGPT's Hessians and
    weight updates; OWL's allocation adds its pass over the dense blocks (statistics, then outputs); DSnoT its swap
    cycles, counted on every linear (an upper bound when it skips the MLP, its default)."""
    if not needs_calibration(config.method, config.allocation, config.refine):
        return 0.0
    tokens = config.calib_samples * config.seqlen
    passes = (2 if config.sequential == "layer" else 3) + (2 if config.allocation == "owl" else 0)
    flops = passes * tokens * shape.forward_flops(config.seqlen, with_head=False)
    if config.method == "sparsegpt":
        flops += sum(2 * tokens * i * i + 2 * o * i * i + i ** 3 for o, i in shape.linears)
    if config.refine == "dsnot":
        flops += DSNOT_FLOPS * config.dsnot_max_cycles * sum(o * i for o, i in shape.linears)
    return flops


def train_flops(config: RunConfig, shape: ModelShape, report: TrainableReport | None) -> float:
    """FLOPs of retraining (whole model, LM loss) or of block-wise reconstruction."""
    share = report.trainable / report.total if report and report.total else 0.0  # of the weights a pass touches
    adapted = shape.block_linear_params if config.adapter != "none" else 0
    checkpointing = 1.0 if config.grad_checkpointing else 0.0
    if config.mode == "reconstruct":
        step_tokens = config.batch_size * config.seqlen
        calib_tokens = config.calib_samples * config.seqlen
        block = shape.forward_flops(config.seqlen, with_head=False)
        return (3 * calib_tokens + config.steps * step_tokens * (2 + share)) * block + config.steps * 6 * config.rank * adapted
    tokens = config.steps * config.batch_size * config.grad_accum * config.seqlen
    per_token = shape.forward_flops(config.seqlen) * (2 + share + checkpointing)
    return tokens * per_token + config.steps * config.grad_accum * 6 * config.rank * adapted


def curve_points(steps: int, every: int) -> int:
    """How many points a learning curve of ``steps`` with a point every ``every`` steps has (0 without one): step 0,
    each multiple of ``every``, and the last step."""
    return 0 if not every else 1 + steps // every + (steps % every != 0)


def curve_flops(config: RunConfig, shape: ModelShape) -> float:
    """What the learning curve costs (nothing without ``eval_every``)."""
    points = curve_points(config.steps, config.eval_every)
    if not points:
        return 0.0
    if config.mode == "reconstruct":
        tokens = MEASURE_WINDOWS * config.seqlen
        return (points + 2) * tokens * shape.forward_flops(config.seqlen, with_head=False)
    eval_tokens = (config.eval_tokens // config.seqlen) * config.seqlen
    return points * eval_tokens * shape.forward_flops(config.seqlen)


def sweep_seconds(configs: Sequence[RunConfig], breakdowns: Sequence[Mapping[str, float] | None]) -> float:
    """Predicted seconds of a set of runs (a sweep, the paper's set) that share the store's artifact cache, from
    each run's :attr:`Estimate.breakdown`: the dense perplexity of one model and evaluation setting is computed
    once, and so are the pruning and the pruned perplexity of one pruning setting (the keys follow the
    pipeline's cache). A missing breakdown (None, or past the end of ``breakdowns``) counts as the mean of the
    others."""
    breakdowns = [*breakdowns, *[None] * (len(configs) - len(breakdowns))]
    known = [b for b in breakdowns if b]
    if not known:
        return 0.0
    mean = {stage: sum(b.get(stage, 0.0) for b in known) / len(known) for stage in {s for b in known for s in b}}
    seen: set[tuple] = set()
    total = 0.0
    for config, breakdown in zip(configs, breakdowns):
        dense = (config.model, config.dtype, config.device, config.dataset, config.seqlen, config.eval_tokens)
        pruned = (*dense, config.calib_dataset, *config.prune_settings.values())
        scored = (config.zero_shot, config.zero_shot_limit)
        reused = (({"dense_eval"} if dense in seen else set()) | ({"prune", "pruned_eval"} if pruned in seen else set())
                  | ({"dense_zero_shot"} if (dense, scored) in seen else set())
                  | ({"pruned_zero_shot"} if (pruned, scored) in seen else set()))
        seen |= {dense, pruned, (dense, scored), (pruned, scored)}
        total += sum(v for stage, v in (breakdown or mean).items() if stage not in reused)
    return total


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
