"""``perp estimate``: what a run would cost before it runs, from the model's config alone (no weights read).

Takes the same flags as ``perp run`` and prints the predicted time per stage (perp_engine.resources.estimate), the
predicted peak memory of every stage with offload none, cpu and disk, whether the run fits this machine's
device now and which mode ``--offload auto`` would pick, and whether pruning, PERP and full retraining of the
same model fit a 24 GB and an 80 GB GPU (perp_engine.resources.memory_model). ``--json`` prints the same as JSON.
A model folder holding only its config.json is enough.
"""

from __future__ import annotations

import argparse
import json

from ..resources.memory_meter import GIB
from .config_flags import add_config_flags, config_from_args


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "estimate", help="predict a run's time and memory, and whether it fits, without running it",
        description="Predict the time and the peak memory of every stage of a run, with each offload mode, and "
                    "whether it fits this machine and a 24 GB / 80 GB GPU. Reads the model's config only: a "
                    "folder with just config.json is enough.")
    add_config_flags(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from ..resources.estimate import estimate_run  # torch loads here, not when `perp --help` imports this module
    from ..resources.memory_model import gpu_fits, plan_memory
    from ..run.preflight import Preflight

    Preflight().check_model(config)
    estimate = estimate_run(config)
    plan, gpus = plan_memory(config), gpu_fits(config)
    if args.json:
        print(json.dumps(to_dict(config, estimate, plan, gpus), indent=2))
    else:
        print(report(config, estimate, plan, gpus))
    return 0


def to_dict(config, estimate, plan, gpus) -> dict:
    return {
        "config": config.to_dict(),
        "total_params": estimate.total_params,
        "model_params": estimate.model_params,
        "trainable_params": estimate.trainable_params,
        "trainable_fraction": estimate.trainable_fraction,
        "time": {"device": estimate.device, "seconds": estimate.seconds, "stages": estimate.breakdown},
        "memory": plan.to_dict(),
        "gpus": {recipe: {gpu: {"fits": f.fits, "offload": f.offload, "need_gib": round(f.need / GIB, 2)}
                          for gpu, f in by_gpu.items()} for recipe, by_gpu in gpus.items()},
        "notes": estimate.notes,
    }


def report(config, estimate, plan, gpus) -> str:
    from ..resources.estimate import format_seconds
    from ..resources.memory_model import offload_modes

    trained = (f"trains {estimate.trainable_params:,}: {estimate.trainable_text}" if estimate.trainable else "prune only")
    lines = [f"model {config.model}: {estimate.model_params:,} parameters, {config.dtype}; {trained}",
             f"time on {estimate.device}: about {format_seconds(estimate.seconds)} ("
             + ", ".join(f"{stage} {format_seconds(s)}" for stage, s in estimate.breakdown.items()) + ")", ""]
    modes = offload_modes(plan.device)
    lines.append(f"peak memory per stage, GiB on {plan.device}" + (" (+ CPU memory beside it)" if plan.device != "cpu" else "")
                 + (" (offload cpu is none on a CPU device)" if plan.device == "cpu" else ""))
    lines.append(f"{'stage':<17}" + "".join(f"{'offload ' + m:>18}" for m in modes))
    for i, stage in enumerate(plan.modes["none"].stages):
        cells = [plan.modes[m].stages[i] for m in modes]
        lines.append(f"{stage.stage:<17}" + "".join(f"{_gib(s.device_bytes, s.host_bytes, plan.device):>18}" for s in cells))
    lines.append(f"{'peak':<17}" + "".join(f"{_gib(plan.modes[m].peak_device, plan.modes[m].peak_host, plan.device):>18}"
                                            for m in modes))
    device_room, host_room = plan.room
    room = f"{device_room / GIB:.1f} GiB" + (f" (+ {host_room / GIB:.1f} GiB CPU memory)" if plan.device != "cpu" else "")
    fitting = [m for m in modes if plan.fits_here(m)]
    lines.append(f"this machine's {plan.device} has {room} available: "
                 + (f"fits with offload {', '.join(fitting)}" if fitting else "does not fit with any offload")
                 + f"; --offload auto picks {plan.auto}")
    lines += ["", "on a GPU (its memory only; least offloading that fits):",
              f"{'recipe':<10}" + "".join(f"{gpu:>26}" for gpu in next(iter(gpus.values())))]
    for recipe, by_gpu in gpus.items():
        lines.append(f"{recipe:<10}" + "".join(f"{_fit(f):>26}" for f in by_gpu.values()))
    lines += [f"note: {n}" for n in estimate.notes]
    lines.append("predictions: the memory model is within 25% of measured runs, those it was calibrated on and "
                 "hold-out ones (bench/memory_bench.py), the time within ~2x")
    return "\n".join(lines)


def _gib(device: float, host: float, device_type: str) -> str:
    return f"{device / GIB:.2f}" + (f" +{host / GIB:.1f}" if device_type != "cpu" else "")


def _fit(fit) -> str:
    if not fit.fits:
        return f"no (needs {fit.need / GIB:.1f} GiB)"
    return f"yes, {fit.offload} ({fit.need / GIB:.1f} GiB)"
