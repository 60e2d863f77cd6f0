"""Retraining cost and recovery per preset: peak memory, seconds per step, trainable share, perplexity (issue 3).

Magnitude 50% on the embedded model, then each preset through perp_engine.run.pipeline.run_pipeline with the same
number of steps of batch 4, every run in a fresh process so its memory peak is its own. A first prune-only run
fills an artifact cache (dense perplexity, pruned weights) that the preset runs reuse, so every preset run
reaches its train stage by the same path. Every case runs ``--rounds`` times (3 by default), the rounds one after
the other; peaks, times and the ratios of each round are reported as medians (ratios: the median of the rounds'
ratios), perplexities from the first round. Then each case runs once more for 2 steps with the torch profiler's
memory events on, for the train stage's peak of tensor memory (``tensor_case``; ``--tensor-peaks-only`` adds these
to an existing results file without running the rounds again).

    .venv/bin/python bench/retrain_bench.py [--device cpu|cuda] [--threads 2] [--quick] [--steps 50] [--rounds 3]
                                            [--tensor-peaks-only]
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import warnings

import harness

from perp_engine.config import RunConfig
from perp_engine.reproduce.decisions import COST_MEMORY, COST_TIME, MATCH_SHARE

PRESETS = ("full-ft", "perp", "perp-masklora", "recon-masklora")
CHECKPOINTED = ("full-ft", "perp", "perp-masklora")  # run again with activation checkpointing
# perp and perp-masklora against full-ft with the same checkpointing (issues 3 and 10), and reconstruction's last
# block against its first (the cost of a block-step must not grow with depth). perp's memory, time and recovery goals
# are the paper reproduction's claim-1 thresholds (one home: perp_engine/reproduce/decisions.py).
GOALS = {"memory": COST_MEMORY, "masklora_memory": 0.65, "step_time": COST_TIME, "gap_closed": MATCH_SHARE,
         "last_block": 1.2}


def pipeline_case(config_dict: dict, cache_dir: str, threads: int) -> dict:
    """run_pipeline on ``config_dict``: its train stage's peak memory (the engine's meter) and time.

    Also the steady-state time per progress unit of the train stage (a step when retraining, a block when
    reconstructing): the time between the first and the last unit's report over the units in between, so set-up
    before the first unit and the merge after the last are left out."""
    import time

    from perp_engine.run.pipeline import run_pipeline

    config = RunConfig.from_dict(config_dict)
    harness.setup_torch(config.device, threads)
    reached: dict[float, float] = {}  # progress fraction -> when it was first reported

    def progress(stage: str, fraction: float, message: str = "") -> None:
        if stage == "train" and fraction > 0.0:
            reached.setdefault(fraction, time.perf_counter())

    result = run_pipeline(config, progress, cache_dir=cache_dir)
    times = sorted(reached.values())
    return {
        "preset": config.preset, "checkpointing": config.grad_checkpointing, "dense_ppl": result.dense_ppl,
        "pruned_ppl": result.pruned_ppl, "final_ppl": result.final_ppl, "sparsity": result.sparsity,
        "timings": result.timings, "stage_memory_mb": result.stage_memory_mb,
        "steady_seconds_per_unit": (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None,
        "train_peak_mb": result.stage_memory_mb.get("train"), "memory_method": result.environment["memory_meter"],
        "block_train_seconds": [b.train_seconds for b in result.blocks],
        "trainable_params": result.trainable_params,
        "total_params": result.total_params, "trainable_fraction": result.trainable_fraction,
        "trainable_by_category": result.trainable_by_category, "blocks": len(result.blocks),
        "train_loss": result.train_loss, "reused": result.reused, "warnings": result.warnings, "notes": result.notes,
    }


def tensor_case(config_dict: dict, cache_dir: str, threads: int) -> dict:
    """The train stage's peak of tensor memory, in MiB: the bytes of every tensor Python can reach when the stage
    starts, plus the highest running sum of what the CPU allocator handed out minus what it took back during the
    stage (the torch profiler's memory events). That is what ``torch.cuda.max_memory_allocated`` measures on a GPU;
    the RSS peak of the same stage also holds what the C library's allocator keeps of freed blocks. On a GPU the
    pipeline's own meter is that measure already, and the run is not profiled."""
    from torch.profiler import ProfilerActivity, profile

    from perp_engine.run.pipeline import run_pipeline

    config = RunConfig.from_dict(config_dict)
    harness.setup_torch(config.device, threads)
    if config.device == "cuda":
        result = run_pipeline(config, cache_dir=cache_dir)
        return {"preset": config.preset, "checkpointing": config.grad_checkpointing,
                "tensor_peak_mb": result.stage_memory_mb["train"]}
    state: dict = {}

    def progress(stage: str, fraction: float, message: str = "") -> None:
        if stage == "train" and "profiler" not in state:
            state["start"] = _reachable_tensor_bytes()
            state["profiler"] = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            state["profiler"].start()
        elif stage != "train" and "profiler" in state and "stopped" not in state:  # the next stage begins
            state["profiler"].stop()
            state["stopped"] = True

    run_pipeline(config, progress, cache_dir=cache_dir)
    # kineto_results holds the raw allocation events in order; the public tables only aggregate them per operator
    events = sorted((e for e in state["profiler"].profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    held = highest = 0
    for event in events:
        held += event.nbytes()
        highest = max(highest, held)
    return {"preset": config.preset, "checkpointing": config.grad_checkpointing, "start_mb": state["start"] / harness.MIB,
            "tensor_peak_mb": (state["start"] + highest) / harness.MIB}


def _reachable_tensor_bytes() -> int:
    """Bytes of the distinct storages of every tensor the garbage collector knows (parameters included)."""
    import torch

    storages = {}
    with warnings.catch_warnings():  # isinstance() on deprecated module attributes (torch.distributed.reduce_op) warns
        warnings.simplefilter("ignore", FutureWarning)
        tensors = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
    for tensor in tensors:
        if tensor.device.type == "cpu" and not tensor.is_meta:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


CASES = [(p, False) for p in PRESETS] + [(p, True) for p in CHECKPOINTED]
CHECKPOINTED_KEYS = [(p, c) for c in (False, True) for p in CHECKPOINTED]
TENSOR_STEPS = 2  # enough for every allocation of a step (AdamW's state appears at the first)


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], steps=20, rounds=3, extra=[
        ("--tensor-peaks-only", {"action": "store_true", "help": "measure only the tensor peaks and add them to the "
                                 "existing results file (its rounds are kept)"})])
    earlier = harness.read_results("retrain_bench", args) if args.tensor_peaks_only else None
    sizes = earlier["sizes"] if earlier else harness.training_sizes(args, steps=20)
    common = dict(method="magnitude", sparsity=0.5, device=args.device, **sizes)
    rounds: list[dict[tuple[str, bool], dict]] = []
    with tempfile.TemporaryDirectory(prefix="perp-bench-cache-") as cache_dir:
        pruned = harness.run_isolated(pipeline_case, RunConfig.create("none", **common).to_dict(), cache_dir, args.threads)
        print(f"dense ppl {pruned['dense_ppl']:.3f}, pruned ppl {pruned['pruned_ppl']:.3f}", flush=True)
        for number in range(1, 0 if earlier else args.rounds + 1):
            runs = {}
            for preset, checkpointing in CASES:
                config = RunConfig.create(preset, grad_checkpointing=checkpointing, **common)
                load = harness.load_average()
                run = harness.run_isolated(pipeline_case, config.to_dict(), cache_dir, args.threads)
                run.update(lr=config.lr, load_average=load)
                runs[(preset, checkpointing)] = run
                print(f"round {number} {preset}{' (checkpointing)' if checkpointing else ''}: final ppl "
                      f"{run['final_ppl']:.3f}, train {run['timings']['train']:.1f} s, train peak "
                      f"{run['train_peak_mb']:.0f} MiB, load {load}", flush=True)
            rounds.append(runs)
        tensors = {}
        for preset, checkpointing in CASES:
            config = RunConfig.create(preset, grad_checkpointing=checkpointing, **{**common, "steps": TENSOR_STEPS})
            tensors[(preset, checkpointing)] = run = harness.run_isolated(tensor_case, config.to_dict(), cache_dir,
                                                                          args.threads)
            print(f"{preset}{' (checkpointing)' if checkpointing else ''}: tensor peak {run['tensor_peak_mb']:.0f} MiB",
                  flush=True)
    tensor_facts = harness.machine_facts(args.device, args.threads)
    if earlier:
        rounds = [{(run["preset"], run["checkpointing"]): run for run in runs} for runs in earlier["rounds"]]
        body, payload = _report(earlier["prune_run"], rounds, sizes["steps"], tensors, tensor_facts)
        harness.write_results("retrain_bench", args, earlier["machine"], sizes, payload, body, keep_facts=True)
    else:
        body, payload = _report(pruned, rounds, sizes["steps"], tensors, tensor_facts)
        harness.write_results("retrain_bench", args, tensor_facts, sizes, payload, body)


def _per_step(run: dict, steps: int) -> None:
    """Add seconds per step (recon: per block-step) and its steady-state value to ``run``."""
    recon = run["preset"].startswith("recon")
    run["seconds_per_step"] = run["timings"]["train"] / (steps * run["blocks"] if recon else steps)
    steady = run["steady_seconds_per_unit"]
    run["steady_seconds_per_step"] = steady / steps if steady is not None and recon else steady


def _median(rounds: list[dict], key: tuple[str, bool], field: str) -> float | None:
    values = [runs[key][field] for runs in rounds if runs[key][field] is not None]
    return statistics.median(values) if values else None


def _median_ratio(rounds: list[dict], of: tuple[str, bool], to: tuple[str, bool], field: str) -> float:
    return statistics.median(runs[of][field] / runs[to][field] for runs in rounds)


def _report(pruned: dict, rounds: list[dict], steps: int, tensors: dict, tensor_facts: dict) -> tuple[str, dict]:
    dense, before = pruned["dense_ppl"], pruned["pruned_ppl"]
    for runs in rounds:
        for run in runs.values():
            _per_step(run, steps)
            run["gap_closed"] = harness.gap_closed(dense, before, run["final_ppl"])
            blocks = run["block_train_seconds"]
            run["last_block_ratio"] = blocks[-1] / blocks[0] if run["preset"].startswith("recon") else None
    first = rounds[0]
    rows = []
    for key in CASES:
        run = first[key]
        peaks = [runs[key]["train_peak_mb"] for runs in rounds]
        steady = _median(rounds, key, "steady_seconds_per_step")
        recon = run["preset"].startswith("recon")
        rows.append([run["preset"] + (" + checkpointing" if run["checkpointing"] else ""), f"{run['lr']:g}",
                     f"{statistics.median(peaks):.0f}", f"{min(peaks):.0f}-{max(peaks):.0f}",
                     f"{tensors[key]['tensor_peak_mb']:.0f}",
                     f"{_median(rounds, key, 'seconds_per_step'):.2f}" + (" per block-step" if recon else ""),
                     "-" if steady is None else f"{steady:.2f}",
                     f"{run['trainable_params']:,} ({run['trainable_fraction']:.3%})", f"{run['final_ppl']:.2f}",
                     f"{run['gap_closed']:.1%}"])
    goals = []
    for checkpointing in (False, True):
        full, perp, masklora = ((p, checkpointing) for p in CHECKPOINTED)
        how = "with" if checkpointing else "without"
        goals += [
            harness.goal_line(f"perp train-stage peak memory vs full-ft, {how} checkpointing",
                              _median_ratio(rounds, perp, full, "train_peak_mb"), "<=", GOALS["memory"]),
            harness.goal_line(f"perp-masklora train-stage peak memory vs full-ft, {how} checkpointing",
                              _median_ratio(rounds, masklora, full, "train_peak_mb"), "<=", GOALS["masklora_memory"]),
        ]
    for checkpointing in (False, True):
        full, perp, masklora = (tensors[(p, checkpointing)]["tensor_peak_mb"] for p in CHECKPOINTED)
        how = "with" if checkpointing else "without"
        goals += [
            harness.goal_line(f"the same, tensor memory (as a GPU counts it): perp vs full-ft, {how} checkpointing",
                              perp / full, "<=", GOALS["memory"]),
            harness.goal_line(f"the same, tensor memory: perp-masklora vs full-ft, {how} checkpointing",
                              masklora / full, "<=", GOALS["masklora_memory"]),
        ]
    perp, full, recon = ("perp", False), ("full-ft", False), ("recon-masklora", False)
    goals += [
        harness.goal_line("perp seconds per step vs full-ft", _median_ratio(rounds, perp, full, "seconds_per_step"),
                          "<=", GOALS["step_time"]),
        harness.goal_line("perp log-ppl gap closed vs full-ft's", first[perp]["gap_closed"] / first[full]["gap_closed"],
                          ">=", GOALS["gap_closed"]),
        harness.goal_line("reconstruction: seconds of the last block's steps vs the first block's",
                          _median(rounds, recon, "last_block_ratio"), "<=", GOALS["last_block"]),
    ]
    floors = {key: _resident_floor(rounds, key, tensors[key]) for key in CHECKPOINTED_KEYS}
    full_floor = floors[("full-ft", False)]
    floor_line = (
        "Resident floor (what the train peak would be if the C library reused every freed byte: the process just "
        "before the train stage, i.e. the median peak of the pruned_eval stage, which is reused from the cache and "
        "computes nothing, plus the tensor peak's growth over the tensors held at the stage's start), without "
        "checkpointing: " + ", ".join(f"{p} {floors[(p, False)]:.0f} MiB" for p in CHECKPOINTED) + "; perp vs "
        f"full-ft {floors[('perp', False)] / full_floor:.3f}x, perp-masklora vs full-ft "
        f"{floors[('perp-masklora', False)] / full_floor:.3f}x.")
    table = harness.markdown_table(["preset", "lr", "train peak MiB", "range", "tensor peak MiB", "s / step",
                                    "steady s / step", "trainable", "final ppl", "gap closed"], rows)
    loads = [run["load_average"] for runs in rounds for run in runs.values() if run["load_average"]]
    busiest = max((load[0] for load in loads), default=None)
    text = "\n".join([
        f"Magnitude 50% unstructured; dense ppl **{dense:.3f}**, pruned ppl **{before:.3f}**. {steps} steps of batch "
        f"4 per preset (recon: per block), every case run {len(rounds)} time(s), each run in a fresh process: peaks and "
        "times are medians (range: the lowest and highest peak), goal ratios the median of the rounds' ratios, "
        "perplexities from the first round. Train peak MiB: the train stage's peak (RunResult.stage_memory_mb: the "
        f"whole process, {first[perp]['memory_method']}). Tensor peak MiB: the same stage's peak of tensor memory "
        f"(retrain_bench.tensor_case: what every reachable tensor held at the stage's start plus the highest running "
        "sum of the CPU allocator's allocations and frees during it, from the torch profiler's memory events), what "
        "torch.cuda.max_memory_allocated counts on a GPU; the RSS peak also holds what the C library's allocator "
        f"keeps of freed blocks. Measured once per case in a {TENSOR_STEPS}-step run at commit "
        f"{tensor_facts['commit']}, load average {tensor_facts['load_average']}. s / step: train-stage time / steps; "
        "steady s / step: time between the first and the last step's report per step, without set-up and merge (recon: "
        "between the first and the last block's, per block-step, so each block's targets, attach and merge count). "
        "Gap closed: (log pruned - log final) / (log pruned - log dense). Reconstruction per block (median): "
        f"first block's steps {_median_block(rounds, 0):.2f} s, last block's {_median_block(rounds, -1):.2f} s. "
        f"Highest 1-minute load average seen at the start of a run: {busiest}.",
        "",
        table,
        "",
        floor_line,
        "",
        "Goals:",
        *[g["line"] for g in goals],
    ])
    payload = {"dense_ppl": dense, "pruned_ppl": before, "prune_run": pruned,
               "rounds": [[run for run in runs.values()] for runs in rounds],
               "tensor_peaks": {"machine": tensor_facts, "steps": TENSOR_STEPS, "runs": list(tensors.values())},
               "resident_floor_mb": {f"{p}{' + checkpointing' if c else ''}": mb for (p, c), mb in floors.items()},
               "goals": goals}
    return text, payload


def _resident_floor(rounds: list[dict], key: tuple[str, bool], tensors: dict) -> float:
    """The process's memory before the train stage (the median peak of the reused pruned_eval stage) plus the
    train stage's tensor growth: its resident peak if no freed byte stayed unused."""
    before = statistics.median(runs[key]["stage_memory_mb"]["pruned_eval"] for runs in rounds)
    return before + tensors["tensor_peak_mb"] - tensors["start_mb"]


def _median_block(rounds: list[dict], index: int) -> float:
    return statistics.median(runs[("recon-masklora", False)]["block_train_seconds"][index] for runs in rounds)


if __name__ == "__main__":
    main()
