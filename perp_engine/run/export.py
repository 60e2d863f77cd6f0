"""Export a finished run: the final model in Hugging Face format (safetensors), its masks, the run config and
record, and a model card with the measured numbers.

The model kept with the run (submitted with ``keep_model``) is copied, and only from the store's own
artifacts folder, plain files and folders only (a link in it is refused, never followed nor copied); otherwise
the run is recomputed from its config and seed, which is deterministic on the same machine, and the recomputed
perplexity is compared with the stored one (a stored ``trust_remote_code`` needs ``trust_remote_code=True`` from
the caller: see perp_engine.run.trust). Everything is written to a temporary sibling folder first and moved into
place at the end, so a failed export (a full disk: one-line PerpError) leaves the destination as it was; the
temporary folder of an export that was killed is removed by the next. The app passes ``roots``
(perp_engine.run.export_roots): then the destination must lie inside one of them and be new or empty.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

from ..config import RunConfig
from ..errors import PerpError
from ..paths import ADAPTER_DIR, MASKS_FILE, temp_sibling
from ..progress import Progress, silent
from ..store import RunRow, RunStore
from .export_roots import under_roots
from .trust import check_trusted

REPRODUCE_RTOL = 1e-6
RUN_FILE = "perp_run.json"
CONFIG_FILE = "perp_config.json"
CARD_FILE = "README.md"


@dataclass
class Exported:
    path: Path
    source: str  # "kept" (copied from the run's kept model) or "recomputed"
    ppl: float | None  # the exported model's perplexity as measured by the run (or the recomputation)
    sparsity: float  # of the pruned linears, counted from the masks written
    mismatch: str | None = None  # set when a recomputation did not reproduce the stored perplexity


def export_run(store: RunStore, run_id: int, dest: str | os.PathLike, *, force: bool = False,
               roots: Sequence[Path] | None = None, trust_remote_code: bool = False, progress: Progress = silent,
               log: Callable[[str], None] | None = None) -> Exported:
    """Export run ``run_id`` to folder ``dest``. A non-empty ``dest`` needs ``force`` (files with the names
    written are replaced, other files are kept). With ``roots`` (the app's exports folders) ``dest`` must lie
    inside one of them, links resolved, and be new or empty whatever ``force`` says: nothing is replaced.
    ``trust_remote_code``: the command line or the app session allows the stored config's remote code when the
    run is recomputed."""
    row = store.get_run(run_id)
    if row.status != "done":
        raise PerpError("run", f"run {row.id} is {row.status}; only a done run can be exported")
    dest = Path(dest).expanduser().absolute()
    if roots is not None:
        dest = under_roots(dest, roots)
    if dest.exists() and not dest.is_dir():
        raise PerpError("dir", f"{dest} is a file; give a folder to export into")
    if dest.is_dir() and any(dest.iterdir()):
        if roots is not None:
            raise PerpError("dir", f"{dest} is not empty; the app exports only into a new or empty folder")
        if not force:
            raise PerpError("dir", f"{dest} is not empty; pass --force to write into it (files with the same names are replaced)")
    kept = kept_model(store, row)
    if kept is None:
        check_trusted(RunConfig.from_dict(row.config), trust_remote_code, f"run {row.id}'s stored config")
    try:
        staging = temp_sibling(dest, "export")
        try:
            exported = _fill(store, row, kept, staging, progress, log or (lambda line: None))
            _move_into(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except (OSError, SafetensorError) as err:
        code = disk_error(err)
        if code is None:
            raise
        raise PerpError("dir", f"cannot write the export to {dest.parent}: {os.strerror(code)}; "
                               f"{dest} was left as it was") from None
    exported.path = dest
    return exported


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)  # the disk refused, not a bug
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]|os error (\d+)")


def disk_error(err: BaseException) -> int | None:
    """The errno when ``err`` is the disk refusing a write (full, over quota, read-only, no permission), else None.

    A plain OSError carries it; an error that wraps the OS's (safetensors' SafetensorError, ``save_pretrained``
    too) has it only in its text, so it is read there."""
    if isinstance(err, OSError) and err.errno in DISK_ERRORS:
        return err.errno
    for match in _ERRNO_IN_TEXT.finditer(str(err)):
        code = int(match.group(1) or match.group(2))
        if code in DISK_ERRORS:
            return code
    return None


def kept_model(store: RunStore, row: RunRow) -> Path | None:
    """The run's kept model folder, or None when there is none to copy. PerpError when the store names a
    folder outside its own artifacts folder (a store edited by hand must not make export copy any folder)."""
    if not row.artifact:
        return None
    folder = Path(row.artifact).resolve()
    allowed = store.artifact_dir(row.id).parent.resolve()
    if not folder.is_relative_to(allowed):
        raise PerpError("run", f"run {row.id}'s kept model is recorded at {folder}, outside this store's artifacts "
                               f"folder {allowed}; refusing to copy it")
    return folder if folder.is_dir() else None


def _fill(store: RunStore, row: RunRow, kept: Path | None, folder: Path, progress: Progress,
          log: Callable[[str], None]) -> Exported:
    stored_ppl = _ppl(row.final_ppl, row.pruned_ppl)
    if kept is not None:
        _copy_plain(kept, folder, row.id)
        exported = Exported(folder, "kept", stored_ppl, 0.0)
        measured = row.result
    else:
        from .pipeline import run_pipeline

        log(f"run {row.id} did not keep its model; recomputing it from its config (seed {row.config['seed']})")
        result = run_pipeline(RunConfig.from_dict(row.config), progress, cache_dir=str(store.cache_dir),
                              output_dir=str(folder), log=log)
        measured = result.to_dict()
        exported = Exported(folder, "recomputed", _ppl(result.final_ppl, result.pruned_ppl), 0.0)
        if not _close(exported.ppl, stored_ppl):
            exported.mismatch = (f"recomputed perplexity {exported.ppl:.6g} differs from the stored {stored_ppl:.6g} "
                                 "(another machine, library version or device?)")
            log(f"warning: {exported.mismatch}")
    exported.sparsity = mask_sparsity(folder / MASKS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(row.config, indent=2, sort_keys=True))
    record = {"run_id": row.id, "source": exported.source, "exported_at": time.time(), "config": row.config,
              "measured": {k: v for k, v in measured.items() if k != "config"}, "stored": _scalars(row),
              "mask_sparsity": exported.sparsity, "mismatch": exported.mismatch}
    (folder / RUN_FILE).write_text(json.dumps(record, indent=2))
    (folder / CARD_FILE).write_text(model_card(row, measured, exported))
    return exported


def _copy_plain(kept: Path, folder: Path, run_id: int) -> None:
    """Copy the kept model's files and folders into ``folder``; PerpError for a link or anything else that is
    not a plain file or folder (a kept model never holds one: the store or the folder was edited by hand)."""
    for here, dirs, files in os.walk(kept):
        source = Path(here)
        target = folder / source.relative_to(kept)
        target.mkdir(exist_ok=True)
        for name in (*dirs, *files):
            path = source / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise PerpError("run", f"run {run_id}'s kept model holds {path.relative_to(kept)}, which is not a "
                                       "plain file or folder (a link?); refusing to copy it")
        for name in files:
            shutil.copyfile(source / name, target / name, follow_symlinks=False)


def mask_sparsity(path: Path) -> float:
    """Fraction of pruned (False) entries over all the masks in a masks.safetensors file."""
    from safetensors import safe_open

    if not path.is_file():
        raise PerpError("export", f"{path.name} is missing from the saved model; cannot report its sparsity")
    pruned = total = 0
    with safe_open(str(path), framework="pt") as masks:
        for name in masks.keys():
            mask = masks.get_tensor(name)
            pruned += int((~mask).sum())
            total += mask.numel()
    return pruned / total if total else 0.0


def model_card(row: RunRow, measured: dict, exported: Exported) -> str:
    """A Hugging Face model card (YAML header + markdown) with the run's measured numbers."""
    cfg = row.config
    model = cfg["model"]
    repair = "no repair" if cfg["mode"] == "none" else (
        f"{cfg['mode']} of {', '.join(cfg['train']) or 'adapters only'}"
        + (f" with {cfg['adapter']} r{cfg['rank']}" if cfg["adapter"] != "none" else "")
        + f" ({cfg['steps']} steps, lr {cfg['lr']:g})")
    header = ["---", "library_name: transformers", "pipeline_tag: text-generation",
              "tags: [pruned, sparse, perp-lab, " + f"{cfg['method']}, {cfg['pattern'].replace(':', '-')}]"]
    if "/" in model and not Path(model).exists():
        header.append(f"base_model: {model}")
    header.append("---")
    rows = [("dense", measured.get("dense_ppl")), ("pruned", measured.get("pruned_ppl")),
            ("pruned + repaired", measured.get("final_ppl"))]
    table = ["| model | perplexity |", "| --- | ---: |"] + [f"| {name} | {value:.4f} |" for name, value in rows if value is not None]
    trainable = measured.get("trainable_params") or 0
    lines = [
        *header, "",
        f"# {Path(model).name} pruned to {cfg['sparsity']:.0%} sparsity ({cfg['method']}, {cfg['pattern']})", "",
        f"Exported by PERP Lab from run {row.id} ({exported.source}). `{model}` was pruned with {cfg['method']} to "
        f"{cfg['sparsity']:.0%} sparsity ({cfg['pattern']}) in every linear layer of its decoder blocks, calibrated on "
        f"{cfg['calib_samples']} windows of {cfg['calib_dataset'] or cfg['dataset']}; then {repair}"
        + (f", preset `{cfg['preset']}`" if cfg.get("preset") else "") + ".", "",
        "## Measured", "", *table, "",
        f"Perplexity on `{cfg['dataset']}`: {cfg['eval_tokens']} tokens cut into non-overlapping windows of "
        f"{cfg['seqlen']} tokens (WikiText protocol), seed {cfg['seed']}, device {measured.get('device', '?')}.",
        f"Sparsity of the pruned linears, counted from `{MASKS_FILE}`: {exported.sparsity:.4%}.",
    ]
    if trainable:
        lines.append(f"Trainable parameters during repair: {trainable:,} ({measured.get('trainable_fraction', 0):.4%} "
                     f"of {measured.get('total_params', 0):,}).")
    if exported.mismatch:
        lines.append(f"**Note:** {exported.mismatch}.")
    lines += [f"Warning from the run: {w}" for w in measured.get("warnings", [])]
    lines += [
        "", "## Files", "",
        "- `config.json`, `model.safetensors`, tokenizer files: load with "
        "`AutoModelForCausalLM.from_pretrained(folder)` and `AutoTokenizer.from_pretrained(folder)`.",
        *([f"- `{ADAPTER_DIR}/`: the plain LoRA adapter trained on the pruned layers, kept unmerged (merging it would "
           "make every pruned layer dense), in peft's format: `PeftModel.from_pretrained(model, folder + "
           f"'/{ADAPTER_DIR}')` gives the repaired model the perplexity above was measured on; the folder alone is "
           "the sparse pruned model without it."] if (exported.path / ADAPTER_DIR).is_dir() else []),
        f"- `{MASKS_FILE}`: one bool tensor per pruned linear (True = kept, shape (out, in)), under the layer's name.",
        f"- `{CONFIG_FILE}`: the run's full configuration; `{RUN_FILE}`: the run's record (all measurements, "
        "timings, environment).",
        "", "## What the sparsity buys", "",
        "The zeros are stored densely: the files are as large as the dense model's, and dense kernels run no "
        "faster. Speed and memory gains need sparse kernels: 2:4 patterns run on NVIDIA Ampere or newer GPUs "
        "through semi-structured sparse tensors; unstructured sparsity needs a sparse format or runtime.",
        "", "## Reproduce", "",
        f"`perp run --config {CONFIG_FILE}` (same machine and library versions give the same perplexity).", "",
    ]
    return "\n".join(lines)


def _move_into(staging: Path, dest: Path) -> None:
    if not dest.exists():
        os.replace(staging, dest)
        return
    for entry in staging.iterdir():
        target = dest / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)


def _ppl(final: float | None, pruned: float | None) -> float | None:
    return final if final is not None else pruned


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=REPRODUCE_RTOL)


def _scalars(row: RunRow) -> dict:
    return {k: getattr(row, k) for k in ("dense_ppl", "pruned_ppl", "final_ppl", "sparsity", "trainable_params",
                                         "total_params", "peak_memory_mb")}
