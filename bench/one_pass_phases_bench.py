"""Where the seconds of one-pass pruning go (issue 31): SparseGPT's `--sequential layer` by phase, and the cost of the
lock step itself.

On the embedded model, 32 calibration windows of 256 tokens in chunks of the pipeline's batch size, each case in its
own process (started as the tool's workers are), ``--rounds`` rounds, medians:

- the 30 blocks' forward chunk by chunk (block mode's output pass: each chunk through the whole block in turn);
- the same forward in lock step (``prune_block_in_one_pass`` with nothing to prune and no statistics gathered: the
  chunks pause at every linear that reads a new input, as in layer mode);
- SparseGPT's layer-mode stage (unstructured and 2:4) with a timer on each phase: the Hessians (``add_batch``), the
  factors (``inverse_factor``), the column loop, the mask thresholds (unstructured), the rest of ``prune_sparsegpt``
  (copies, the products between blocks of columns) and writing the weights back. What the timers do not cover is the
  forward in lock step with its hand-overs.

Each case also reports the process's minor page faults and system CPU seconds over the stage (``getrusage``): the
lock step keeps every chunk's activations alive at a pause, and the C heap trims and regrows around them. Nothing
here has a goal: prune_bench times the stage; this file backs the phase seconds the README quotes.

    .venv/bin/python bench/one_pass_phases_bench.py [--threads 2] [--rounds 3] [--quick]
"""

from __future__ import annotations

import functools
import resource
import statistics
import time
from collections import Counter

import harness

CASES = ("chunk by chunk", "lock step", "sparsegpt unstructured", "sparsegpt 2:4")
PHASES = ("Hessians", "factors", "column loop", "mask thresholds", "rest of prune_sparsegpt", "writing weights")


def _setup(sizes: dict, threads: int):
    """(model, calibration samples, config) in this process, after the warm-up prune_bench makes."""
    import torch

    from perp_engine.config import RunConfig
    from perp_engine.data.corpora import load_corpus
    from perp_engine.data.sampling import calibration_samples
    from perp_engine.model.load import load_model

    harness.setup_torch("cpu", threads)
    config = RunConfig.create(calib_samples=sizes["calib_samples"], seqlen=sizes["seqlen"])
    model, tokenizer = load_model(config.model)
    corpus = load_corpus(config.dataset)
    calib = calibration_samples(tokenizer, corpus.calib_text, config.calib_samples, config.seqlen, config.seed)
    with torch.no_grad():
        model(input_ids=calib[:1, :32])
    return model, calib, config


def _metered(fn) -> dict:
    """Wall seconds, minor page faults and system CPU seconds of ``fn()``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "page_faults": after.ru_minflt - before.ru_minflt,
            "system_seconds": after.ru_stime - before.ru_stime, "load_average": harness.load_average()}


def forward_case(sizes: dict, threads: int, lock_step: bool) -> dict:
    """The 30 blocks' forward over the calibration chunks, chunk by chunk or in lock step (nothing pruned)."""
    import torch

    from perp_engine.model.blocks import find_decoder_blocks, find_linears
    from perp_engine.model.capture import capture_block_inputs, run_block
    from perp_engine.pruning import stats
    from perp_engine.pruning.one_pass import prune_block_in_one_pass

    model, calib, config = _setup(sizes, threads)
    _, blocks = find_decoder_blocks(model)
    inputs = capture_block_inputs(model, calib, config.batch_size)
    stats.LayerStats.add_batch = lambda *_args, **_kwargs: None  # the bare lock step: no statistics gathered

    def chunk_by_chunk():
        state = inputs
        with torch.no_grad():
            for block in blocks:
                state = state.with_hidden(run_block(block, state))

    def in_lock_step():
        state = inputs
        for block in blocks:
            outputs = prune_block_in_one_pass(block, find_linears(block), state, lambda *_args: None, hessian=False)
            state = state.with_hidden(outputs)

    return _metered(in_lock_step if lock_step else chunk_by_chunk)


def _timer(phases: Counter, phase: str, fn):
    """``fn`` with its wall seconds added to ``phases[phase]``."""
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[phase] += time.perf_counter() - start
    return timed


def install_timers(phases: Counter, assign=setattr) -> None:
    """Put a timer on each of SparseGPT's phases where the engine looks it up (``assign``: how to set an attribute;
    a test passes its monkeypatch's). ``phases["prune_sparsegpt"]`` holds the column loop and the thresholds too."""
    from perp_engine.pruning import patterns, prune, sequential, sparsegpt, stats

    for owner, name, phase in ((stats.LayerStats, "add_batch", "Hessians"), (prune, "inverse_factor", "factors"),
                               (sparsegpt, "_propagate_within_block", "column loop"),
                               (patterns, "row_thresholds", "mask thresholds"),
                               (prune, "prune_sparsegpt", "prune_sparsegpt"), (sequential, "set_weight", "writing weights")):
        assign(owner, name, _timer(phases, phase, getattr(owner, name)))


def phase_seconds(phases: Counter) -> dict[str, float]:
    """The seconds of each of :data:`PHASES` from what :func:`install_timers` counted."""
    rest = phases["prune_sparsegpt"] - phases["column loop"] - phases["mask thresholds"]
    return {phase: rest if phase == "rest of prune_sparsegpt" else phases[phase] for phase in PHASES}


def sparsegpt_case(sizes: dict, threads: int, pattern: str) -> dict:
    """SparseGPT's layer-mode stage as the pipeline runs it, with a timer on each phase."""
    from perp_engine.pruning.configured import prune_as_configured

    model, calib, config = _setup(sizes, threads)
    config = config.replace(method="sparsegpt", pattern=pattern, sparsity=0.5, sequential="layer")
    phases: Counter = Counter()
    install_timers(phases)
    result = _metered(lambda: prune_as_configured(model, calib, config))
    result["phases"] = phase_seconds(phases)
    result["forward_and_hand_overs"] = result["seconds"] - sum(result["phases"].values())
    return result


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], rounds=3)
    sizes = ({"calib_samples": 4, "seqlen": 64} if args.quick else {"calib_samples": 32, "seqlen": 256})
    sizes["rounds"] = 1 if args.quick else args.rounds
    facts = harness.machine_facts("cpu", args.threads)
    runs: dict[str, list[dict]] = {case: [] for case in CASES}
    for round_index in range(sizes["rounds"]):
        for case in CASES:
            if case.startswith("sparsegpt"):
                run = harness.run_isolated(sparsegpt_case, sizes, args.threads, case.split()[1])
            else:
                run = harness.run_isolated(forward_case, sizes, args.threads, case == "lock step")
            runs[case].append(run)
            print(f"round {round_index + 1}, {case}: {run['seconds']:.2f} s, {run['page_faults']} page faults, "
                  f"load {run['load_average']}", flush=True)
    body, payload = _report(runs)
    harness.write_results("one_pass_phases_bench", args, facts, sizes, payload, body)


def _report(runs: dict[str, list[dict]]) -> tuple[str, dict]:
    median = {case: {key: statistics.median(r[key] for r in case_runs)
                     for key in ("seconds", "page_faults", "system_seconds")} for case, case_runs in runs.items()}
    lock_step = statistics.median(b["seconds"] - a["seconds"]
                                  for a, b in zip(runs["chunk by chunk"], runs["lock step"]))
    forwards = harness.markdown_table(
        ["30 blocks' forward", "seconds", "minor page faults", "system CPU seconds"],
        [[case, f"{median[case]['seconds']:.2f}", f"{median[case]['page_faults']:,.0f}",
          f"{median[case]['system_seconds']:.2f}"] for case in ("chunk by chunk", "lock step")])
    sparse = [case for case in CASES if case.startswith("sparsegpt")]
    phase_rows = [[phase] + [f"{statistics.median(r['phases'][phase] for r in runs[case]):.2f}" for case in sparse]
                  for phase in PHASES]
    phase_rows.append(["forward in lock step and hand-overs (the rest)"]
                      + [f"{statistics.median(r['forward_and_hand_overs'] for r in runs[case]):.2f}" for case in sparse])
    phase_rows.append(["**whole stage**"] + [f"**{median[case]['seconds']:.2f}**" for case in sparse])
    phase_rows.append(["minor page faults"] + [f"{median[case]['page_faults']:,.0f}" for case in sparse])
    phases = harness.markdown_table(["SparseGPT, `--sequential layer`, wall seconds"] + sparse, phase_rows)
    body = (f"Median of the rounds, each case in its own process.\n\n{forwards}\n\nLock step minus chunk by chunk, "
            f"same rounds: {lock_step:+.2f} s (median).\n\n{phases}\n")
    return body, {"runs": runs, "median": median, "lock_step_extra_seconds": lock_step}


if __name__ == "__main__":
    main()
