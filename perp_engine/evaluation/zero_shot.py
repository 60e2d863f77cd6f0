"""Zero-shot accuracy as the pruning papers measure it: EleutherAI's lm-evaluation-harness on the model in hand.

lm-eval's own task definitions (prompts, answer choices, ``acc`` / ``acc_norm`` and their standard errors) and its
own Hugging Face model loop (``HFLM`` given the model object and tokenizer the run already holds), so the numbers
compare with the papers' tables; only the docs come from :mod:`perp_engine.data.zero_shot_tasks` (offline). A
limit scores a seeded subset of each split (handed to lm-eval as the task's docs), so the docs are the same for the
same seed. Per-item log-likelihoods can be written as JSON lines, like lm-eval's ``--log_samples``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from torch import nn

from ..data.zero_shot_tasks import TASKS, check_source, doc_subset, load_docs, offline_root, source_name

METRICS = ("acc", "acc_norm")
# What a cached score depends on beyond its settings: lm-eval's version (its prompts and metrics) and this file's
# way of choosing and reading docs; bump the number when that changes so old cache entries are not reused.
HARNESS_FORMAT = f"lm-eval {importlib.metadata.version('lm-eval')}, 1"
# Requests per forward. lm-eval pads a batch to its longest request and keeps its logits and their log-softmax over
# the whole vocabulary (BoolQ's longest passage: 1,292 tokens; 2 x 4 x 1,292 x 49,152 float32 = 2 GB on the embedded
# model), so batches stay small and fixed, and the memory model can predict them. On 2 CPU cores 4 was faster than
# 16 (HellaSwag + BoolQ, 30 docs each: 17.0 / 17.7 s against 20.2 / 21.8 s, alternating in one process).
CPU_BATCH = 4
GPU_BATCH = 8


@dataclass
class TaskScore:
    """One task's result on one model: the headline metric (``metric``: acc or acc_norm) and both metrics with
    their standard errors (None where the task does not report one), over ``docs`` of the split's ``total``."""

    task: str
    title: str
    split: str
    metric: str
    value: float
    stderr: float | None
    acc: float | None
    acc_stderr: float | None
    acc_norm: float | None
    acc_norm_stderr: float | None
    docs: int
    total: int
    limit: int
    seed: int
    source: str
    chance: float


@dataclass
class ZeroShotReport:
    scores: list[TaskScore] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0  # (context, continuation) pairs scored


def batch_size_for(device_type: str) -> int:
    """Requests per forward on a device of ``device_type`` (cpu, cuda, mps)."""
    return CPU_BATCH if device_type == "cpu" else GPU_BATCH


def zero_shot(model: nn.Module, tokenizer, tasks: tuple[str, ...], *, limit: int, seed: int,
              batch_size: int | None = None, samples: TextIO | None = None, label: str = "",
              progress: Callable[[float, str], None] | None = None) -> ZeroShotReport:
    """Score ``model`` on each of ``tasks`` (names of :data:`TASKS`), ``limit`` docs each (0 = all) drawn with
    ``seed``. ``samples``: a text stream that gets one JSON line per scored doc, tagged with ``label``."""
    from lm_eval.models.huggingface import HFLM

    device = next(model.parameters()).device
    report = ZeroShotReport()
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with quiet_harness():
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size or batch_size_for(device.type))
            manager = task_manager(tasks)
            for i, task in enumerate(tasks):
                if progress:
                    progress(i / len(tasks), f"zero-shot {TASKS[task].title}")
                score, logged = _one_task(lm, manager, task, limit, seed)
                report.scores.append(score)
                report.requests += sum(len(item["arguments"]) for item in logged)
                if samples is not None:
                    for item in logged:
                        samples.write(json.dumps(_sample_line(label, task, item)) + "\n")
    finally:
        model.train(was_training)
    report.seconds = round(time.perf_counter() - start, 3)
    if progress:
        progress(1.0, "zero-shot done")
    return report


@contextmanager
def quiet_harness() -> Iterator[None]:
    """lm-eval's loggers at ERROR for the duration: they log each task's build, and warn about a model object
    given instead of a name and about every custom data source, at INFO and WARNING."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one_task(lm, manager, task: str, limit: int, seed: int) -> tuple[TaskScore, list[dict]]:
    """Score one task on the docs ``limit`` and ``seed`` choose; the logged items' ``doc_id`` is made the doc's
    index in the whole split."""
    from lm_eval import evaluator

    docs = load_docs(task, _config(manager, task))
    chosen = doc_subset(len(docs), limit, seed)
    out = evaluator.evaluate(lm=lm, task_dict=build_task(task, manager, [docs[i] for i in chosen]),
                             log_samples=True, verbosity="ERROR")
    numbers = out["results"][task]
    spec = TASKS[task]
    found = {m: numbers.get(f"{m},none") for m in METRICS}
    errors = {m: _finite_or_none(numbers.get(f"{m}_stderr,none")) for m in METRICS}
    score = TaskScore(task=task, title=spec.title, split=spec.split, metric=spec.headline,
                      value=found[spec.headline], stderr=errors[spec.headline], acc=found["acc"],
                      acc_stderr=errors["acc"], acc_norm=found["acc_norm"], acc_norm_stderr=errors["acc_norm"],
                      docs=len(chosen), total=len(docs), limit=limit, seed=seed, source=source_name(),
                      chance=spec.chance)
    logged = [{**item, "doc_id": chosen[int(item["doc_id"])]} for item in out["samples"][task]]
    return score, logged


def check_sources(tasks: tuple[str, ...]) -> None:
    """PerpError("zero_shot", ...) naming the first of ``tasks`` whose docs cannot be read now."""
    if tasks and offline_root() is None:
        manager = task_manager(tasks)
        for task in tasks:
            check_source(task, _config(manager, task))


def task_manager(tasks: tuple[str, ...]):
    """An lm-eval ``TaskManager`` that indexes only the config folders of ``tasks``."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    root = Path(lm_eval.__file__).parent / "tasks"
    return TaskManager(include_defaults=False, include_path=sorted({str(root / TASKS[t].harness) for t in tasks}))


def _config(manager, task: str) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return dict(load_yaml(manager.task_index[task].yaml_path, resolve_func=True))


def build_task(task: str, manager, docs: list[dict]):
    """lm-eval's task ``task`` (its config registered in ``manager``, a ``TaskManager``: prompt, choices,
    metrics) scoring ``docs`` (handed over as its split, so lm-eval's per-doc preparation runs on those alone)
    instead of downloading its data; no few-shot split. As ``TaskManager.load`` gives it."""
    import datasets

    config = _config(manager, task)
    split = TASKS[task].split
    config.pop("tag", None)
    config.update(training_split=None, validation_split=None, test_split=None, fewshot_split=None,
                  dataset_kwargs=None, custom_dataset=lambda **_: datasets.DatasetDict(
                      {split: datasets.Dataset.from_list(docs)}))
    config[f"{split}_split"] = split
    return manager.load([config])


def _sample_line(label: str, task: str, item: dict) -> dict:
    """One doc: its index in the split, the (context, continuation) pairs, their log-likelihoods and whether
    each continuation is the greedy one, the right choice's index and the doc's metrics."""
    pairs = [list(a) for a in item["arguments"]]
    responses = [list(r) for r in item["filtered_resps"]]
    return {"model": label, "task": task, "doc_id": int(item["doc_id"]), "target": item["target"],
            "context": [p[0] for p in pairs], "continuation": [p[1] for p in pairs],
            "loglikelihood": [float(r[0]) for r in responses], "is_greedy": [bool(r[1]) for r in responses],
            **{m: item[m] for m in METRICS if m in item}}


def _finite_or_none(value) -> float | None:
    """lm-eval's standard error as a float; None where it reports none ("N/A") or a non-finite one."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
