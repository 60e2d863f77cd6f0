"""Where PERP Lab keeps its files, how it writes them safely, and whether the Hugging Face Hub can be reached.

Everything lives under one folder, ``perp_home()``: ``models/`` (converted embedded model), ``data/`` (extracted
corpora) and ``tokens/`` (token-id caches). Caches are written atomically, so a killed process never leaves a
half-written entry that a later run would trust; an entry damaged later (a truncated file) is logged, deleted
and rebuilt (:func:`read_cache`). Temporary folders carry their writer's pid, so the next writer removes those
left by a killed one (:func:`temp_sibling`).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil
from safetensors import SafetensorError

T = TypeVar("T")
# what a reader of a damaged cache file raises: I/O, JSON and UTF-8 decoding, a missing key, safetensors' own type
CACHE_ERRORS = (OSError, ValueError, KeyError, SafetensorError)
_LOG = logging.getLogger(__name__)

# Inside a saved model folder (perp_engine.run.save, perp export), besides what save_pretrained writes:
MASKS_FILE = "masks.safetensors"  # one bool tensor per pruned linear, True = kept
ADAPTER_DIR = "adapter"  # a plain LoRA kept unmerged on the pruned layers, in peft's format

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_HUB_PROBE_TIMEOUT_S = 5.0


def perp_home() -> Path:
    """``$PERP_HOME`` or ``~/.cache/perp-lab``, created if missing. Reads the environment on every call."""
    home = Path(os.environ.get("PERP_HOME") or Path.home() / ".cache" / "perp-lab").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def resolve_home(home: str | os.PathLike | None) -> Path:
    """An explicit cache folder (created if missing), or :func:`perp_home` for None."""
    if home is None:
        return perp_home()
    path = Path(home).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``final`` in one rename.

    On an exception the temporary folder is removed and ``final`` is left as it was. An existing ``final`` is
    replaced; if another process fills ``final`` between that and the rename, its entry is kept (caches built
    from the same source hold the same content).
    """
    tmp = temp_sibling(final, "tmp")
    try:
        yield tmp
        if final.exists():
            trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def temp_sibling(final: Path, tag: str) -> Path:
    """A new hidden folder ``.<name>.<tag>-<pid>-<random>`` beside ``final``, created after removing the ones of
    the same tag whose process is gone (a writer killed with kill -9 cannot clean up after itself)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.{tag}-"
    for stale in final.parent.glob(glob.escape(prefix) + "*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if stale.is_dir() and not (pid.isdigit() and psutil.pid_exists(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=final.parent))


def read_cache(path: Path, reader: Callable[[Path], T], log: Callable[[str], None] | None = None) -> T | None:
    """``reader(path)``, or None when there is no such entry. A damaged entry (the reader raises one of
    CACHE_ERRORS) is said in ``log`` (default: this module's logger), deleted, and None is returned, so the
    caller rebuilds it."""
    if not path.is_file():
        return None
    try:
        return reader(path)
    except CACHE_ERRORS as err:
        reason = (str(err).strip().splitlines() or [""])[0]
        (log or _LOG.warning)(f"cache entry {path} is damaged ({type(err).__name__}: {reason}); rebuilding it")
        path.unlink(missing_ok=True)
        return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` and friends), read on every call."""
    return any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for var in _OFFLINE_VARS)


def hub_unavailable_reason(repo_id: str, repo_type: str = "model") -> str | None:
    """None when ``repo_id`` can be fetched from the Hub now, else why not, in a few words.

    One metadata request with a short timeout and no retries: ``from_pretrained`` itself retries for ~25 s
    before giving up when there is no network, which is far too slow for a wrong name typed in a form.
    """
    if hub_offline():
        return "offline mode is on (HF_HUB_OFFLINE)"
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    api = HfApi()
    info = api.model_info if repo_type == "model" else api.dataset_info
    try:
        info(repo_id, timeout=_HUB_PROBE_TIMEOUT_S)
    except GatedRepoError:
        return f"{repo_id!r} is gated on the Hugging Face Hub (log in with `hf auth login` and accept its terms)"
    except RepositoryNotFoundError:
        return f"{repo_id!r} was not found on the Hugging Face Hub"
    except HfHubHTTPError as err:
        return f"the Hugging Face Hub answered {err.response.status_code if err.response is not None else 'an error'}"
    except Exception as err:  # DNS failure, refused connection, timeout; the HTTP client's types vary by version
        return f"the Hugging Face Hub cannot be reached ({type(err).__name__}); it needs internet"
    return None
