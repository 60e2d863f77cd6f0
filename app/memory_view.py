"""What the Experiment page says about memory before a launch: whether the run fits the device it would use,
with and without offloading, from perp_engine.resources.memory_model's plan. No Streamlit here."""

from __future__ import annotations

from perp_engine.resources.memory_meter import GIB
from perp_engine.resources.memory_model import MemoryPlan, offload_modes

DEVICE_NAMES = {"cpu": "this CPU's memory", "cuda": "this GPU", "mps": "this Apple GPU"}


def fit_summary(plan: MemoryPlan, offload: str) -> str:
    """One sentence: does the run fit with the chosen ``offload`` (``auto``: the mode auto picks), and if not,
    with which mode it would."""
    where = DEVICE_NAMES.get(plan.device, plan.device)
    mode = plan.auto if offload == "auto" else offload
    chosen = plan.modes[mode]
    room = f"{plan.room[0] / GIB:.1f} GiB available"
    if plan.fits_here(mode):
        how = "without offloading" if mode == "none" else f"with offload {mode}"
        return f"**Fits** {where} ({room}) {how}: peak {chosen.peak_device / GIB:.2f} GiB."
    better = [m for m in offload_modes(plan.device) if plan.fits_here(m)]
    text = f"**Does not fit** {where} with offload {mode}: peak {chosen.peak_device / GIB:.2f} GiB, {room}."
    if better:
        return text + f" Offload {better[0]} would fit (peak {plan.modes[better[0]].peak_device / GIB:.2f} GiB)."
    return text + " No offload mode fits: use a smaller model, bfloat16, shorter sequences or a smaller batch."


def mode_line(plan: MemoryPlan) -> str:
    """Predicted peak with each offload mode that differs on this device, marked when it fits: ``none 1.42 GiB
    (fits) · disk 1.20 GiB (fits) · auto picks none``; on a GPU with the CPU memory each mode needs beside it."""
    cells = []
    for mode in offload_modes(plan.device):
        estimate = plan.modes[mode]
        host = f" + {estimate.peak_host / GIB:.1f} GiB CPU" if plan.device != "cpu" else ""
        cells.append(f"{mode} {estimate.peak_device / GIB:.2f} GiB{host} ({'fits' if plan.fits_here(mode) else 'too big'})")
    return "Predicted peak memory by offload: " + " · ".join(cells) + f" · auto picks {plan.auto}"
