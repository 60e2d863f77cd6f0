"""Predicted peak memory of every stage of a run, from the model's config alone (a meta-device skeleton, no weights).

The model counts what each stage holds at its peak, in bytes, on the run's device (on a CPU that is the whole
process: Python and the libraries too) and in CPU memory beside it when the device is a GPU:

- weights: the whole model (offload ``none``), or the parts outside the decoder blocks plus one block
  (``cpu``, ``disk``); the blocks themselves in CPU memory (``cpu``) or in files (``disk``);
- the dense reference of the layer errors (perp_engine.offload.dense_reference): the blocks again, in CPU memory beside
  a GPU, in files on a CPU device or with ``disk`` (then one block at a time);
- pruning: the calibration activations entering and leaving a block, one block's working set, Wanda's column
  norms or SparseGPT's Hessians (``in^2`` float32 per distinct input) and their Cholesky work;
- evaluation: one batch of logits (batch x seqlen x vocabulary) and one chunk's float32 log-softmax;
- retraining: every block on the device, the trainable tensors with their gradients and AdamW state, the
  activations kept for backward (all blocks', or with checkpointing the block inputs plus one block's), the
  chunked loss (perp_engine.model.lm_loss) and, for full retraining, gradients and AdamW state of every weight;
- reconstruction: one block's calibration inputs, targets and outputs and one chunk's backward.

The per-token activation sizes of training are counted from what a LLaMA block keeps for backward; the rest (the
CPU process baseline, inference's working set, retraining's head copies) is calibrated on measured stage peaks
(VmHWM, perp_engine.resources.memory_meter) of the embedded model and of random LLaMA models of the SmolLM2 family's
shapes; the scale bench (bench/scale_bench.py) checks the predictions against new measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import RunConfig
from ..data.corpora import MEASURE_WINDOWS
from ..model.lm_loss import CHUNK_LOGITS, chunk_positions
from ..model.load import DTYPES
from ..model.shape import ModelShape
from ..repair.subsets import TrainableReport
from .memory_meter import MIB

CPU_BASELINE = 420 * MIB  # a worker process with torch, transformers, peft and a tokenizer imported (measured)
LOAD_OVERHEAD = 0.15  # from_pretrained's transient copies on a CPU, as a share of the weights (measured)
# The corpus text and its token ids read from the token cache (measured). The first run on a corpus tokenizes
# it instead: ~400 MiB more for a ~3 MB text, once (not predicted: later runs read the cache).
DATA_TRANSIENT = 80 * MIB
# Activations autograd keeps per token per block in training, in units of hidden and of the widest width (LLaMA:
# the MLP's intermediate), times the activation dtype's bytes, with the lean norm and MLP forwards
# (perp_engine.repair.lean_activations): the two norms' inputs, attention's query and output, its key and value (a third
# of a hidden each at SmolLM2's 3 key-value heads of 9; 5 rounds the sum up), the MLP's gate and up; and, when the
# block linears train (whole weights or adapters), their inputs besides (q/k/v's, o_proj's, gate/up's, down_proj's).
# Checkpointing keeps the block inputs instead, plus one block's of these while it recomputes.
TRAIN_ACT_HIDDEN, TRAIN_ACT_WIDE = 5.0, 2.0
LINEAR_INPUTS_HIDDEN, LINEAR_INPUTS_WIDE = 3.0, 1.0
BLOCK_ACT_HIDDEN, BLOCK_ACT_WIDE = 6.0, 3.0  # one block's forward working set (inference)
ADAM_STATE = 2  # AdamW keeps two tensors per trained one
# Retraining's working set beyond activations, trained tensors and the loss's chunks, fitted to the measured
# train-stage peaks of the embedded model (bench/retrain_bench.py: perp, perp-masklora and full-ft, with and without
# checkpointing, all within 8%), not derived: copies of the output head's matrix made around the loss and the
# merge, and what the allocator keeps of freed blocks, in head matrices. (A batch of float32 logits' worth went when
# the loss began finding each chunk's gradients in its forward pass, 2.6 head matrices went when the processes
# began to start with perp_engine.resources.heap's tunables, and one more when the head LoRA's merge began building the
# merged head by rows, perp_engine.repair.adapters.merge.)
TRAIN_HEAD_COPIES = 1.0
FIT_MARGIN = 0.9  # share of a device's memory a run plans to use (the rest: allocator caches, CUDA context, others)
GPU_MEMORY = {"24 GB": 24 * 2**30, "80 GB": 80 * 2**30}  # the GPUs perp estimate reports on (RTX 4090, A100/H100)
FIT_RECIPES = {"prune": "none", "perp": "perp", "full-ft": "full-ft"}  # what runs there, named -> its preset


@dataclass(frozen=True)
class StageMemory:
    """Predicted peak of one stage: bytes on the run's device, bytes in CPU memory beside it (GPU runs only),
    and the named parts of the device figure."""

    stage: str
    device_bytes: float
    host_bytes: float
    parts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryEstimate:
    device: str  # "cpu" or "cuda"
    offload: str  # the offload mode the prediction is for
    stages: tuple[StageMemory, ...]

    @property
    def peak_device(self) -> float:
        return max(s.device_bytes for s in self.stages)

    @property
    def peak_host(self) -> float:
        return max(s.host_bytes for s in self.stages)

    def stage(self, name: str) -> StageMemory:
        return next(s for s in self.stages if s.stage == name)

    def fits(self, device_capacity: float, host_capacity: float | None = None) -> bool:
        """Whether every stage fits a device of ``device_capacity`` bytes (and its CPU memory, for a GPU)."""
        host_ok = host_capacity is None or self.device == "cpu" or self.peak_host <= host_capacity
        return self.peak_device <= device_capacity and host_ok


def predict_memory(config: RunConfig, shape: ModelShape, trainable: TrainableReport | None, device: str,
                   offload: str) -> MemoryEstimate:
    """The peak of each stage ``config`` runs through, with ``offload`` (not ``auto``) on ``device`` (cpu/cuda)."""
    m = _Terms(config, shape, trainable, device, offload)
    stages = [m.stage("load", weights=m.weights_loading, transient=m.load_transient),
              m.stage("data", weights=m.weights, transient=DATA_TRANSIENT if device == "cpu" else 0),
              m.stage("dense_eval", weights=m.weights, transient=m.eval_transient),
              m.stage("prune", weights=m.weights, transient=m.prune_transient, dense=True),
              m.stage("pruned_eval", weights=m.weights, transient=m.eval_transient, dense=True)]
    if config.mode != "none":
        train = m.retrain_transient if config.mode == "retrain" else m.reconstruct_transient
        weights = m.all_weights if config.mode == "retrain" else m.weights
        stages.append(m.stage("train", weights=weights, transient=train, dense=True))
        stages.append(m.stage("final_eval", weights=m.weights + m.merged_head,
                              transient=max(m.eval_transient, m.measure_transient), dense=True))
    return MemoryEstimate(device=device, offload=offload, stages=tuple(stages))


class _Terms:
    """The byte counts of one config on one shape; each property is one named part."""

    def __init__(self, config: RunConfig, shape: ModelShape, trainable: TrainableReport | None, device: str,
                 offload: str):
        self.c, self.s, self.trainable, self.device = config, shape, trainable, device
        self.offload = "none" if offload == "cpu" and device == "cpu" else offload
        self.wb = DTYPES[config.dtype].itemsize
        self.base = CPU_BASELINE if device == "cpu" else 0.0

    def stage(self, name: str, *, weights: float, transient: float, dense: bool = False) -> StageMemory:
        """``dense``: the stage holds the dense reference (beside a GPU in CPU memory, unless it is on disk; on a
        CPU device it is on disk and its one block read back is part of the work)."""
        parts = {"process": self.base, "weights": weights, "work": transient}
        host = 0.0
        if self.device != "cpu":
            host = CPU_BASELINE + self.host_weights + (self.dense_reference if dense and self.offload != "disk" else 0.0)
        return StageMemory(name, sum(parts.values()), host, {k: v for k, v in parts.items() if v})

    # -- weights ------------------------------------------------------------------------------------------------

    @property
    def full(self) -> float:
        return self.s.total_params * self.wb

    @property
    def block(self) -> float:
        return self.s.largest_block_params * self.wb

    @property
    def outside_blocks(self) -> float:
        return (self.s.total_params - self.s.block_params) * self.wb

    @property
    def weights(self) -> float:
        """On the device while a stage works block by block."""
        return self.full if self.offload == "none" else self.outside_blocks + self.block

    @property
    def all_weights(self) -> float:
        """On the device while retraining: every block, whatever the offloading."""
        return self.full

    @property
    def weights_loading(self) -> float:
        return self.full if self.device == "cpu" or self.offload == "none" else self.outside_blocks

    @property
    def host_weights(self) -> float:
        return self.s.block_params * self.wb if self.offload == "cpu" else 0.0

    @property
    def merged_head(self) -> float:
        """A tied head whose LoRA was merged has its own matrix after training (the embeddings keep theirs)."""
        merged = self.s.tied_head and "head-lora" in self.c.train and self.c.mode != "none"
        return self.s.head_params * self.wb if merged else 0.0

    @property
    def dense_reference(self) -> float:
        return self.s.block_params * self.wb

    @property
    def load_transient(self) -> float:
        """On a CPU: the checkpoint's pages, mapped while the weights are cast when it is saved in another dtype,
        else from_pretrained's smaller transient copies."""
        if self.device != "cpu":
            return 0.0
        saved = self.s.saved_itemsize
        return self.s.total_params * saved if saved and saved != self.wb else LOAD_OVERHEAD * self.full

    # -- work -----------------------------------------------------------------------------------------------------

    def _block_forward(self, tokens: int) -> float:
        return tokens * (BLOCK_ACT_HIDDEN * self.s.hidden + BLOCK_ACT_WIDE * self.s.widest) * self.wb

    @property
    def eval_transient(self) -> float:
        tokens = self.c.eval_batch_size * self.c.seqlen
        chunk = min(self.c.seqlen, chunk_positions(self.s.vocab)) * self.s.vocab
        logits = tokens * self.s.vocab * self.wb + 2 * chunk * 4
        return logits + self._block_forward(tokens)

    @property
    def measure_transient(self) -> float:
        """Layer errors (perp_engine.evaluation.layer_errors): both models' block inputs and outputs of the windows, the dense block,
        a block forward, the dense linears' outputs of one chunk (kept for the current block's hooks), and one
        comparison: a dense linear's output on the same input, a float32 difference and its square."""
        tokens = self.c.batch_size * self.c.seqlen
        windows = MEASURE_WINDOWS * self.c.seqlen * self.s.hidden * self.wb
        recorded = tokens * sum(o for o, _ in self.s.first_block_linears) * self.wb
        comparison = tokens * self.s.widest * (self.wb + 2 * 4)
        return 5 * windows + self.block + self._block_forward(tokens) + recorded + comparison

    @property
    def prune_transient(self) -> float:
        c, s = self.c, self.s
        activations = 2 * c.calib_samples * c.seqlen * s.hidden * self.wb
        work = self._block_forward(c.batch_size * c.seqlen)
        if c.method == "sparsegpt":
            inputs = sorted({i for _, i in s.first_block_linears})
            work += sum(4 * i * i for i in inputs) + 3 * 4 * s.widest ** 2 + 3 * 4 * max(o * i for o, i in s.linears)
        elif c.method == "wanda":
            work += 3 * 4 * max(o * i for o, i in s.linears)
        return activations + max(work, self.measure_transient)

    @property
    def retrain_transient(self) -> float:
        c, s = self.c, self.s
        tokens = c.batch_size * c.seqlen
        per_block = self._kept_per_block(tokens)
        if c.grad_checkpointing:
            activations = s.n_blocks * tokens * s.hidden * self.wb + per_block
        else:
            activations = s.n_blocks * per_block
        loss = 3 * CHUNK_LOGITS * 4
        fitted = TRAIN_HEAD_COPIES * s.head_params * self.wb
        return activations + loss + fitted + self._trained()

    @property
    def reconstruct_transient(self) -> float:
        c, s = self.c, self.s
        calibration = 3 * c.calib_samples * c.seqlen * s.hidden * self.wb
        backward = self._kept_per_block(c.batch_size * c.seqlen)
        per_block_trained = self._trained() / max(1, s.n_blocks)
        return calibration + backward + self.block + per_block_trained

    def _kept_per_block(self, tokens: int) -> float:
        """Bytes of activations one block keeps for backward over ``tokens`` tokens."""
        hidden, wide = TRAIN_ACT_HIDDEN, TRAIN_ACT_WIDE
        if "full" in self.c.train or self.c.adapter != "none":
            hidden, wide = hidden + LINEAR_INPUTS_HIDDEN, wide + LINEAR_INPUTS_WIDE
        return tokens * (hidden * self.s.hidden + wide * self.s.widest) * self.wb

    def _trained(self) -> float:
        """Trainable tensors beyond the weights: a head copy when a tied head is untied, adapters, their
        gradients and AdamW state (float32 for adapters, the weights' dtype otherwise)."""
        if self.trainable is None:
            return 0.0
        counts = self.trainable.by_category
        adapters = counts.get("adapter", 0) + counts.get("head-lora", 0)
        weights = self.trainable.trainable - adapters
        head_copy = self.s.head_params * self.wb if self.s.tied_head and self.c.untie_head and (
            "head" in self.c.train or "head-lora" in self.c.train) else 0.0
        return head_copy + adapters * 4 * (2 + ADAM_STATE) + weights * self.wb * (1 + ADAM_STATE)


def block_working_set(config: RunConfig, shape: ModelShape) -> float:
    """Bytes of one decoder block's pruning work: its weights, the calibration activations entering and leaving
    it, and the method's statistics (Wanda's norms, SparseGPT's Hessians and their factorisation)."""
    terms = _Terms(config, shape, None, "cpu", "none")
    return terms.block + terms.prune_transient


def model_facts(config: RunConfig) -> tuple[ModelShape, TrainableReport | None]:
    """The shape of ``config``'s model and what it trains, from its skeleton (no weights read)."""
    from ..model.load import load_skeleton
    from .estimate import trainable_report

    model = load_skeleton(config.model, trust_remote_code=config.trust_remote_code)
    return ModelShape.of(model), trainable_report(model, config)


def estimate_memory(config: RunConfig, offload: str | None = None, device: str | None = None) -> MemoryEstimate:
    """:func:`predict_memory` for ``config``'s model (its skeleton: no weights read), on the device the run would
    use (or ``device``) with ``offload`` (default: the config's; ``auto`` is resolved first)."""
    from ..model.load import resolve_device

    device_type = device or resolve_device(config.device).type
    shape, report = model_facts(config)
    mode = offload or config.offload
    if mode == "auto":
        mode = choose_offload(config, shape, report, device_type, capacity(device_type))[0]
    return predict_memory(config, shape, report, device_type, mode)


def capacity(device_type: str, index: int | None = None) -> tuple[float, float]:
    """(bytes the device can hold now, bytes of CPU memory free now): free GPU memory, or on a CPU the memory
    available to this process (what is free plus what it already holds)."""
    import psutil

    host = psutil.virtual_memory().available + psutil.Process().memory_info().rss
    if device_type == "cuda":
        import torch

        return float(torch.cuda.mem_get_info(index)[0]), float(host)
    return float(host), float(host)


def offload_modes(device_type: str) -> tuple[str, ...]:
    """The offload modes that differ on ``device_type``, leanest last (on a CPU, ``cpu`` is ``none``)."""
    return ("none", "disk") if device_type == "cpu" else ("none", "cpu", "disk")


def choose_offload(config: RunConfig, shape: ModelShape, trainable: TrainableReport | None, device_type: str,
                   room: tuple[float, float], margin: float = FIT_MARGIN) -> tuple[str, MemoryEstimate]:
    """The first of none, cpu, disk whose predicted peaks fit ``margin`` of ``room`` (device, CPU memory), with
    its estimate; disk when none fits (the estimate then says by how much)."""
    for mode in offload_modes(device_type):
        estimate = predict_memory(config, shape, trainable, device_type, mode)
        if estimate.fits(margin * room[0], margin * room[1]):
            return mode, estimate
    return "disk", estimate


@dataclass(frozen=True)
class Fit:
    """Whether a run fits a device: ``offload`` is the first mode that fits (None when none does), ``need`` the
    predicted device peak with that mode (or with the leanest mode when none fits)."""

    offload: str | None
    need: float

    @property
    def fits(self) -> bool:
        return self.offload is not None


def recipe_config(config: RunConfig, preset: str) -> RunConfig:
    """``config`` with the repair of ``preset`` instead of its own (model, sizes, dtype and method kept)."""
    from ..presets import PRESETS

    recipe_fields = {name for fields in PRESETS.values() for name in fields}
    kept = {k: v for k, v in config.to_dict().items() if k not in recipe_fields and k != "preset"}
    return RunConfig.create(preset, **kept)


def gpu_fits(config: RunConfig, gpus: dict[str, float] | None = None) -> dict[str, dict[str, Fit]]:
    """For each recipe of ``FIT_RECIPES`` run with ``config``'s model and sizes, whether it fits each GPU of
    ``gpus`` (name -> bytes; default ``GPU_MEMORY``) with the least offloading, counting the GPU's memory only
    (the CPU memory beside it is the user's machine's, unknown here)."""
    fits: dict[str, dict[str, Fit]] = {}
    for name, preset in FIT_RECIPES.items():
        recipe = recipe_config(config, preset)
        shape, report = model_facts(recipe)
        estimates = [predict_memory(recipe, shape, report, "cuda", m) for m in offload_modes("cuda")]
        fits[name] = {}
        for gpu, size in (gpus or GPU_MEMORY).items():
            fitting = next((e for e in estimates if e.peak_device <= FIT_MARGIN * size), None)
            fits[name][gpu] = (Fit(fitting.offload, fitting.peak_device) if fitting
                               else Fit(None, estimates[-1].peak_device))
    return fits


@dataclass(frozen=True)
class MemoryPlan:
    """What ``perp estimate`` and the app say about a run's memory on this machine before it starts: the peaks of
    every stage with each offload mode on the run's device, what that device (and the CPU memory beside it) can
    hold now, and the mode ``auto`` picks."""

    device: str
    room: tuple[float, float]  # (device bytes, CPU memory bytes) available now
    modes: dict[str, MemoryEstimate]  # none, cpu, disk
    auto: str

    def fits_here(self, mode: str) -> bool:
        return self.modes[mode].fits(FIT_MARGIN * self.room[0], FIT_MARGIN * self.room[1])

    def to_dict(self) -> dict:
        gib = 2**30
        return {
            "device": self.device,
            "available_gib": {"device": round(self.room[0] / gib, 2), "host": round(self.room[1] / gib, 2)},
            "fit_margin": FIT_MARGIN,
            "offload": {mode: {"fits_here": self.fits_here(mode), "peak_device_gib": round(e.peak_device / gib, 3),
                               "peak_host_gib": round(e.peak_host / gib, 3),
                               "stages": {s.stage: {"device_gib": round(s.device_bytes / gib, 3),
                                                    "host_gib": round(s.host_bytes / gib, 3)} for s in e.stages}}
                        for mode, e in self.modes.items()},
            "auto": self.auto,
        }


def plan_memory(config: RunConfig, device: str | None = None) -> MemoryPlan:
    """The :class:`MemoryPlan` of ``config`` on the device it would run on (or ``device``); no weights read."""
    from ..model.load import resolve_device

    device_type = device or resolve_device(config.device).type
    shape, report = model_facts(config)
    modes = {mode: predict_memory(config, shape, report, device_type, mode) for mode in ("none", "cpu", "disk")}
    room = capacity(device_type)
    auto = choose_offload(config, shape, report, device_type, room)[0]
    return MemoryPlan(device=device_type, room=room, modes=modes, auto=auto)
