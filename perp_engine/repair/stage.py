"""The repair stage after pruning: retrain (LM loss, whole model) or reconstruct (block by block).

Fills the trainable-parameter counts, the loss record, the learning curves (``eval_every``), warnings and notes of
the RunResult; adapters are merged back and the pruning masks are verified unchanged (the ``lora`` adapter stays
unmerged and says so).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch

from ..config import RunConfig
from ..data.corpora import Corpus
from ..data.sampling import train_samples
from ..errors import PerpError
from ..evaluation.perplexity import perplexity
from ..model.capture import capture_block_inputs
from ..model.parameters import count_parameters, trainable_share, trainable_text
from ..offload.dense_reference import DenseReference
from ..offload.placement import BlockPlacement
from ..result import RunResult
from .adapters import attach_adapters, merge_adapters
from .mask_keeper import MaskKeeper
from .reconstruct import BlockRecipe, reconstruct
from .retrain import retrain
from .subsets import select_trainable
from .training_loop import Optimisation, Probe


def repair(model, tokenizer, config: RunConfig, calib_corpus: Corpus, calib: torch.Tensor, dense: DenseReference,
           result: RunResult, progress: Callable[[float, str], None], log: Callable[[str], None],
           placement: BlockPlacement | None = None, *, eval_windows: torch.Tensor | None = None,
           measure_windows: torch.Tensor | None = None) -> None:
    """Retrain (every block on the device for the duration, whatever the offloading) or reconstruct (one
    block on the device at a time). With ``config.eval_every`` the learning curve is measured on held-out windows:
    the perplexity on ``eval_windows`` (retrain), each block's error on ``measure_windows`` (reconstruct)."""
    if config.mode == "retrain":
        with placement.all_resident(writes=True) if placement else nullcontext():
            _retrain(model, tokenizer, config, calib_corpus, result, progress, log, eval_windows)
    else:
        _reconstruct(model, config, calib, dense, result, progress, log, placement, measure_windows)


def _curve_missing(config: RunConfig, windows: torch.Tensor | None) -> None:
    if config.eval_every and windows is None:
        raise PerpError("eval_every", "a learning curve needs held-out windows to measure on; none were given")


def _retrain(model, tokenizer, config: RunConfig, calib_corpus: Corpus, result: RunResult, progress, log,
             eval_windows: torch.Tensor | None) -> None:
    _curve_missing(config, eval_windows)
    keeper = MaskKeeper(model, reapply="full" in config.train)
    if config.adapter != "none":
        attach_adapters(model, config.adapter, rank=config.rank, alpha=config.alpha,
                        target_modules=config.target_modules, seed=config.seed)
    report = select_trainable(model, config.train, untie=config.untie_head)
    _record_counts(result, report.trainable, report.total, report.by_category, report.tensors, report.warnings, report.notes,
                   own=(report.model_params, report.adapter_params, report.head_copy_params))
    counts = f"training {report.trainable:,} parameters: " + trainable_text(report.trainable, report.model_params,
                                                                            report.adapter_params, report.head_copy_params)
    log(counts)
    progress(0.0, counts)
    n = config.train_samples or config.steps * config.batch_size * config.grad_accum
    samples = train_samples(tokenizer, calib_corpus.calib_source, n, config.seqlen, config.seed)
    outcome = retrain(
        model, samples, steps=config.steps, lr=config.lr, batch_size=config.batch_size, grad_accum=config.grad_accum,
        warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        grad_checkpointing=config.grad_checkpointing, master_weights=config.master_weights, seed=config.seed,
        keeper=keeper if "full" in config.train else None,
        progress=lambda step, steps, loss: progress(step / steps, f"step {step}/{steps} loss {loss:.4f}"),
        probe=Probe(config.eval_every, lambda: perplexity(model, eval_windows, config.eval_batch_size))
        if config.eval_every else None,
    )
    result.train_loss = list(outcome.losses)
    result.curve = [{"step": p.step, "seconds": p.seconds, "ppl": p.value} for p in outcome.curve]
    result.curve_seconds = round(outcome.probe_seconds, 3)
    if outcome.curve:
        log(f"learning curve: {len(outcome.curve)} held-out perplexities, {outcome.probe_seconds:.1f} s")
    if outcome.stopped:
        result.warnings.append(outcome.stopped)
        log(outcome.stopped)
    for note in merge_adapters(model, untie_head=config.untie_head):
        result.notes.append(note)
        log(note)
    keeper.verify()
    model.requires_grad_(False)


def _reconstruct(model, config: RunConfig, calib, dense: DenseReference, result: RunResult, progress, log,
                 placement: BlockPlacement | None, measure_windows: torch.Tensor | None) -> None:
    _curve_missing(config, measure_windows)
    inputs = capture_block_inputs(model, calib, config.batch_size)
    held_out = capture_block_inputs(model, measure_windows, config.batch_size) if config.eval_every else None
    how = Optimisation(steps=config.steps, lr=config.lr, warmup_ratio=config.warmup_ratio,
                       weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
                       master_weights=config.master_weights)
    recipe = BlockRecipe(subsets=config.train, adapter=config.adapter, rank=config.rank, alpha=config.alpha,
                         target_modules=config.target_modules, how=how)
    outcome = reconstruct(model, dense, inputs, recipe, seed=config.seed, progress=progress, placement=placement,
                          held_out=held_out, eval_every=config.eval_every)
    adapters = outcome.by_category.get("adapter", 0)
    total = count_parameters(model)
    if config.adapter != "lora":  # merged adapters no longer exist in the model; count them as trained params
        total += adapters
    _record_counts(result, outcome.trainable, total, outcome.by_category, outcome.tensors, outcome.warnings, outcome.notes,
                   own=(total - adapters, adapters, 0))
    result.train_loss = list(outcome.losses)
    for rec, loss in zip(result.blocks, outcome.blocks):
        rec.train_loss_before = loss.before
        rec.train_loss_after = loss.after
        rec.train_seconds = round(loss.seconds, 4)
        rec.curve = [{"step": p.step, "seconds": p.seconds, "error": p.value} for p in loss.curve]
    result.curve_seconds = round(outcome.probe_seconds, 3)
    for line in outcome.warnings + outcome.notes:
        log(line)


def _record_counts(result: RunResult, trainable, total, by_category, tensors, warnings, notes,
                   own: tuple[int, int, int]) -> None:
    """``own``: the model's own parameters, the adapters' and the untied head copy's (the share's denominator is
    the first, see perp_engine.model.parameters)."""
    result.trainable_params = int(trainable)
    result.total_params = int(total)
    result.model_params, result.adapter_params, result.head_copy_params = (int(n) for n in own)
    result.trainable_fraction = trainable_share(trainable, result.model_params)
    result.trainable_by_category = dict(by_category)
    result.trained_tensors = list(tensors)
    result.warnings.extend(w for w in warnings if w not in result.warnings)
    result.notes.extend(n for n in notes if n not in result.notes)
