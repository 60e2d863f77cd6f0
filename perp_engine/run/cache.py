"""A small on-disk artifact cache: JSON values and tensor files keyed by the knobs that produced them.

Used by the pipeline so that identical configs do not recompute the dense perplexity or the pruned weights.
Writes go to a temporary file then ``os.replace`` so a killed process never leaves a half-written entry; an
entry damaged later is reported in ``log``, deleted and treated as missing, so the run rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..paths import read_cache


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ArtifactCache:
    def __init__(self, root: str | os.PathLike, log: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.log = log

    def _path(self, kind: str, parts: dict, suffix: str) -> Path:
        return self.root / kind / f"{cache_key(parts)}{suffix}"

    def get_json(self, kind: str, parts: dict) -> dict | None:
        return read_cache(self._path(kind, parts, ".json"), lambda path: json.loads(path.read_text()), self.log)

    def put_json(self, kind: str, parts: dict, value: dict) -> None:
        self._write(self._path(kind, parts, ".json"), lambda tmp: Path(tmp).write_text(json.dumps({**value, "key": parts})))

    def get_tensors(self, kind: str, parts: dict) -> dict[str, torch.Tensor] | None:
        return read_cache(self._path(kind, parts, ".safetensors"), lambda path: load_file(str(path)), self.log)

    def put_tensors(self, kind: str, parts: dict, tensors: dict[str, torch.Tensor]) -> None:
        contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        self._write(self._path(kind, parts, ".safetensors"), lambda tmp: save_file(contiguous, tmp))

    @staticmethod
    def _write(path: Path, writer) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            writer(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
