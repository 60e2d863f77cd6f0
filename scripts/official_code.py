"""What the scripts that freeze an official pruning code's results (``reference_owl.py``, ``reference_ria.py``,
``reference_dsnot.py``, ``reference_sparsegpt.py``) share: their command line, exporting the official code from a git
snapshot onto the import path (with counted text edits where a script needs them), the tiny random LLaMA and OPT they
run it on, weights whose magnitudes never tie in a row, the defaults of an official command line, readying a
model and the official module for one call under transformers 5 on a CPU (rotary embeddings, device map, sequence
length, calibration loader), and writing what it gave (masks packed 8 to a byte, the safetensors file).

The scripts import it as a sibling module (``python scripts/reference_<method>.py`` puts ``scripts/`` first on the
import path). Nothing here knows a method: each script keeps its own cases, patches, file layout and metadata.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

FAMILIES = {"llama": (LlamaConfig, LlamaForCausalLM), "opt": (OPTConfig, OPTForCausalLM)}
REFERENCES = Path(__file__).resolve().parents[1] / "tests" / "pruning" / "references"


def command_line(doc: str, repository: str) -> argparse.Namespace:
    """A script's arguments: ``--official`` (a git snapshot of ``repository``) and ``--out`` (the folder the
    references go to, created; default tests/pruning/references). ``doc``'s first line describes the script."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True,
                        help=f"git snapshot of {repository} (a bare git folder or a checkout)")
    parser.add_argument("--out", type=Path, default=REFERENCES, help="folder of the references (default: %(default)s)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def export_official(snapshot: Path, into: Path, paths: Iterable[str] = ("lib",),
                    edits: Iterable[tuple[str, str, str, int]] = ()) -> str:
    """Export ``paths`` at HEAD of the git snapshot ``snapshot`` (a bare git folder or a checkout) into ``into``;
    returns the commit.

    Each edit ``(file, text, replacement, occurrences)`` then replaces ``text`` in the exported ``file``, which must
    hold it exactly ``occurrences`` times (another version of the code is refused, not patched blindly).
    """
    git = ["git", "-C", str(snapshot)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run([*git, "archive", commit, *paths], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for name, old, new, count in edits:
        path = into / name
        text = path.read_text()
        if text.count(old) != count:
            raise SystemExit(f"{name}: expected {count} x {old!r}, found {text.count(old)}; another version?")
        path.write_text(text.replace(old, new))
    return commit


@contextlib.contextmanager
def exported(snapshot: Path, paths: Iterable[str] = ("lib",),
             edits: Iterable[tuple[str, str, str, int]] = ()) -> Iterator[tuple[Path, str]]:
    """:func:`export_official` into a temporary folder, first on the import path while the context lasts (its
    packages import as ``lib.<module>``); yields the folder and the commit."""
    with tempfile.TemporaryDirectory() as tmp:
        commit = export_official(snapshot, Path(tmp), paths, edits)
        sys.path.insert(0, tmp)
        try:
            yield Path(tmp), commit
        finally:
            sys.path.remove(tmp)


def tiny_config(family: str, *, layers: int, vocab: int, max_positions: int) -> dict:
    """The arguments of a tiny LLaMA or OPT config: hidden size 32, MLP 64, 4 heads (LLaMA: 2 key/value heads);
    the LM head is tied to the embedding (OPT ties it by default)."""
    if family == "llama":
        return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                    tie_word_embeddings=True)
    return dict(vocab_size=vocab, hidden_size=32, ffn_dim=64, num_hidden_layers=layers, num_attention_heads=4,
                max_position_embeddings=max_positions, word_embed_proj_dim=32)


def tiny_model(family: str, config: dict) -> torch.nn.Module:
    """A randomly initialised model of ``family`` (from torch's global generator), in eval mode."""
    config_class, model_class = FAMILIES[family]
    return model_class(config_class(**config)).eval()


def round_to_half(model: torch.nn.Module) -> None:
    """Every parameter rounded to float16 (and kept float32), so that storing the weights as float16 loses nothing."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def half_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state in float16, without the LM head where it is tied to the embedding."""
    return {k: v.half().contiguous() for k, v in model.state_dict().items()
            if k != "lm_head.weight" or not model.config.tie_word_embeddings}


def with_rotary(model) -> None:
    """transformers 5 passes each LLaMA layer the rotary embeddings; the official code calls layers without them.

    A forward pre-hook on every decoder layer computes them from the ``position_ids`` the call passes (positions
    0, 1, ... where it passes none)."""
    rotary = model.model.rotary_emb

    def hook(_module, args, kwargs):
        if kwargs.get("position_embeddings") is None:
            hidden = args[0] if args else kwargs["hidden_states"]
            positions = kwargs.get("position_ids")
            if positions is None:
                positions = torch.arange(hidden.shape[1]).unsqueeze(0)
            kwargs["position_embeddings"] = rotary(hidden, positions)
        return args, kwargs

    for layer in model.model.layers:
        layer.register_forward_pre_hook(hook, with_kwargs=True)


def ready(model, family: str, seqlen: int, module, ids: torch.Tensor):
    """``model`` (changed in place and returned) and the official ``module`` readied for one official pruning call.

    - ``model.seqlen`` is set, as the official main.py sets it;
    - ``model.hf_device_map`` (set by accelerate's device_map loading) is an empty map;
    - a LLaMA model gets :func:`with_rotary`;
    - ``module.get_loaders`` (C4 from the Hub) returns ``ids``, one sequence per batch as the official C4 loader
      does (the official code reads only a batch's inputs, so the targets are None).
    """
    model.seqlen = seqlen
    model.hf_device_map = {}
    if family == "llama":
        with_rotary(model)
    module.get_loaders = lambda *_a, **_k: ([(row.unsqueeze(0), None) for row in ids], None)
    return model


def pruned_linears(model) -> dict[str, torch.Tensor]:
    """True where a weight is zero (pruned by the official code), for every linear but the LM head, by module name."""
    return {name: m.weight == 0 for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name != "lm_head"}


def save_reference(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], cases) -> None:
    """Write one reference file, its metadata with the JSON of ``cases`` (a list or dict) under "cases", and say
    so (its size and how many cases it holds)."""
    save_file(tensors, str(path), metadata={**metadata, "cases": json.dumps(cases)})
    print(f"{path}: {path.stat().st_size // 1024} KiB, {len(cases)} cases")


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor flattened row-major and packed 8 to a byte (numpy.packbits), as a uint8 tensor."""
    return torch.from_numpy(np.packbits(mask.numpy().reshape(-1)))


def packed_masks(masks: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Every mask :func:`pack_bits` packed, by ``prefix`` + its name."""
    return {f"{prefix}{name}": pack_bits(mask) for name, mask in masks.items()}


def distinct_magnitudes(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded to float16, with magnitudes that tie in a row moved up by float16 steps until none do.

    Positive float16 bit patterns are ordered like their values, so the sorted patterns of a row are made strictly
    increasing (x_k = max(x_k, x_(k-1) + 1)) and put back with their signs.
    """
    bits = w.abs().half().view(torch.int16).to(torch.int32)
    ordered, order = bits.sort(dim=1, stable=True)
    steps = torch.arange(w.shape[1], dtype=torch.int32)
    ordered = (ordered - steps).cummax(dim=1).values + steps
    bits = torch.empty_like(bits).scatter_(1, order, ordered)
    return bits.to(torch.int16).view(torch.float16).float() * w.sign()


def main_defaults(main_py: Path) -> dict:
    """The default of every ``parser.add_argument`` in the official main.py (False for store_true flags)."""
    defaults = {}
    for node in ast.walk(ast.parse(main_py.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            keywords = {k.arg: k.value for k in node.keywords}
            flag = node.args[0].value.lstrip("-")
            if "default" in keywords:
                defaults[flag] = ast.literal_eval(keywords["default"])
            elif "action" in keywords and ast.literal_eval(keywords["action"]) == "store_true":
                defaults[flag] = False
            else:
                defaults[flag] = None
    return defaults
