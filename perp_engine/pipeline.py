"""One run end to end: load, calibrate, prune, measure, optionally retrain or reconstruct, measure again.

``run_pipeline`` is the single entry point shared by the CLI, the job worker and the app. It reports
progress through a plain callable and never touches global state beyond seeding torch's generators.
"""

from __future__ import annotations

import math
import platform
import time
from contextlib import contextmanager
from typing import Callable

import torch

from .adapters import check_adapter_fits
from .blocks import find_decoder_blocks, find_linears, get_weight, linear_kind
from .cache import ArtifactCache
from .calibrate import capture_block_inputs
from .config import RunConfig
from .data import calibration_samples, eval_windows, load_corpus
from .divergence import mark_diverged
from .measure import measure_errors, snapshot_blocks
from .metrics import count_parameters, model_sparsity, peak_memory_mb, perplexity, reset_peak_memory
from .models import load_model, resolve_device
from .preflight import eval_shortfall
from .progress import Progress, silent
from .repair import repair
from .result import BlockRecord, LayerRecord, RunResult
from .save import save_model
from .sequential import DATA_FREE_METHODS, prune_model

MEASURE_SAMPLES = 8  # calibration samples used for the in-situ layer errors (both before and after repair)


def run_pipeline(
    config: RunConfig,
    progress: Progress = silent,
    *,
    cache_dir: str | None = None,
    output_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``config`` and return its :class:`RunResult`.

    ``cache_dir`` enables reuse of the dense perplexity and the pruned weights of identical settings (listed in
    ``result.reused``); ``output_dir`` saves the final model (Hugging Face format, safetensors) with its masks.
    A run that repairs saves the pruned model there first and replaces it only when the repair did not diverge
    (see divergence.py).
    """
    log = log or (lambda line: None)
    cache = ArtifactCache(cache_dir, log=log) if cache_dir else None
    result = RunResult(config=config.to_dict())
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    result.device = str(device)
    result.environment = _environment(device)
    reset_peak_memory(device)

    @contextmanager
    def stage(name: str, message: str, timing: bool = True):
        """A progress stage, timed under its name unless ``timing`` is False (its steps are then timed apart)."""
        progress(name, 0.0, message)
        log(message)
        if timing:
            with timed(name):
                yield
        else:
            yield
        progress(name, 1.0, f"{message} done")

    @contextmanager
    def timed(name: str):
        start = time.perf_counter()
        yield
        result.timings[name] = round(result.timings.get(name, 0.0) + time.perf_counter() - start, 3)

    def report(name: str, lo: float = 0.0, hi: float = 1.0):
        """Progress of a step that covers [lo, hi] of stage ``name``."""
        return lambda fraction, message="": progress(name, lo + (hi - lo) * fraction, message)

    with stage("load", f"loading {config.model} on {device}"):
        model, tokenizer = load_model(config.model, device=str(device), dtype=config.dtype,
                                      trust_remote_code=config.trust_remote_code)
        if config.adapter != "none":
            check_adapter_fits(model, config.rank, config.target_modules)
    with stage("data", f"preparing {config.dataset} data"):
        corpus = load_corpus(config.dataset)
        calib_corpus = load_corpus(config.calib_dataset) if config.calib_dataset else corpus
        calib = calibration_samples(tokenizer, calib_corpus.calib_text, config.calib_samples, config.seqlen, config.seed)
        windows = eval_windows(tokenizer, corpus.eval_text, config.seqlen, config.eval_tokens)
    log(f"{calib.shape[0]} calibration windows from {calib_corpus.name}, {windows.numel():,} eval tokens from {corpus.name}")
    result.eval_tokens = windows.numel()
    if short := eval_shortfall(config, windows.numel()):
        result.warnings.append(short)
        log(short)

    model_key = {"model": config.model, "dtype": config.dtype, "device": device.type}
    eval_key = {**model_key, "dataset": config.dataset, "seqlen": config.seqlen, "eval_tokens": config.eval_tokens}
    def cached_perplexity(stage_name: str, kind: str, key: dict) -> float:
        """The model's perplexity now, or the cached one of identical settings (then listed in result.reused)."""
        hit = cache.get_json(kind, key) if cache else None
        if hit:
            result.reused.append(kind)
            return hit["ppl"]
        ppl = perplexity(model, windows, config.eval_batch_size, progress=report(stage_name))
        if cache:
            cache.put_json(kind, key, {"ppl": ppl})
        return ppl

    with stage("dense_eval", "dense perplexity"):
        result.dense_ppl = cached_perplexity("dense_eval", "dense_ppl", eval_key)
    log(f"dense perplexity {result.dense_ppl:.3f}")

    dense_blocks = snapshot_blocks(model)
    measure_inputs = capture_block_inputs(model, calib[:MEASURE_SAMPLES], config.batch_size)

    prune_key = {**model_key, "calib": config.calib_dataset or config.dataset, "method": config.method,
                 "sparsity": config.sparsity, "pattern": config.pattern, "seed": config.seed,
                 "calib_samples": config.calib_samples, "seqlen": config.seqlen, "blocksize": config.blocksize,
                 "percdamp": config.percdamp}
    with stage("prune", f"{config.method} pruning to {config.sparsity:.0%} ({config.pattern})", timing=False):
        with timed("prune"):
            result.layers = _prune(model, calib, config, cache, prune_key, result, report("prune", 0.0, 0.85), log)
        with timed("measure"):
            errors = measure_errors(model, dense_blocks, measure_inputs, measure_inputs, progress=report("prune", 0.85, 1.0))
    for rec in result.layers:
        rec.recon_error = errors.layers[rec.name]
    result.blocks = [BlockRecord(block=i, loss_before=e) for i, e in enumerate(errors.blocks)]
    result.sparsity = model_sparsity(model)["overall"]

    pruned_key = {**prune_key, **eval_key}
    with stage("pruned_eval", "pruned perplexity"):
        result.pruned_ppl = cached_perplexity("pruned_eval", "pruned_ppl", pruned_key)
    log(f"pruned perplexity {result.pruned_ppl:.3f} at sparsity {result.sparsity:.4f}")

    if config.mode == "none":
        result.total_params = count_parameters(model)
    else:
        if output_dir:
            save_model(model, tokenizer, output_dir, config, log)  # the last good weights until the repair proves good
        with stage("train", f"{config.mode}: training {', '.join(config.train) or 'adapters only'}"
                            + (f" + {config.adapter} r{config.rank}" if config.adapter != "none" else "")):
            repair(model, tokenizer, config, calib_corpus, calib, dense_blocks, result, report("train"), log)
        with stage("final_eval", "per-layer errors and final perplexity", timing=False):
            with timed("measure"):
                after = measure_errors(model, dense_blocks, measure_inputs,
                                       capture_block_inputs(model, calib[:MEASURE_SAMPLES], config.batch_size),
                                       progress=report("final_eval", 0.0, 0.3))
            with timed("final_eval"):
                result.final_ppl = perplexity(model, windows, config.eval_batch_size,
                                              progress=report("final_eval", 0.3, 1.0))
        for rec in result.layers:
            rec.recon_error_after = after.layers[rec.name]
        for rec, e in zip(result.blocks, after.blocks):
            rec.loss_after = e
        log(f"final perplexity {result.final_ppl:.3f}")
        mark_diverged(result, log)
        sparsity_after = model_sparsity(model)["overall"]
        if config.adapter != "lora" and not math.isclose(sparsity_after, result.sparsity, abs_tol=1e-9):
            raise RuntimeError(f"sparsity changed during repair: {result.sparsity:.6f} -> {sparsity_after:.6f}")

    if output_dir and not result.diverged:
        save_model(model, tokenizer, output_dir, config, log)
    result.peak_memory_mb = round(peak_memory_mb(device), 1)
    return result


def _prune(model, calib, config: RunConfig, cache, key: dict, result: RunResult, progress, log) -> list[LayerRecord]:
    """Prune in place, or load the pruned weights of identical settings from the cache."""
    path, blocks = find_decoder_blocks(model)
    cached = cache.get_tensors("pruned", key) if cache else None
    if cached is not None:
        with torch.no_grad():
            for name, tensor in cached.items():
                model.get_submodule(name).weight.copy_(tensor)
        result.reused.append("pruned_model")
        log("pruned weights reused from the cache")
        records = []
        for i, block in enumerate(blocks):
            for name, module in find_linears(block).items():
                w = get_weight(module)
                records.append(LayerRecord(name=f"{path}.{i}.{name}", block=i, kind=linear_kind(name),
                                           sparsity=float((w == 0).float().mean()), recon_error=float("nan"), numel=w.numel()))
        return records
    inputs = None
    if config.method not in DATA_FREE_METHODS:
        inputs = capture_block_inputs(model, calib, config.batch_size)
    records = prune_model(model, inputs, method=config.method, sparsity=config.sparsity, pattern=config.pattern,
                          blocksize=config.blocksize, percdamp=config.percdamp, seed=config.seed,
                          progress=progress, log=log)
    if cache:
        cache.put_tensors("pruned", key, {r.name: model.get_submodule(r.name).weight for r in records})
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
