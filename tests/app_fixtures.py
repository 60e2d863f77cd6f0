"""Stores seeded with runs for the app tests: real pipeline runs of the tiny saved model, plus failed and queued
runs, and hand-made results with known numbers (including the local and accumulated layer errors of the
RunResult contract, and runs recorded before local errors existed) for the figure and Layers tests."""

from __future__ import annotations

from pathlib import Path

from perp_engine.config import RunConfig
from perp_engine.result import BlockRecord, LayerRecord, RunResult
from perp_engine.run.pipeline import run_pipeline
from perp_engine.store import RunStore

TINY = {"seqlen": 32, "calib_samples": 8, "eval_tokens": 256, "batch_size": 2, "steps": 3}
FAILURE = "model: cannot load '/nowhere' as a causal language model: no config.json"


def record(store: RunStore, config: RunConfig, result: RunResult, sweep_id: int | None = None) -> int:
    """Insert ``config`` as a finished run with ``result``, as a worker would."""
    run_id = store.create_run(config, sweep_id)
    store.start_run(run_id)
    store.log(run_id, f"run {run_id} recorded by the test fixture")
    store.record_result(run_id, result)
    return run_id


def made_up(config: RunConfig, dense: float, pruned: float, final: float | None = None, fraction: float = 0.0,
            losses: tuple[float, ...] = (), layers: list[LayerRecord] | None = None) -> RunResult:
    """A result with chosen numbers (for checking that charts plot exactly them)."""
    total = 1_000_000
    return RunResult(config=config.to_dict(), dense_ppl=dense, pruned_ppl=pruned, final_ppl=final,
                     sparsity=config.sparsity, total_params=total, trainable_params=int(fraction * total),
                     trainable_fraction=fraction, train_loss=list(losses), layers=layers or [],
                     blocks=[BlockRecord(block=b, loss_before=0.1 * (b + 1), loss_after=None if final is None else 0.05 * (b + 1))
                             for b in range(2)],
                     timings={"load": 0.1}, environment={"device": "cpu"})


SEEDED = {  # name -> (preset, RunConfig fields)
    "prune-only": ("none", {"method": "magnitude", "sparsity": 0.5}),
    "perp": ("perp", {"method": "wanda", "sparsity": 0.5}),
    "masklora-2:4": ("perp-masklora", {"method": "sparsegpt", "sparsity": 0.5, "pattern": "2:4"}),
    "recon": ("recon-norms", {"method": "wanda", "sparsity": 0.3}),
}


def seed_store(path: Path, model_dir: Path, text_file: Path) -> dict[str, int]:
    """A store holding real runs of the tiny model (SEEDED), a failed run and a queued one; returns their ids."""
    store = RunStore(path)
    ids = {}
    for name, (preset, fields) in SEEDED.items():
        config = RunConfig.create(preset, model=str(model_dir), dataset=str(text_file), **TINY, **fields)
        ids[name] = record(store, config, run_pipeline(config))
    failed = store.create_run(RunConfig.create("perp", model=str(model_dir), dataset=str(text_file), **TINY))
    store.start_run(failed)
    store.fail_run(failed, FAILURE)
    ids["failed"] = failed
    ids["queued"] = store.create_run(RunConfig.create("none", model=str(model_dir), dataset=str(text_file), **TINY))
    store.close()
    return ids


KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MEASURED_ON = {"count": 8, "seqlen": 256, "source": "wiki-embedded", "held_out": True}


def layer_errors(n_blocks: int = 4, *, local: bool = True, after: bool = True, sparsity: float = 0.5) -> tuple[list, list]:
    """Made-up layer and block records of a LLaMA-like model: local error 10^-3 (1 + block), drift ten times more;
    repair halves both. ``local=False``: a run recorded before local errors existed (drift only)."""
    layers = []
    for b in range(n_blocks):
        for kind in KINDS:
            err = 1e-3 * (1 + b)
            part = "mlp" if kind in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            layers.append({"name": f"model.layers.{b}.{part}.{kind}", "block": b, "kind": kind, "sparsity": sparsity,
                           "recon_error": err if local else None, "recon_error_after": err / 2 if local and after else None,
                           "drift": 10 * err, "drift_after": 5 * err if after else None, "numel": 4096})
    blocks = [{"block": b, "loss_before": 0.01 * (1 + b) if local else None,
               "loss_after": 0.005 * (1 + b) if local and after else None,
               "drift_before": 0.1 * (1 + b), "drift_after": 0.05 * (1 + b) if after else None} for b in range(n_blocks)]
    return layers, blocks


def layer_store(path: Path) -> dict[str, int]:
    """A store of made-up finished runs with per-layer records: ``new`` (both errors, repaired, measured on
    held-out windows), ``old`` (recorded before local errors: drift only, no measure_windows) and ``pruned``
    (prune only); returns their ids."""
    store = RunStore(path)
    ids = {}
    for name, preset, local, after in (("new", "perp", True, True), ("old", "perp", False, True),
                                       ("pruned", "none", True, False)):
        config = RunConfig.create(preset)
        result = made_up(config, 25.0, 60.0, 40.0 if after else None, 0.005 if after else 0.0).to_dict()
        result["layers"], result["blocks"] = layer_errors(local=local, after=after)
        if local:
            result["measure_windows"] = MEASURED_ON
        ids[name] = record(store, config, result)
    store.close()
    return ids
