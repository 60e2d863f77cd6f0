"""Predicted peak memory of every stage of a run, from the model's config alone (a meta-device skeleton, no weights).

Each stage's peak is a sum of terms in bytes, on the run's device (on a CPU that is the whole process: Python and
the libraries too) and, when the device is a GPU, in the CPU memory beside it:

- process: on a CPU, the worker process with its libraries imported (``CPU_BASELINE``);
- weights: the whole model (offload ``none``, and retraining with any offload), or the parts outside the decoder
  blocks plus one block (``cpu``, ``disk``: the other blocks wait in CPU memory or in files); loading on a CPU
  also holds transient copies of the weights;
- the dense reference of the layer errors (perp_engine.offload.dense_reference): the blocks again, in CPU memory
  beside a GPU, in files on a CPU device or with ``disk`` (then one block at a time is read back);
- activations: what one block's forward works on (inference), what autograd keeps for backward per block
  (retraining, reconstruction), the calibration activations entering and leaving a block (pruning) and the
  hidden states of the measurement windows (layer errors);
- pruning statistics: Wanda's and SparseGPT's float32 work on the largest linear, SparseGPT's Hessians
  (``in^2`` float32 per distinct input) and their Cholesky factorisation;
- logits: one evaluation batch's logits in the weights' dtype and one chunk of them in float32; in training the
  chunked loss (perp_engine.model.lm_loss) holds one chunk's float32 logits and their gradients at a time;
- trained tensors (perp_engine.repair.training_loop, perp_engine.repair.master), at the optimizer step: what
  AdamW updates (a half-precision tensor's float32 master copy when ``master_weights``, else the tensor itself),
  its gradient and two moments in that dtype, the tensor itself where it is not a model weight (adapters: float32;
  the head LoRA: the head's dtype), a rollback copy of small trainables, and on a GPU AdamW's foreach step's copy
  of every second moment; for full retraining of a bfloat16 model that is 16 bytes per weight besides the weight
  (20 on a GPU), for every weight;
- copies: of the output head's matrix in retraining (fitted, ``TRAIN_HEAD_COPIES``), and a tied head's own
  matrix once its LoRA is merged.

What training keeps for backward is counted from what a LLaMA block keeps. The other constants are fitted to
measured stage peaks (VmHWM, perp_engine.resources.memory_meter): the process baseline, loading's and the data
stage's transients and inference's forward working set to bench/memory_bench.py (real runs of the embedded model
and of a random LLaMA of SmolLM2-360M's shape), retraining's head copies to the train stages of
bench/retrain_bench.py; bench/scale_bench.py checks the predictions on larger shapes. memory_bench.py also runs a
hold-out set (other families and sizes) that no constant was fitted to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import RunConfig
from ..data.sampling import MEASURE_WINDOWS
from ..data.zero_shot_tasks import TASKS
from ..evaluation.zero_shot import batch_size_for
from ..model.lm_loss import CHUNK_LOGITS, chunk_positions
from ..model.load import DTYPES
from ..model.shape import ModelShape
from ..pruning.sequential import needs_calibration
from ..repair.master import HALF
from ..repair.retrain import SNAPSHOT_MAX_SHARE
from ..repair.subsets import TrainableReport
from .memory_meter import GIB, MIB

FLOAT32 = 4  # bytes
DSNOT_MATRICES = 14  # DSnoT's work on a linear, in float32 matrices of its size, counted from perp_engine/pruning/dsnot.py
# (dense and current weights, their products with the input sums, the regrowth and pruning scores, three int64 orders)
# The next four are calibrated on the stage peaks of bench/memory_bench.py (its results list every stage's error).
CPU_BASELINE = 420 * MIB  # a worker process with torch, transformers, peft and a tokenizer imported
LOAD_OVERHEAD = 0.15  # from_pretrained's transient copies on a CPU, as a share of the weights
# The corpus text and its token ids read from the token cache. The first run on a corpus tokenizes it instead:
# ~400 MiB more for a ~3 MB text, once (not predicted: later runs read the cache).
DATA_TRANSIENT = 80 * MIB
# One block's forward working set in inference, per token, in hidden widths and in the widest width (LLaMA: the
# MLP's intermediate), times the weights' bytes.
FORWARD_HIDDEN, FORWARD_WIDE = 6.0, 3.0
# What a calibration chunk paused at a linear keeps per token in one-pass pruning (sequential=layer), counted from a
# LLaMA block at its widest pauses: down_proj's input (the residual, the normed MLP input and act(gate) * up), and
# o_proj's (the residual, the normed input, q, k, v and the attention output: as much at SmolLM2's shapes)
PAUSED_HIDDEN, PAUSED_WIDE = 2.0, 1.0
# Measured over counted: memory_bench's one-pass cases (32 windows in 8 chunks) peak 97-136 MiB above their block-mode
# twins where the count gives 84 MiB; the heap holds what the interleaved chunks free and allocate around their tensors
PAUSED_MEASURED = 1.9
# Counted, not fitted: the activations autograd keeps per token per block in training, in the same units, with the
# lean norm and MLP forwards (perp_engine.repair.lean_activations): the two norms' inputs, attention's query and
# output, its key and value (a third of a hidden each at SmolLM2's 3 key-value heads of 9; 5 rounds the sum up),
# the MLP's gate and up.
KEPT_HIDDEN, KEPT_WIDE = 5.0, 2.0
# Kept besides when the block linears train (whole weights or adapters): their inputs (q/k/v's, o_proj's,
# gate/up's, down_proj's).
LINEAR_INPUTS_HIDDEN, LINEAR_INPUTS_WIDE = 3.0, 1.0
# Counted, not fitted: on a CPU, attention whose probabilities drop out in training (GPT-2's attn_pdrop) runs SDPA's
# math path, which keeps per block and token three float32 rows of heads x seqlen (the probabilities, their dropout,
# the batched matrix the product with the values reads) and float32 batched copies of the query, key and value
# (GPT-2 small's block, in float32 and bfloat16). Without that dropout (LLaMA, OPT, Qwen2), or on a GPU, whose
# kernels drop out inside, attention keeps no such matrix.
ATTENTION_MATRICES, ATTENTION_INPUTS = 3, 3
ADAM_STATE = 2  # AdamW keeps two moments per tensor it updates, in that tensor's dtype
# Fitted to the train-stage peaks of bench/retrain_bench.py (the embedded model: perp, perp-masklora and full-ft,
# with and without checkpointing): retraining's working set beyond its activations, trained tensors and loss
# chunks, in output-head matrices: the copies of the head's matrix made around the loss and the merge, and what
# the allocator keeps of freed blocks.
TRAIN_HEAD_COPIES = 1.0
FIT_MARGIN = 0.9  # share of a device's memory a run plans to use (the rest: allocator caches, CUDA context, others)
GPU_MEMORY = {"24 GB": 24 * GIB, "80 GB": 80 * GIB}  # the GPUs perp estimate reports on (RTX 4090, A100/H100)
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
    data = DATA_TRANSIENT if device == "cpu" else 0  # beside a GPU the corpus is in CPU memory, not counted
    scored = config.zero_shot_models  # each scored after its perplexity, holding what that stage holds

    def zero_shot(which: str) -> list[StageMemory]:
        weights = m.resident_weights + (m.merged_head if which == "final" else 0)
        return [m.stage(f"{which}_zero_shot", weights=weights, work=m.zero_shot_transient,
                        dense=which != "dense")] if which in scored else []

    stages = [m.stage("load", weights=m.loading_weights, work=m.load_transient),
              m.stage("data", weights=m.resident_weights, work=data),
              m.stage("dense_eval", weights=m.resident_weights, work=m.eval_transient),
              *zero_shot("dense"),
              m.stage("prune", weights=m.resident_weights, work=m.prune_transient, dense=True),
              m.stage("pruned_eval", weights=m.resident_weights, work=m.eval_transient, dense=True),
              *zero_shot("pruned")]
    if config.mode != "none":
        retrains = config.mode == "retrain"  # then every block is on the device, whatever the offloading
        stages.append(m.stage("train", weights=m.all_weights if retrains else m.resident_weights,
                              trained=m.trained() if retrains else m.trained() / max(1, shape.n_blocks),
                              work=m.retrain_transient if retrains else m.reconstruct_transient, dense=True))
        stages.append(m.stage("final_eval", weights=m.resident_weights + m.merged_head,
                              work=max(m.eval_transient, m.measure_transient), dense=True))
        stages += zero_shot("final")
    return MemoryEstimate(device=device, offload=offload, stages=tuple(stages))


class _Terms:
    """The byte counts of one config on one shape: each property or method is one term."""

    def __init__(self, config: RunConfig, shape: ModelShape, trainable: TrainableReport | None, device: str,
                 offload: str):
        self.config, self.shape, self.trainable, self.device = config, shape, trainable, device
        self.offload = "none" if offload == "cpu" and device == "cpu" else offload
        self.weight_bytes = DTYPES[config.dtype].itemsize  # per weight and per activation
        self.process = CPU_BASELINE if device == "cpu" else 0.0  # on a CPU the device figure is the whole process

    def stage(self, name: str, *, weights: float, work: float, trained: float = 0.0,
              dense: bool = False) -> StageMemory:
        """``trained``: the training state (:meth:`trained`); ``dense``: the stage holds the dense reference (beside
        a GPU in CPU memory, unless it is on disk; on a CPU device it is on disk and its one block read back is
        part of the work)."""
        parts = {"process": self.process, "weights": weights, "trained": trained, "work": work}
        host = 0.0
        if self.device != "cpu":
            reference = self.dense_reference if dense and self.offload != "disk" else 0.0
            host = CPU_BASELINE + self.host_blocks + reference
        return StageMemory(name, sum(parts.values()), host, {k: v for k, v in parts.items() if v})

    # -- weights ------------------------------------------------------------------------------------------------

    @property
    def all_weights(self) -> float:
        return self.shape.total_params * self.weight_bytes

    @property
    def block_weights(self) -> float:
        """The largest decoder block's."""
        return self.shape.largest_block_params * self.weight_bytes

    @property
    def outside_blocks(self) -> float:
        """The embeddings, the head, the final norm: every weight outside the decoder blocks."""
        return (self.shape.total_params - self.shape.block_params) * self.weight_bytes

    @property
    def resident_weights(self) -> float:
        """On the device while a stage works block by block: all of them, or with offloading one block at a time."""
        return self.all_weights if self.offload == "none" else self.outside_blocks + self.block_weights

    @property
    def loading_weights(self) -> float:
        """On the device while loading: an offloaded model loads on the CPU and only the parts outside the blocks
        go to the GPU."""
        return self.all_weights if self.device == "cpu" or self.offload == "none" else self.outside_blocks

    @property
    def host_blocks(self) -> float:
        """The blocks waiting in CPU memory beside a GPU (offload ``cpu``)."""
        return self.shape.block_params * self.weight_bytes if self.offload == "cpu" else 0.0

    @property
    def dense_reference(self) -> float:
        """Every block's dense weights, taken before pruning."""
        return self.shape.block_params * self.weight_bytes

    @property
    def merged_head(self) -> float:
        """A tied head whose LoRA was merged has its own matrix after training (the embeddings keep theirs)."""
        merged = self.shape.tied_head and "head-lora" in self.config.train and self.config.mode != "none"
        return self.shape.head_params * self.weight_bytes if merged else 0.0

    @property
    def load_transient(self) -> float:
        """On a CPU: the checkpoint's pages, mapped while the weights are cast when it is saved in another dtype,
        else from_pretrained's smaller transient copies."""
        if self.device != "cpu":
            return 0.0
        saved = self.shape.saved_itemsize
        if saved and saved != self.weight_bytes:
            return self.shape.total_params * saved
        return LOAD_OVERHEAD * self.all_weights

    # -- work of each stage ---------------------------------------------------------------------------------------

    @property
    def eval_transient(self) -> float:
        """Perplexity: one batch's logits and one block's forward over the batch."""
        tokens = self.config.eval_batch_size * self.config.seqlen
        return self._eval_logits(tokens) + self._block_forward(tokens)

    @property
    def zero_shot_transient(self) -> float:
        """Zero-shot scoring (lm-eval's loop): one batch of the longest requests of the tasks asked for (cut to the
        model's context), its logits and their log-softmax over the vocabulary in the weights' dtype, and one
        block's forward over it."""
        longest = max(TASKS[t].longest for t in self.config.zero_shot)
        tokens = batch_size_for(self.device) * min(longest, self.shape.context or longest)
        return 2 * tokens * self.shape.vocab * self.weight_bytes + self._block_forward(tokens)

    @property
    def measure_transient(self) -> float:
        """Layer errors (perp_engine.evaluation.layer_errors): both models' block inputs and outputs of the
        measurement windows (five windows' hidden states), the dense block, a block forward, the dense linears'
        outputs of one chunk (kept for the current block's hooks) and one comparison."""
        tokens = self.config.batch_size * self.config.seqlen
        return (5 * self._measure_hidden + self.block_weights + self._block_forward(tokens)
                + self._dense_outputs(tokens) + self._comparison(tokens))

    @property
    def prune_transient(self) -> float:
        """The calibration activations entering and leaving a block, and the larger of one block's pruning work
        (one chunk's forward of ``batch_size`` windows and the method's statistics; in one-pass pruning also what
        the other chunks keep while paused at a linear) and the layer errors' work."""
        work = self._block_forward(self.config.batch_size * self.config.seqlen) + self._method_statistics()
        return self._calibration_hidden(2) + max(work + self.paused_chunks, self.measure_transient)

    @property
    def paused_chunks(self) -> float:
        """One-pass pruning (``sequential=layer``): what the calibration chunks keep while they wait at a linear for
        the others (0 in block mode, or when pruning reads no data)."""
        if self.config.sequential != "layer" or not needs_calibration(self.config.method, refine=self.config.refine):
            return 0.0
        tokens = self.config.calib_samples * self.config.seqlen
        counted = tokens * (PAUSED_HIDDEN * self.shape.hidden + PAUSED_WIDE * self.shape.widest) * self.weight_bytes
        return PAUSED_MEASURED * counted

    @property
    def retrain_transient(self) -> float:
        """The activations kept for backward, the loss's chunks and the head copies (the trained tensors' state is
        a part of its own)."""
        return (self._retrain_activations(self.config.batch_size * self.config.seqlen) + self._loss_chunks
                + self._head_copies)

    @property
    def reconstruct_transient(self) -> float:
        """One block's calibration inputs, targets and outputs, what it keeps for backward over one batch, and the
        dense block (one block's share of the trained tensors' state is a part of its own)."""
        backward = self._kept_per_block(self.config.batch_size * self.config.seqlen)
        return self._calibration_hidden(3) + backward + self.block_weights

    # -- the terms the work is made of -----------------------------------------------------------------------------

    def _block_forward(self, tokens: int) -> float:
        """One block's forward working set over ``tokens`` tokens (inference)."""
        return tokens * (FORWARD_HIDDEN * self.shape.hidden + FORWARD_WIDE * self.shape.widest) * self.weight_bytes

    def _eval_logits(self, tokens: int) -> float:
        """The logits of ``tokens`` tokens in the weights' dtype, and one chunk's float32 logits and log-softmax."""
        chunk = min(self.config.seqlen, chunk_positions(self.shape.vocab)) * self.shape.vocab
        return tokens * self.shape.vocab * self.weight_bytes + 2 * chunk * FLOAT32

    @property
    def _measure_hidden(self) -> float:
        """One model's hidden states of the measurement windows."""
        return MEASURE_WINDOWS * self.config.seqlen * self.shape.hidden * self.weight_bytes

    def _dense_outputs(self, tokens: int) -> float:
        """The dense block's linears' outputs over ``tokens`` tokens, kept for the comparison hooks."""
        return tokens * sum(o for o, _ in self.shape.first_block_linears) * self.weight_bytes

    def _comparison(self, tokens: int) -> float:
        """One comparison of the layer errors: a dense linear's output on the same input (the widest), a float32
        difference and its square."""
        return tokens * self.shape.widest * (self.weight_bytes + 2 * FLOAT32)

    def _calibration_hidden(self, copies: int) -> float:
        """``copies`` hidden states of every calibration window (a block's inputs, outputs, targets)."""
        return copies * self.config.calib_samples * self.config.seqlen * self.shape.hidden * self.weight_bytes

    def _method_statistics(self) -> float:
        """The pruning method's float32 work on one block: SparseGPT's Hessian of each distinct input, three
        widest-by-widest matrices for the Cholesky factorisation of the largest one, and three matrices of the
        largest linear's size (its float32 copy and what the method computes from it); Wanda's three matrices of
        the largest linear's size; none for magnitude or random pruning. RIA works as Wanda. DSnoT adds
        DSNOT_MATRICES float32 matrices of the largest linear's size."""
        largest = max(o * i for o, i in self.shape.linears)
        refine = DSNOT_MATRICES * FLOAT32 * largest if self.config.refine == "dsnot" else 0
        if self.config.method == "sparsegpt":
            inputs = sorted({i for _, i in self.shape.first_block_linears})
            return (sum(FLOAT32 * i * i for i in inputs) + 3 * FLOAT32 * self.shape.widest ** 2
                    + 3 * FLOAT32 * largest + refine)
        if self.config.method in ("wanda", "ria"):
            return 3 * FLOAT32 * largest + refine
        return refine

    def _kept_per_block(self, tokens: int) -> float:
        """Activations one block keeps for backward over ``tokens`` tokens."""
        hidden, wide = KEPT_HIDDEN, KEPT_WIDE
        if "full" in self.config.train or self.config.adapter != "none":
            hidden, wide = hidden + LINEAR_INPUTS_HIDDEN, wide + LINEAR_INPUTS_WIDE
        kept = tokens * (hidden * self.shape.hidden + wide * self.shape.widest) * self.weight_bytes
        return kept + tokens * self._attention_math

    @property
    def _attention_math(self) -> float:
        """What attention's math path keeps per token in one block (``ATTENTION_MATRICES``), when it runs."""
        if self.device != "cpu" or not self.shape.attention_dropout:
            return 0.0
        return FLOAT32 * (ATTENTION_MATRICES * self.shape.heads * self.config.seqlen
                          + ATTENTION_INPUTS * self.shape.hidden)

    def _retrain_activations(self, tokens: int) -> float:
        """Activations kept for backward over ``tokens`` tokens: every block's, or with checkpointing every block's
        input plus one block's while it recomputes."""
        per_block = self._kept_per_block(tokens)
        if self.config.grad_checkpointing:
            return self.shape.n_blocks * tokens * self.shape.hidden * self.weight_bytes + per_block
        return self.shape.n_blocks * per_block

    @property
    def _loss_chunks(self) -> float:
        """The chunked loss's one chunk at a time: its float32 logits, log-softmax and gradient."""
        return 3 * CHUNK_LOGITS * FLOAT32

    @property
    def _head_copies(self) -> float:
        return TRAIN_HEAD_COPIES * self.shape.head_params * self.weight_bytes

    def trained(self) -> float:
        """What training adds to the weights: the head's own matrix when a tied head is untied to train it, and the
        state of every trained tensor (:meth:`_state`): adapters are float32 in any model, the head LoRA's factors
        (peft's) take the head's dtype, the other trained tensors are the model's weights."""
        if self.trainable is None:
            return 0.0
        counts = self.trainable.by_category
        adapters, head_lora = counts.get("adapter", 0), counts.get("head-lora", 0)
        weights = self.trainable.trainable - adapters - head_lora
        trains_head = "head" in self.config.train or "head-lora" in self.config.train
        untied = self.shape.tied_head and self.config.untie_head and trains_head
        head_copy = self.shape.head_params * self.weight_bytes if untied else 0.0
        dtype = DTYPES[self.config.dtype]
        return (head_copy + self._state(adapters, torch.float32, own=True) + self._state(head_lora, dtype, own=True)
                + self._state(weights, dtype, own=False))

    def _state(self, count: int, dtype: torch.dtype, *, own: bool) -> float:
        """Bytes of ``count`` trained parameters of ``dtype`` at the optimizer step (the loop's peak), besides the
        model's weights: the tensors themselves when they are not model weights (``own``); what AdamW updates, a
        float32 master copy of a half-precision tensor when ``master_weights``; its gradient and AdamW's two
        moments, in the updated tensor's dtype (a half-precision tensor's own gradient is moved onto its master
        copy tensor by tensor, so beside the float32 gradients only one of those lives at a time); the copy the
        rollback keeps of small trainables; on a GPU, the square root of every second moment that AdamW's
        foreach step holds at once (on a CPU AdamW steps tensor by tensor)."""
        value = dtype.itemsize
        mastered = self.config.master_weights and dtype in HALF
        updated = FLOAT32 if mastered else value
        per_param = ((value if own else 0) + (updated if mastered else 0) + updated * (1 + ADAM_STATE)
                     + (value if self._rollback else 0) + (updated if self.device == "cuda" else 0))
        return count * per_param

    @property
    def _rollback(self) -> bool:
        """Whether the loop keeps a copy of the trainables: always in reconstruction (one block's), in retraining
        when they are at most ``SNAPSHOT_MAX_SHARE`` of the model (perp_engine.repair.retrain)."""
        trainable = self.trainable
        return self.config.mode == "reconstruct" or trainable.trainable <= SNAPSHOT_MAX_SHARE * trainable.total


def block_working_set(config: RunConfig, shape: ModelShape) -> float:
    """Bytes of one decoder block's pruning work: its weights, the calibration activations entering and leaving
    it, and the method's statistics (Wanda's scores, SparseGPT's Hessians and their factorisation)."""
    terms = _Terms(config, shape, None, "cpu", "none")
    return terms.block_weights + terms.prune_transient


def one_pass_chunks(config: RunConfig, shape: ModelShape) -> str | None:
    """What one-pass pruning holds, in words for ``perp estimate``: the chunk size (``batch_size`` windows, so one
    chunk's forward is bounded as in block mode) and the paused chunks' activations; None in block mode."""
    paused = _Terms(config, shape, None, "cpu", "none").paused_chunks
    if not paused:
        return None
    chunks = -(-config.calib_samples // config.batch_size)
    return (f"one pass per block (sequential=layer): the {config.calib_samples} calibration windows go through each "
            f"block in {chunks} chunks of {config.batch_size} (--batch-size), the others waiting at a linear: "
            f"{paused / MIB:,.0f} MiB of paused activations on top of one chunk's forward")


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
        return {
            "device": self.device,
            "available_gib": {"device": round(self.room[0] / GIB, 2), "host": round(self.room[1] / GIB, 2)},
            "fit_margin": FIT_MARGIN,
            "offload": {mode: {"fits_here": self.fits_here(mode), "peak_device_gib": round(e.peak_device / GIB, 3),
                               "peak_host_gib": round(e.peak_host / GIB, 3),
                               "stages": {s.stage: {"device_gib": round(s.device_bytes / GIB, 3),
                                                    "host_gib": round(s.host_bytes / GIB, 3)} for s in e.stages}}
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
