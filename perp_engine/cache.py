"""A small on-disk artifact cache: JSON values and tensor files keyed by the knobs that produced them.

Used by the pipeline so that identical configs do not recompute the dense perplexity or the pruned weights.
Writes go to a temporary file then ``os.replace`` so a killed process never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class ArtifactCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, kind: str, parts: dict, suffix: str) -> Path:
        return self.root / kind / f"{cache_key(parts)}{suffix}"

    def get_json(self, kind: str, parts: dict) -> dict | None:
        path = self._path(kind, parts, ".json")
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put_json(self, kind: str, parts: dict, value: dict) -> None:
        self._write(self._path(kind, parts, ".json"), lambda tmp: Path(tmp).write_text(json.dumps({**value, "key": parts})))

    def get_tensors(self, kind: str, parts: dict) -> dict[str, torch.Tensor] | None:
        path = self._path(kind, parts, ".safetensors")
        if not path.exists():
            return None
        try:
            return load_file(str(path))
        except (OSError, ValueError, RuntimeError):
            return None

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
