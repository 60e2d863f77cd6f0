"""How many parameters a model (or any module) has, and the one home of the trainable percentage: what trains as a
share of the **model's own parameters** (before adapters are attached and before a tied head gets its own copy),
with the adapter weights and an untied head copy stated beside it, never folded into the denominator."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Parameters of the model, a tensor shared by several modules (a tied head) counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def trainable_share(trainable: int, model_params: int) -> float:
    """What trains (adapter weights included) as a share of the model's own parameters; 0 without a model count."""
    return trainable / model_params if model_params else 0.0


def compact_count(n: int) -> str:
    """``134.5M``, ``28.3M``, ``795.6k``, ``576``: a parameter count short enough for a sentence."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}"
    return str(int(n))


def percent(share: float) -> str:
    """``0.618%``, ``4.25%``, ``100%``: three significant digits."""
    return f"{100 * share:.3g}%"


def trainable_text(trainable: int, model_params: int, adapters: int = 0, head_copy: int = 0) -> str:
    """``0.618% of the model's 134.5M parameters (+ 1.2M adapter weights, + untied head 28.3M)``."""
    extras = [f"+ {compact_count(adapters)} adapter weights" if adapters else "",
              f"+ untied head {compact_count(head_copy)}" if head_copy else ""]
    extras = [e for e in extras if e]
    return (f"{percent(trainable_share(trainable, model_params))} of the model's {compact_count(model_params)} "
            "parameters" + (f" ({', '.join(extras)})" if extras else ""))


def recorded_trainable_text(record: Mapping) -> str | None:
    """:func:`trainable_text` of a stored result (``RunResult.to_dict()``); a run recorded before the model's own
    count existed gives its stored share of every parameter, adapters and any head copy included, and says so.
    None when nothing trained."""
    trainable = int(record.get("trainable_params") or 0)
    if not trainable:
        return None
    if record.get("model_params"):
        return trainable_text(trainable, int(record["model_params"]), int(record.get("adapter_params") or 0),
                              int(record.get("head_copy_params") or 0))
    total = int(record.get("total_params") or 0)
    return (f"{percent(trainable_share(trainable, total))} of {compact_count(total)} parameters, adapters and any "
            "untied head copy included (recorded before the model's own count was kept)")
