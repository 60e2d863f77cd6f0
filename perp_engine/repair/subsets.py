"""Which parameters retraining updates: PERP's subsets (biases, norms, head, head LoRA, embeddings, full), plus
adapters already attached; the exact count of what trains.

Everything is found generically (norms by a class name containing "Norm", embeddings by type, the head through
``get_output_embeddings``), and only shapes are read, so a model built on the meta device can be counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..config import SUBSETS
from ..errors import PerpError
from ..model.parameters import trainable_share
from ..result import NOTHING_TRAINED
from .adapters import adapter_modules, adapter_parameters, base_of
from .adapters.lora import attach_lora
from .tying import untie_head

# The head LoRA of ``head-lora``: the PERP paper's released recipe for the head, fixed whatever rank and alpha a run
# gives the adapters on the pruned linears (perp_engine.presets.DEFAULT_RANK / DEFAULT_ALPHA, the same numbers today).
HEAD_LORA_RANK = 16
HEAD_LORA_ALPHA = 32.0
# A tensor claimed by several selected categories is counted under the first of this order.
CATEGORY_ORDER = ("adapter", "head-lora", "norms", "biases", "head", "embeddings", "full")
_WHAT = {"biases": "bias parameters", "norms": "normalisation layers", "head": "output head",
         "head-lora": "output head LoRA", "embeddings": "embeddings", "full": "parameters"}


@dataclass
class TrainableReport:
    trainable: int
    total: int  # every parameter of the model, adapters included, tied tensors once, and a head copy made later
    fraction: float  # trainable / model_params (perp_engine.model.parameters.trainable_share)
    by_category: dict[str, int]
    tensors: list[str]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_params: int = 0  # the model's own parameters: total less the adapters and the untied head copy
    adapter_params: int = 0  # every attached adapter's weights (the head LoRA included)
    head_copy_params: int = 0  # the untied head's own copy of the tied matrix (0 when tied or untied before)


def select_trainable(model: nn.Module, subsets, untie: bool = True, scope: nn.Module | None = None) -> TrainableReport:
    """Make exactly the chosen subsets (and attached adapters) trainable, freeze the rest, and count.

    ``scope`` (one decoder block, for block-wise reconstruction) limits the selection to its parameters.
    ``head-lora`` attaches a plain LoRA (HEAD_LORA_RANK, HEAD_LORA_ALPHA) to the head unless one is there already.
    """
    subsets = tuple(subsets)
    for subset in subsets:
        if subset not in SUBSETS:
            raise PerpError("train", f"{subset!r} is not allowed; use any of {', '.join(SUBSETS)}")
    warnings: list[str] = []
    notes: list[str] = []
    total = 0  # every parameter of the model, adapters included, tied tensors once, and a head copy made later
    head_copy = 0
    if scope is None and {"head", "head-lora"} & set(subsets):
        head_notes, later, head_copy = _prepare_head(model, subsets, untie)
        total += later
        notes += head_notes
    if scope is None and "embeddings" in subsets and _tied(model):
        notes.append("the token embeddings are tied to lm_head: training the embeddings trains the head too")

    members = _members(model, subsets)
    allowed = None if scope is None else {id(p) for p in scope.parameters()}
    claimed: dict[int, str] = {}
    for category in CATEGORY_ORDER:
        for param in members.get(category, ()):
            if allowed is None or id(param) in allowed:
                claimed.setdefault(id(param), category)

    counts = {c: 0 for c in subsets}
    tensors = []
    for name, param in model.named_parameters():
        total += param.numel()
        category = claimed.get(id(param))
        param.requires_grad_(category is not None)
        if category is not None:
            counts[category] = counts.get(category, 0) + param.numel()
            tensors.append(name)
    by_category = {c: counts[c] for c in CATEGORY_ORDER if c in counts}
    trainable = sum(by_category.values())
    for subset in subsets:
        if not any(claimed.get(id(p)) is not None for p in members[subset]):
            where = "in the given scope" if scope is not None else f"in {type(model).__name__}"
            # a subset the model lacks (a LLaMA's biases) is a fact about the model while something else trains
            (notes if trainable else warnings).append(f"{subset}: no {_WHAT[subset]} {where}; {NOTHING_TRAINED}")
    adapters = sum(p.numel() for m in adapter_modules(model).values() for p in adapter_parameters(m))
    model_params = total - adapters - head_copy
    return TrainableReport(trainable=trainable, total=total, fraction=trainable_share(trainable, model_params),
                           by_category=by_category, tensors=tensors, warnings=warnings, notes=notes,
                           model_params=model_params, adapter_params=adapters, head_copy_params=head_copy)


def _tied(model: nn.Module) -> bool:
    head = model.get_output_embeddings()
    return head is not None and base_of(head).weight is model.get_input_embeddings().weight


def _prepare_head(model: nn.Module, subsets: tuple[str, ...], untie: bool) -> tuple[list[str], int, int]:
    """Untie (or say what tying means) and attach the head LoRA; returns notes, the parameters of a head copy
    made later (see below), which count in the model's total, and the size of the head copy (made now or later).

    A tied head that only gets a LoRA stays tied while training (its matrix is frozen, so sharing it is
    harmless) and is untied when the LoRA merges (``untie_head`` in the repair), after the training's
    activations are freed: the copy never adds to the training peak."""
    notes = []
    later = copy = 0
    head_name, head = _head(model)
    if _tied(model):
        size = base_of(head).weight.numel()
        copy = size if untie else 0
        if untie and "head" in subsets:
            untie_head(model)
            notes.append(f"lm_head was tied to the token embeddings; untied it so the head trains on its own copy "
                         f"(+{size:,} parameters)")
        elif untie:
            later = size
            notes.append(f"lm_head is tied to the token embeddings; its LoRA trains on the shared matrix, frozen, and "
                         f"the head gets its own copy when the LoRA merges (+{size:,} parameters)")
        elif "head" in subsets:
            notes.append("lm_head is tied to the token embeddings (untie=False): training the head trains the token embeddings too")
        else:
            notes.append("lm_head is tied to the token embeddings (untie=False): merging the head LoRA changes the token embeddings too")
    if "head-lora" in subsets and head is base_of(head):
        added = attach_lora(model, {head_name: head}, HEAD_LORA_RANK, HEAD_LORA_ALPHA, seed=0)[head_name]
        notes.append(f"head-lora: LoRA r={HEAD_LORA_RANK} alpha={HEAD_LORA_ALPHA:g} on {head_name} "
                     f"({sum(p.numel() for p in adapter_parameters(added)):,} parameters), merged into the dense head at the end")
    return notes, later, copy


def _head(model: nn.Module) -> tuple[str, nn.Module]:
    head = model.get_output_embeddings()
    if head is None:
        raise PerpError("train", f"{type(model).__name__} has no output head (get_output_embeddings is None); drop head and head-lora")
    return next(name for name, m in model.named_modules() if m is head), head


def _members(model: nn.Module, subsets: tuple[str, ...]) -> dict[str, list[nn.Parameter]]:
    """The parameters of each category: attached adapters always, and each requested subset."""
    head = model.get_output_embeddings()
    adapters = adapter_modules(model)
    members = {
        "adapter": [p for m in adapters.values() if m is not head for p in adapter_parameters(m)],
        "head-lora": adapter_parameters(head) if head is not None and head is not base_of(head) else [],
    }
    norms = [p for m in model.modules() if "Norm" in type(m).__name__ for p in m.parameters(recurse=False)]
    if "norms" in subsets:
        members["norms"] = norms
    if "biases" in subsets:
        excluded = {id(p) for p in norms} | {id(p) for m in adapters.values() for p in adapter_parameters(m)}
        members["biases"] = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias" and id(p) not in excluded]
    if "head" in subsets:
        members["head"] = list(base_of(head).parameters()) if head is not None else []
    if "embeddings" in subsets:
        members["embeddings"] = [p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)]
    if "full" in subsets:
        members["full"] = list(model.parameters())
    return members
