"""Wanda on a 4x8 matrix whose scores are worked out by hand."""

import pytest
import torch

from perp_engine.pruning import LayerStats, prune_weight

# Column norms a_j = sqrt(mean_t x_tj^2): two tokens, +a and -a, so sq_mean = a^2 exactly.
A = torch.tensor([1.0, 2.0, 3.0, 0.5, 1.5, 4.0, 0.25, 2.5])
W = torch.tensor(
    [
        [1.0, -2.0, 3.0, -1.0, 2.0, 1.0, -4.0, 8.0],
        [4.0, 1.0, -1.0, 2.0, -3.0, 5.0, 2.0, 1.0],
        [-1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0],
        [5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 1.0, 1.0],
    ]
)
# Scores |W_ij| * a_j:
#   row 0: [1,    4,  9,  0.5, 3,   4,  1,    20 ]
#   row 1: [4,    2,  3,  1,   4.5, 20, 0.5,  2.5]
#   row 2: [1,    2,  3,  0.5, 1.5, 4,  0.25, 2.5]
#   row 3: [5,   12, 21,  4,   1.5, 8,  0.25, 2.5]
# Unstructured 50%: each row loses its 4 lowest scores.
#   row 0: 0.5(3) 1(0) 1(6) 3(4)        -> keep 1, 2, 5, 7
#   row 1: 0.5(6) 1(3) 2(1) 2.5(7)      -> keep 0, 2, 4, 5
#   row 2: 0.25(6) 0.5(3) 1(0) 1.5(4)   -> keep 1, 2, 5, 7
#   row 3: 0.25(6) 1.5(4) 2.5(7) 4(3)   -> keep 0, 1, 2, 5
# (one threshold for the whole matrix would instead keep 5 of row 3's weights and only 3 of row 2's.)
UNSTRUCTURED = [
    [0, 1, 1, 0, 0, 1, 0, 1],
    [1, 0, 1, 0, 1, 1, 0, 0],
    [0, 1, 1, 0, 0, 1, 0, 1],
    [1, 1, 1, 0, 0, 1, 0, 0],
]
# 2:4: the 2 lowest of columns 0-3 and of columns 4-7 in every row.
#   row 0: [1,4,9,0.5] -> prune 0,3   [3,4,1,20]     -> prune 4,6
#   row 1: [4,2,3,1]   -> prune 1,3   [4.5,20,.5,2.5] -> prune 6,7
#   row 2: [1,2,3,0.5] -> prune 0,3   [1.5,4,.25,2.5] -> prune 4,6
#   row 3: [5,12,21,4] -> prune 0,3   [1.5,8,.25,2.5] -> prune 4,6   (differs from unstructured)
TWO_FOUR = [
    [0, 1, 1, 0, 0, 1, 0, 1],
    [1, 0, 1, 0, 1, 1, 0, 0],
    [0, 1, 1, 0, 0, 1, 0, 1],
    [0, 1, 1, 0, 0, 1, 0, 1],
]


@pytest.mark.parametrize("pattern,expected", [("unstructured", UNSTRUCTURED), ("2:4", TWO_FOUR)])
@pytest.mark.parametrize("hessian", [False, True])
def test_hand_worked_masks(pattern, expected, hessian):
    stats = LayerStats(8, hessian=hessian)
    stats.add_batch(torch.stack([A, -A]))
    new_w, mask = prune_weight(W, "wanda", 0.5, pattern, stats=stats)
    expected = torch.tensor(expected, dtype=torch.bool)
    assert torch.equal(mask, expected)
    assert torch.equal(new_w, W * expected)
