"""InputOwners: linears called on the same tensor one after another share the first one's statistics."""

import torch
from torch import nn

from perp_engine.pruning.input_owners import InputOwners


def _linears(*widths):
    return [nn.Linear(w, 3) for w in widths]


def test_consecutive_readers_of_one_tensor_share_and_others_own():
    q, k, o = _linears(4, 4, 4)
    owners = InputOwners(hessian=True)
    x, y = torch.randn(2, 4), torch.randn(2, 4)
    assert owners.owner_of("q", q, x) == "q"
    assert owners.owner_of("k", k, x) == "q"
    assert owners.owner_of("o", o, y) == "o"  # another tensor, even of equal values and shape, is another input
    assert owners.stats_of("k") is owners.stats_of("q") is not owners.stats_of("o")
    assert owners.stats_of("q").H_lower is not None and set(owners.stats) == {"q", "o"}


def test_equal_values_in_another_tensor_are_not_shared():
    a, b = _linears(4, 4)
    owners = InputOwners(hessian=False)
    x = torch.randn(2, 4)
    owners.owner_of("a", a, x)
    assert owners.owner_of("b", b, x.clone()) == "b"


def test_owners_are_decided_once_and_chunks_are_apart():
    q, k = _linears(4, 4)
    owners = InputOwners(hessian=False)
    x0, x1 = torch.randn(2, 4), torch.randn(2, 4)
    owners.owner_of("q", q, x0, chunk=0)
    owners.owner_of("q", q, x1, chunk=1)
    assert owners.owner_of("k", k, x1, chunk=1) == "q"  # chunk 1's last owner input is x1
    assert owners.owner_of("k", k, torch.randn(2, 4), chunk=0) == "q"  # decided: later calls do not change it
    owners.end_chunk(1)
    assert 1 not in owners._last and 0 in owners._last
