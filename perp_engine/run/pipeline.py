"""One run end to end, as a list of stages: load, data, dense_eval, prune, pruned_eval, train, final_eval, with
zero-shot accuracy after each perplexity the config asks it for (dense_zero_shot, pruned_zero_shot, final_zero_shot).

``run_pipeline`` is the single entry point shared by the CLI, the job worker and the app. Each stage is a plain
function that reads and fills one :class:`Run` (the model, the windows, the dense reference, the RunResult);
the loop reports progress through a plain callable, times each stage and never touches global state beyond
seeding torch's generators.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import RunConfig
from ..data.corpora import Corpus, load_corpus
from ..data.sampling import MEASURE_WINDOWS, calibration_samples, eval_windows, measure_windows
from ..data.zero_shot_tasks import source_name
from ..evaluation.divergence import mark_diverged
from ..evaluation.layer_errors import ErrorReport, measure_errors
from ..evaluation.perplexity import perplexity
from ..evaluation.sparsity import model_sparsity
from ..evaluation.zero_shot import HARNESS_FORMAT, zero_shot
from ..model.blocks import find_decoder_blocks, find_linears, get_weight, linear_kind
from ..model.capture import BlockInputs, capture_block_inputs
from ..model.load import load_model, resolve_device
from ..model.parameters import count_parameters
from ..model.sparsity import pruned_positions
from ..offload.dense_reference import DenseReference
from ..offload.placement import OFFLOADED, BlockPlacement
from ..paths import resolve_home
from ..progress import Progress, part, silent
from ..pruning.configured import prune_as_configured
from ..repair.adapters import check_adapter_fits
from ..repair.stage import repair
from ..resources.estimate import recorded_estimate
from ..resources.memory_meter import GIB, PeakMemory
from ..resources.memory_model import estimate_memory
from ..result import ERRORS_FORMAT, BlockRecord, LayerRecord, RunResult
from .cache import ArtifactCache
from .preflight import eval_shortfall
from .save import save_model

# Versions of what the artifact cache holds; bump one when its computation changes so old entries are not reused.
WINDOWS_FORMAT = 2  # 2: calibration windows avoid the held-out measurement windows


@dataclass
class Run:
    """The state the stages share: what the run was given, and what one stage fills in for later ones."""

    config: RunConfig
    progress: Progress
    log: Callable[[str], None]
    cache: ArtifactCache | None
    output_dir: str | None
    device: torch.device
    result: RunResult
    scratch: Path  # this run's folder for files it deletes at its end (offloaded blocks, dense copy)
    # filled by load
    model: nn.Module | None = None
    tokenizer: object = None
    placement: BlockPlacement | None = None  # where the blocks wait between uses (RunConfig.offload)
    # filled by prepare_data
    calib_corpus: Corpus | None = None
    calib: torch.Tensor | None = None  # calibration windows (pruning statistics, reconstruction)
    windows: torch.Tensor | None = None  # evaluation windows (perplexity)
    measure: torch.Tensor | None = None  # held-out windows of the calibration source (layer-wise errors)
    # filled by prune when errors must be measured
    dense: DenseReference | None = None  # the dense blocks, taken before pruning
    dense_inputs: BlockInputs | None = None  # the dense model's block-0 inputs of the measurement windows

    def report(self, stage: str, lo: float = 0.0, hi: float = 1.0) -> Callable[..., None]:
        """Progress of a step that covers [lo, hi] of ``stage``."""
        return part(functools.partial(self.progress, stage), lo, hi)

    @contextmanager
    def timed(self, name: str):
        start = time.perf_counter()
        yield
        self.result.timings[name] = round(self.result.timings.get(name, 0.0) + time.perf_counter() - start, 3)

    # -- what identifies cached artifacts ------------------------------------------------------------------

    @property
    def model_key(self) -> dict:
        return {"model": self.config.model, "dtype": self.config.dtype, "device": self.device.type}

    @property
    def eval_key(self) -> dict:
        c = self.config
        return {**self.model_key, "dataset": c.dataset, "seqlen": c.seqlen, "eval_tokens": c.eval_tokens}

    @property
    def prune_key(self) -> dict:
        c = self.config
        return {**self.model_key, "calib": c.calib_dataset or c.dataset, **c.prune_settings, "windows": WINDOWS_FORMAT}

    @property
    def errors_key(self) -> dict:
        return {**self.prune_key, "measure_windows": MEASURE_WINDOWS, "errors": ERRORS_FORMAT}

    def zero_shot_key(self, task: str) -> dict:
        c = self.config
        return {"task": task, "limit": c.zero_shot_limit, "seed": c.seed, "source": source_name(),
                "harness": HARNESS_FORMAT}

    def cached_perplexity(self, stage: str, kind: str, key: dict) -> float:
        """The model's perplexity now, or the cached one of identical settings (then listed in result.reused)."""
        hit = self.cache.get_json(kind, key) if self.cache else None
        if hit:
            self.result.reused.append(kind)
            return hit["ppl"]
        ppl = perplexity(self.model, self.windows, self.config.eval_batch_size, progress=self.report(stage))
        if self.cache:
            self.cache.put_json(kind, key, {"ppl": ppl})
        return ppl


@dataclass(frozen=True)
class Stage:
    """A step of the pipeline: ``name`` is its progress stage (and its timing, unless it times its parts)."""

    name: str
    message: Callable[[Run], str]
    run: Callable[[Run], None]
    needed: Callable[[RunConfig], bool] = lambda config: True
    times_parts: bool = False


def load(run: Run) -> None:
    """Load the model where its blocks will wait (RunConfig.offload; auto asks the memory model) and place it."""
    config = run.config
    mode = config.offload
    if mode == "auto":
        estimate = estimate_memory(config, device=run.device.type)
        mode = estimate.offload
        run.log(f"offload auto -> {mode}: predicted peak {estimate.peak_device / GIB:.2f} GiB on {run.device.type}")
    run.result.environment["offload"] = mode
    staged = "cpu" if mode in OFFLOADED else str(run.device)
    run.model, run.tokenizer = load_model(config.model, device=staged, dtype=config.dtype,
                                          trust_remote_code=config.trust_remote_code)
    run.placement = BlockPlacement(run.model, mode, run.device, scratch=run.scratch)
    if config.adapter != "none":
        check_adapter_fits(run.model, config.rank, config.target_modules)


def prepare_data(run: Run) -> None:
    config = run.config
    corpus = load_corpus(config.dataset)
    run.calib_corpus = load_corpus(config.calib_dataset) if config.calib_dataset else corpus
    source = run.calib_corpus.calib_source
    run.calib = calibration_samples(run.tokenizer, source, config.calib_samples, config.seqlen, config.seed)
    run.measure = measure_windows(run.tokenizer, source, config.seqlen)
    run.windows = eval_windows(run.tokenizer, corpus.eval_text, config.seqlen, config.eval_tokens)
    run.result.eval_tokens = run.windows.numel()
    if short := eval_shortfall(config, run.windows.numel()):
        run.result.warnings.append(short)
        run.log(short)
    run.result.measure_windows = {
        "count": MEASURE_WINDOWS, "seqlen": config.seqlen, "source": run.calib_corpus.name, "held_out": True,
        "placement": "spread evenly over the calibration text; no calibration or retraining window overlaps them"}
    run.log(f"{run.calib.shape[0]} calibration windows and {MEASURE_WINDOWS} held-out measurement windows from "
            f"{run.calib_corpus.name}, {run.windows.numel():,} eval tokens from {corpus.name}")


def dense_eval(run: Run) -> None:
    run.result.dense_ppl = run.cached_perplexity("dense_eval", "dense_ppl", run.eval_key)
    run.log(f"dense perplexity {run.result.dense_ppl:.3f}")


def prune(run: Run) -> None:
    """Keep the dense reference (when errors must be measured), prune, and measure the errors after pruning."""
    config = run.config
    cached_errors = run.cache.get_json("layer_errors", run.errors_key) if run.cache else None
    if cached_errors is None or config.mode != "none":
        with run.timed("measure"):
            on_disk = run.device.type == "cpu" or run.placement.mode == "disk"  # not a second copy in one memory
            run.dense = DenseReference(run.model, folder=run.scratch / "dense" if on_disk else None,
                                       placement=run.placement)
            run.dense_inputs = capture_block_inputs(run.model, run.measure, config.batch_size)
    with run.timed("prune"):
        run.result.layers = _prune_or_reuse(run, run.report("prune", 0.0, 0.85))
    with run.timed("measure"):
        if cached_errors is not None:
            errors = ErrorReport(**{k: v for k, v in cached_errors.items() if k != "key"})
            run.result.reused.append("layer_errors")
        else:
            errors = _measure(run, run.report("prune", 0.85, 1.0))
            if run.cache:
                run.cache.put_json("layer_errors", run.errors_key, asdict(errors))
    for rec in run.result.layers:
        rec.recon_error, rec.drift = errors.local[rec.name], errors.drift[rec.name]
    run.result.blocks = [BlockRecord(block=i, loss_before=local, drift_before=drift)
                         for i, (local, drift) in enumerate(zip(errors.block_local, errors.block_drift))]
    run.result.sparsity = model_sparsity(run.model, run.placement)["overall"]


def pruned_eval(run: Run) -> None:
    run.result.pruned_ppl = run.cached_perplexity("pruned_eval", "pruned_ppl", {**run.prune_key, **run.eval_key})
    if run.config.mode == "none":
        run.result.total_params = run.result.model_params = count_parameters(run.model)
    run.log(f"pruned perplexity {run.result.pruned_ppl:.3f} at sparsity {run.result.sparsity:.4f}")


def train(run: Run) -> None:
    if run.output_dir:  # the last good weights, until the repair proves good (divergence.py)
        _save(run)
    repair(run.model, run.tokenizer, run.config, run.calib_corpus, run.calib, run.dense, run.result,
           run.report("train"), run.log, run.placement, eval_windows=run.windows, measure_windows=run.measure)


def final_eval(run: Run) -> None:
    """Errors and perplexity after repair; the pruned zeros must have survived it."""
    result = run.result
    with run.timed("measure"):
        after = _measure(run, run.report("final_eval", 0.0, 0.3))
    with run.timed("final_eval"):
        result.final_ppl = perplexity(run.model, run.windows, run.config.eval_batch_size,
                                      progress=run.report("final_eval", 0.3, 1.0))
    for rec in result.layers:
        rec.recon_error_after, rec.drift_after = after.local[rec.name], after.drift[rec.name]
    for rec, local, drift in zip(result.blocks, after.block_local, after.block_drift):
        rec.loss_after, rec.drift_after = local, drift
    run.log(f"final perplexity {result.final_ppl:.3f}")
    mark_diverged(result, run.log)
    result.final_sparsity = sparsity_after = model_sparsity(run.model, run.placement)["overall"]
    if not math.isclose(sparsity_after, result.sparsity, abs_tol=1e-9):
        raise RuntimeError(f"sparsity changed during repair: {result.sparsity:.6f} -> {sparsity_after:.6f}")


def _repairs(config: RunConfig) -> bool:
    return config.mode != "none"


def score_zero_shot(run: Run, which: str, key: dict | None) -> None:
    """Zero-shot accuracy of the model as it is now (``which``: dense, pruned or final) on the config's tasks.
    With ``key`` (the settings that produced these weights) each task's score is cached, and reused by a run of
    identical settings (listed in ``result.reused`` as ``zero_shot_<which>``), unless per-item lines are asked
    for: those come only from scoring."""
    config = run.config
    cache = run.cache if key is not None and config.zero_shot_samples is None else None
    scores, todo = {}, []
    for task in config.zero_shot:
        hit = cache.get_json("zero_shot", {**key, **run.zero_shot_key(task)}) if cache else None
        if hit:
            scores[task] = {k: v for k, v in hit.items() if k != "key"}
        else:
            todo.append(task)
    if todo:
        samples = _samples_file(run)
        try:
            report = zero_shot(run.model, run.tokenizer, tuple(todo), limit=config.zero_shot_limit, seed=config.seed,
                               samples=samples, label=which, progress=run.report(f"{which}_zero_shot"))
        finally:
            if samples is not None:
                samples.close()
        for score in report.scores:
            scores[score.task] = asdict(score)
            if cache:
                cache.put_json("zero_shot", {**key, **run.zero_shot_key(score.task)}, scores[score.task])
    else:
        run.result.reused.append(f"zero_shot_{which}")
    run.result.zero_shot[which] = [scores[task] for task in config.zero_shot]
    run.log(f"{which} zero-shot: " + ", ".join(f"{s['task']} {s['metric']} {s['value']:.3f}"
                                                 for s in run.result.zero_shot[which]))


def _samples_file(run: Run):
    """The per-item log-likelihood file, opened for this model's lines: created by the run's first scored model,
    appended to by the next ones."""
    path = run.config.zero_shot_samples
    if path is None:
        return None
    first = not any(run.result.zero_shot)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w" if first else "a", encoding="utf-8")


def _scores(which: str) -> Callable[[RunConfig], bool]:
    """Whether a config scores its ``which`` model zero-shot."""
    return lambda config: which in config.zero_shot_models


def _task_count(run: Run) -> str:
    return f"{len(run.config.zero_shot)} task(s), {run.config.zero_shot_limit or 'all'} docs each"


def _train_message(run: Run) -> str:
    config = run.config
    adapter = f" + {config.adapter} r{config.rank}" if config.adapter != "none" else ""
    return f"{config.mode}: training {', '.join(config.train) or 'adapters only'}{adapter}"


PIPELINE: tuple[Stage, ...] = (
    Stage("load", lambda run: f"loading {run.config.model} on {run.device}", load),
    Stage("data", lambda run: f"preparing {run.config.dataset} data", prepare_data),
    Stage("dense_eval", lambda run: "dense perplexity", dense_eval),
    Stage("dense_zero_shot", lambda run: f"dense zero-shot accuracy: {_task_count(run)}",
          lambda run: score_zero_shot(run, "dense", run.model_key), needed=_scores("dense")),
    Stage("prune", lambda run: f"{run.config.method} pruning to {run.config.sparsity:.0%} ({run.config.pattern})", prune,
          times_parts=True),
    Stage("pruned_eval", lambda run: "pruned perplexity", pruned_eval),
    Stage("pruned_zero_shot", lambda run: f"pruned zero-shot accuracy: {_task_count(run)}",
          lambda run: score_zero_shot(run, "pruned", run.prune_key), needed=_scores("pruned")),
    Stage("train", _train_message, train, needed=_repairs),
    Stage("final_eval", lambda run: "per-layer errors and final perplexity", final_eval, needed=_repairs,
          times_parts=True),
    Stage("final_zero_shot", lambda run: f"final zero-shot accuracy: {_task_count(run)}",
          lambda run: score_zero_shot(run, "final", None), needed=_scores("final")),
)


def stages_for(config: RunConfig) -> tuple[str, ...]:
    """The stages a run of ``config`` goes through, in order."""
    return tuple(stage.name for stage in PIPELINE if stage.needed(config))


def run_pipeline(
    config: RunConfig,
    progress: Progress = silent,
    *,
    cache_dir: str | None = None,
    output_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``config`` and return its :class:`RunResult`.

    ``cache_dir`` enables reuse of the dense perplexity, the pruned weights and their layer errors of identical
    settings (listed in ``result.reused``); ``output_dir`` saves the final model (Hugging Face format,
    safetensors) with its masks. A run that repairs saves the pruned model there first and replaces it only when
    the repair did not diverge (see divergence.py).
    """
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    log = log or (lambda line: None)
    scratch = resolve_home(None) / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    meter = PeakMemory(device)
    run = Run(config=config, progress=progress, log=log, cache=ArtifactCache(cache_dir, log=log) if cache_dir else None,
              output_dir=output_dir, device=device,
              result=RunResult(config=config.to_dict(), device=str(device), environment=_environment(device)),
              scratch=Path(tempfile.mkdtemp(prefix="run-", dir=scratch)))
    run.result.estimate = recorded_estimate(config, log)
    try:
        for stage in PIPELINE:
            if stage.needed(config):
                _execute(run, stage, meter)
        if output_dir and not run.result.diverged:
            _save(run)
    finally:
        if run.placement is not None:
            run.placement.close(restore=False)
        shutil.rmtree(run.scratch, ignore_errors=True)
    run.result.peak_memory_mb = max(run.result.stage_memory_mb.values())
    run.result.environment["memory_meter"] = meter.method
    run.result.environment["load_average"] = [round(v, 2) for v in os.getloadavg()]  # 1, 5, 15 min, at the run's end
    return run.result


def _save(run: Run) -> None:
    """Save the model to the run's output folder (every block brought back for it)."""
    with run.placement.all_resident():
        save_model(run.model, run.tokenizer, run.output_dir, run.config, run.log)


def _execute(run: Run, stage: Stage, meter: PeakMemory) -> None:
    """Run one stage: progress at its start and end, its time (unless it times its parts), its peak memory."""
    message = stage.message(run)
    run.progress(stage.name, 0.0, message)
    run.log(message)
    meter.start()
    start = time.perf_counter()
    try:
        if stage.times_parts:
            stage.run(run)
        else:
            with run.timed(stage.name):
                stage.run(run)
    finally:
        run.result.stage_memory_mb[stage.name] = round(meter.stop(), 1)
        run.result.stage_seconds[stage.name] = round(time.perf_counter() - start, 3)
    run.progress(stage.name, 1.0, f"{message} done")


def _measure(run: Run, progress) -> ErrorReport:
    inputs = capture_block_inputs(run.model, run.measure, run.config.batch_size)
    return measure_errors(run.model, run.dense, run.dense_inputs, inputs, progress=progress, placement=run.placement)


def _prune_or_reuse(run: Run, progress) -> list[LayerRecord]:
    """Prune in place, or load the pruned weights of identical settings from the cache. With disk offload the
    cache is not used: an entry holds every pruned weight at once, which that mode keeps out of memory."""
    config, model = run.config, run.model
    cache = run.cache if run.placement.mode != "disk" else None
    allocation = cache.get_json("allocation", run.prune_key) if cache else None
    cached = cache.get_tensors("pruned", run.prune_key) if allocation is not None else None
    if cached is not None:
        run.result.reused.append("pruned_model")
        run.log("pruned weights reused from the cache")
        run.result.block_sparsity, run.result.outlier_share = allocation["block_sparsity"], allocation["outlier_share"]
        return _load_pruned(run, cached)
    pruned = prune_as_configured(model, run.calib, config, progress=progress, log=run.log, placement=run.placement)
    run.result.block_sparsity, run.result.outlier_share = pruned.block_sparsity, pruned.outlier_share
    records = pruned.layers
    if cache:  # the weights first: an allocation entry promises them
        cache.put_tensors("pruned", run.prune_key, {r.name: model.get_submodule(r.name).weight for r in records})
        cache.put_json("allocation", run.prune_key, {"block_sparsity": pruned.block_sparsity,
                                                     "outlier_share": pruned.outlier_share})
    return records


def _load_pruned(run: Run, cached: dict[str, torch.Tensor]) -> list[LayerRecord]:
    """Copy cached pruned weights into the model, block by block; one record per block linear (its sparsity)."""
    path, _ = find_decoder_blocks(run.model)
    records = []
    for i, block in run.placement.each_block(writes=True):
        for name, module in find_linears(block).items():
            full = f"{path}.{i}.{name}"
            with torch.no_grad():
                module.weight.copy_(cached[full])
            w = get_weight(module)
            records.append(LayerRecord(name=full, block=i, kind=linear_kind(name), recon_error=None, numel=w.numel(),
                                       sparsity=float(pruned_positions(w).float().mean())))
    return records


def _environment(device: torch.device) -> dict:
    import peft
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
