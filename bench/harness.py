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
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

# the benches measure this checkout's engine, installed (scripts/setup.sh installs it editable) or not
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from perp_engine.resources.heap import tuned_environ  # noqa: E402
from perp_engine.resources.memory_meter import MIB, PeakMemory, rss_mb  # noqa: E402,F401  (the benches use the engine's meter)

QUICK_TRAINING = {"steps": 2, "seqlen": 64, "calib_samples": 4, "eval_tokens": 512}


def parse_args(description: str, steps: int | None = None, rounds: int | None = None,
               extra: list[tuple[str, dict]] = ()) -> argparse.Namespace:
    """``--device``, ``--threads``, ``--quick``, ``--steps`` for a bench that trains ``steps`` by default,
    ``--rounds`` for one that repeats every measured case ``rounds`` times by default, and the bench's own
    ``extra`` flags (name, ``add_argument`` keywords)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every measured process")
    parser.add_argument("--quick", action="store_true",
                        help="shrunk sizes for a 1-2 minute smoke check; results go to bench/results/quick/")
    if steps is not None:
        parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps per run (per block when "
                            f"reconstructing); default {steps}, {QUICK_TRAINING['steps']} with --quick")
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds,
                            help="measured runs of every case, each in a fresh process; medians are reported")
    for flag, options in extra:
        parser.add_argument(flag, **options)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if getattr(args, "steps", None) is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if getattr(args, "rounds", None) is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def positive_int(text: str) -> int:
    """argparse ``type`` of a bench's own count flag: an integer >= 1, or argparse's one-line error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use an integer >= 1")
    return value


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

    from perp_engine.model.load import resolve_device

    torch.set_num_threads(threads)
    return resolve_device(device)


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (what ``uptime`` prints), None where the system has none: other
    processes competing for the cores show up in every time a bench measures."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_facts(device: str, threads: int) -> dict:
    """CPU model, cores, threads, library versions, the accelerator's name and the load average now: enough to
    compare two runs (``write_results`` adds the load average at the end)."""
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
        "libc": " ".join(platform.libc_ver()),
        "glibc_tunables": tuned_environ(os.environ).get("GLIBC_TUNABLES"),  # what run_isolated's processes get
        "device": device,
        "device_name": _cpu_model(),
        "commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average": load_average(),
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

    It starts with the C heap settings a local worker gets (perp_engine.resources.heap). ``fn`` must be a top-level function
    of the bench script and its arguments and result picklable."""
    saved = dict(os.environ)
    os.environ.update(tuned_environ(saved))  # a spawned process starts with the environment of this one
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gap_closed(dense: float, pruned: float, final: float) -> float:
    """Share of the pruning damage undone, on the log-perplexity scale (perp_engine.evaluation.recovery.recovered_share):
    1 = back to dense, 0 = no better than pruned, nan when pruning did no harm (under 1% perplexity)."""
    from perp_engine.evaluation.recovery import recovered_share

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


def results_stem(name: str, args: argparse.Namespace) -> Path:
    """bench/results/<name>-<device> (under bench/results/quick with --quick), without a suffix."""
    folder = RESULTS / "quick" if args.quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{args.device}"


def read_results(name: str, args: argparse.Namespace) -> dict:
    """The JSON a previous run of the bench wrote (for a bench that recomputes its predictions)."""
    return json.loads(results_stem(name, args).with_suffix(".json").read_text())


def cases_left_alone(name: str, args: argparse.Namespace, label_of: Callable[[dict], str]) -> list[dict]:
    """The cases of the results file that ``--only`` does not select: a bench that measures some cases again keeps
    the others (none without ``--only`` or without a results file). A kept case without a :func:`stamp` gets the
    file's commit and date, as an upper bound (that file may itself have kept cases of an earlier run)."""
    if not args.only or not results_stem(name, args).with_suffix(".json").exists():
        return []
    saved = read_results(name, args)
    earlier = f"{saved['machine']['commit']} or earlier ({saved['machine']['date']} or earlier)"
    return [{"measured_at": earlier, **case} for case in saved["cases"] if args.only not in label_of(case)]


def stamp(case: dict, facts: dict) -> dict:
    """``case`` with the commit and date of the run that measured it, which stay with it when a later ``--only``
    run keeps it (the results file's header names the latest run only)."""
    return {**case, "measured_at": f"{facts['commit']} ({facts['date']})"}


def measured_at_note(cases: list[dict], label_of: Callable[[dict], str]) -> str:
    """A sentence naming which cases each run measured, when the cases come from more than one run; else ''."""
    runs: dict[str, list[str]] = {}
    for case in cases:
        runs.setdefault(case.get("measured_at", "unknown run"), []).append(label_of(case))
    if len(runs) < 2:
        return ""
    return ("Cases from more than one run (`--only` re-measured some): " +
            "; ".join(f"at {at}: {', '.join(labels)}" for at, labels in runs.items()) + ".")


def write_results(name: str, args: argparse.Namespace, facts: dict, sizes: dict, payload: dict, body_md: str,
                  echo: bool = True, keep_facts: bool = False) -> Path:
    """Write ``<name>-<device>.json`` and ``.md`` (see :func:`results_stem`), print the markdown unless not
    ``echo``, and return the JSON path. ``keep_facts``: ``facts`` come from an earlier run's file, end load
    included."""
    if not keep_facts:
        facts = {**facts, "load_average_at_end": load_average()}
    stem = results_stem(name, args)
    data = {"bench": name, "quick": bool(args.quick), "machine": facts, "sizes": sizes, **payload}
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    title = f"## {name} ({args.device})" + (" — QUICK smoke run, shrunk sizes, not a measurement" if args.quick else "")
    machine = (f"{facts['device_name'] if args.device == 'cuda' else facts['cpu']}, {facts['threads']} thread(s) "
               f"of {facts['logical_cores']} logical cores, torch {facts['torch']}, transformers {facts['transformers']}, "
               f"commit {facts['commit']}, {facts['date']}  \nLoad average (1, 5, 15 min): {facts['load_average']} "
               f"when the facts were taken, {facts['load_average_at_end']} at the end")
    size_text = ", ".join(f"{k} {v}" for k, v in sizes.items())
    md = f"{title}\n\n{machine}  \nSizes: {size_text}\n\n{body_md}\n"
    stem.with_suffix(".md").write_text(md)
    if echo:
        print(md)
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return stem.with_suffix(".json")
