"""Plumbing shared by the benches: command line, machine facts, peak-memory meter, isolated runs, result files.

Every bench is a script run from the repository root (``.venv/bin/python bench/NAME.py``), so this module is
imported by file location, not as a package.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
_HWM_RESET = "/proc/self/clear_refs"

# the benches measure this checkout's engine, installed (scripts/setup.sh installs it editable) or not
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


QUICK_TRAINING = {"steps": 2, "seqlen": 64, "calib_samples": 4, "eval_tokens": 512}


def parse_args(description: str, steps: int | None = None) -> argparse.Namespace:
    """``--device``, ``--threads``, ``--quick``, and ``--steps`` for a bench that trains ``steps`` by default."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every measured process")
    parser.add_argument("--quick", action="store_true",
                        help="shrunk sizes for a 1-2 minute smoke check; results go to bench/results/quick/")
    if steps is not None:
        parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps per run (per block when "
                            f"reconstructing); default {steps}, {QUICK_TRAINING['steps']} with --quick")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if getattr(args, "steps", None) is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def training_sizes(args: argparse.Namespace, steps: int) -> dict:
    """RunConfig sizes of a retraining bench: seqlen 256, 32 calibration samples, 16,384 evaluation tokens,
    batch 4 and ``steps`` steps (``--steps`` wins), or the shrunk ones with ``--quick``."""
    sizes = dict(QUICK_TRAINING) if args.quick else {"steps": steps, "seqlen": 256, "calib_samples": 32,
                                                     "eval_tokens": 16384}
    if args.steps is not None:
        sizes["steps"] = args.steps
    sizes["batch_size"] = 4
    return sizes


def setup_torch(device: str, threads: int):
    """Set the thread count and return the resolved torch device (a PerpError when it is not available)."""
    import torch

    from perp_engine.models import resolve_device

    torch.set_num_threads(threads)
    return resolve_device(device)


def machine_facts(device: str, threads: int) -> dict:
    """CPU model, cores, threads, library versions and the accelerator's name: enough to compare two runs."""
    import peft
    import torch
    import transformers

    facts = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "platform": platform.platform(),
        "device": device,
        "device_name": _cpu_model(),
        "commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device == "cuda" and torch.cuda.is_available():
        facts["device_name"] = torch.cuda.get_device_name(0)
        facts["cuda"] = torch.version.cuda
    return facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True,
                             cwd=REPO)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class PeakMemory:
    """Peak memory of a stretch of code in this process, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak (tensors only, not the allocator's cache).
    CPU on Linux: the kernel's resident-set high-water mark (VmHWM), reset at ``start`` by writing 5 to
    /proc/self/clear_refs, so the peak is exact and excludes whatever came before (model loading included).
    Elsewhere: a thread sampling the RSS every 2 ms (psutil, a dependency of accelerate); spikes shorter than
    that can be missed. ``method`` says which one was used.
    """

    def __init__(self, device):
        self.device = device
        self.start_mb = 0.0
        self._sampled = 0.0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated (reset at stage start)"
        elif _can_reset_hwm():
            self.method = "RSS high-water mark VmHWM, reset at stage start via /proc/self/clear_refs"
        else:
            self.method = "RSS sampled every 2 ms by a thread (psutil)"

    def start(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.method.startswith("RSS high-water"):
            with open(_HWM_RESET, "w") as f:
                f.write("5")
            self.start_mb = _status_mb("VmRSS")
        else:
            self.start_mb = self._sampled = _rss_mb()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._sampled = max(self._sampled, _rss_mb())

    def peak(self) -> float:
        """Peak since ``start`` (MiB); may be called repeatedly, the meter keeps running."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.method.startswith("RSS high-water"):
            return _status_mb("VmHWM")
        return max(self._sampled, _rss_mb())

    def stop(self) -> float:
        peak = self.peak()
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = self._thread = None
        return peak


def _can_reset_hwm() -> bool:
    try:
        with open(_HWM_RESET, "w") as f:
            f.write("5")
        return _status_mb("VmHWM") > 0
    except OSError:
        return False


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"{key} not in /proc/self/status")


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def timed(device, fn: Callable[[], object]) -> tuple[object, float]:
    """``(fn(), seconds)``, synchronising CUDA before and after so queued kernels are counted."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return value, time.perf_counter() - start


def run_isolated(fn: Callable, *args):
    """``fn(*args)`` in a fresh Python process (spawned, not forked), so its memory peak and caches are its own.

    ``fn`` must be a top-level function of the bench script and its arguments and result picklable."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def gap_closed(dense: float, pruned: float, final: float) -> float:
    """Share of the pruning damage undone, on the log-perplexity scale (perp_engine.recovery.recovered_share):
    1 = back to dense, 0 = no better than pruned, nan when pruning did no harm (under 1% perplexity)."""
    from perp_engine.recovery import recovered_share

    share = recovered_share(dense, pruned, final)
    return math.nan if share is None else share


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def goal_line(name: str, value: float, op: str, target: float, unit: str = "x") -> dict:
    """A goal check for the JSON, its markdown bullet under ``line``."""
    met = value <= target if op == "<=" else value >= target
    return {"goal": name, "value": round(value, 4), "op": op, "target": target, "met": bool(met),
            "line": f"- {name}: {value:.2f}{unit} (goal {op} {target:g}{unit}): **{'met' if met else 'not met'}**"}


def write_results(name: str, args: argparse.Namespace, facts: dict, sizes: dict, payload: dict, body_md: str) -> Path:
    """Write ``<name>-<device>.json`` and ``.md`` under bench/results (bench/results/quick with --quick),
    print the markdown and return the JSON path."""
    folder = RESULTS / "quick" if args.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{name}-{args.device}"
    data = {"bench": name, "quick": bool(args.quick), "machine": facts, "sizes": sizes, **payload}
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    title = f"## {name} ({args.device})" + (" — QUICK smoke run, shrunk sizes, not a measurement" if args.quick else "")
    machine = (f"{facts['device_name'] if args.device == 'cuda' else facts['cpu']}, {facts['threads']} thread(s) "
               f"of {facts['logical_cores']} logical cores, torch {facts['torch']}, transformers {facts['transformers']}, "
               f"commit {facts['commit']}, {facts['date']}")
    size_text = ", ".join(f"{k} {v}" for k, v in sizes.items())
    md = f"{title}\n\n{machine}  \nSizes: {size_text}\n\n{body_md}\n"
    stem.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return stem.with_suffix(".json")
