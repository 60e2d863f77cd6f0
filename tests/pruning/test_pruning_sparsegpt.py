"""SparseGPT: hand-worked OBS updates, blocking, rank-deficient and indefinite Hessians, quality vs baselines."""

import pytest
import torch

from perp_engine.errors import PerpError
from perp_engine.pruning import LayerStats, prune_weight, reconstruction_error


def _stats_from(x):
    stats = LayerStats(x.shape[1])
    stats.add_batch(x)
    return stats


def test_two_inputs_one_of_two_pruned_by_hand():
    """in = 2, pattern 1:2. Tokens (2, 1) and (0, 1): H = (2/2) sum x x^T = [[4, 2], [2, 2]].

    Damping 0.01 * mean(diag H) = 0.03 gives H = [[a, b], [b, c]] with a = 4.03, b = 2, c = 2.03, D = ac - b^2.
    H^-1 = [[c, -b], [-b, a]] / D; its upper Cholesky factor U has U00^2 = c / D and U11^2 = 1 / c.
    Scores w^2 / U_jj^2: column 0 -> w0^2 D / c = 2.0595 w0^2, column 1 -> w1^2 c = 2.03 w1^2.
    Row 0 (1, 3):   2.06 < 18.27 -> prune column 0 and move its error onto column 1:
                    w1' = w1 - w0 U01 / U00 = w1 - w0 H^-1_01 / H^-1_00 = w1 + w0 b / c   (least squares on x1).
    Row 1 (3, 0.5): 18.5 > 0.51  -> prune column 1; column 0 comes first and is left as is.
    """
    stats = _stats_from(torch.tensor([[2.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(stats.H, torch.tensor([[4.0, 2.0], [2.0, 2.0]]))
    w = torch.tensor([[1.0, 3.0], [3.0, 0.5]])
    new_w, mask = prune_weight(w, "sparsegpt", 0.5, "1:2", stats=stats)
    assert mask.tolist() == [[False, True], [True, False]]
    b, c = 2.0, 2.03
    torch.testing.assert_close(new_w, torch.tensor([[0.0, 3.0 + 1.0 * b / c], [3.0, 0.0]]))


def test_diagonal_hessian_reduces_to_scores_without_updates():
    """Orthogonal inputs: token j is c_j e_j, so H = (2/4) diag(c^2) = diag(0.5, 2, 4.5, 8) and, damped by
    0.01 * 3.75, h = (0.5375, 2.0375, 4.5375, 8.0375). U = diag(1/sqrt(h)): no error propagates, kept weights
    stay as they are, and the score is w^2 h, ranked over the whole block (all rows), not per row:
        row 0 (4, 1, 1, 0.5):    8.60  2.04  4.54  2.01
        row 1 (1, 2, -1.5, 1):   0.54  8.15 10.21  8.04
    The 4 lowest: (1,0) 0.54, (0,3) 2.01, (0,1) 2.04, (0,2) 4.54 -> row 0 keeps one weight, row 1 three.
    """
    stats = _stats_from(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0])))
    w = torch.tensor([[4.0, 1.0, 1.0, 0.5], [1.0, 2.0, -1.5, 1.0]])
    new_w, mask = prune_weight(w, "sparsegpt", 0.5, stats=stats)
    expected = torch.tensor([[True, False, False, False], [False, True, True, True]])
    assert torch.equal(mask, expected)
    assert torch.equal(new_w, w * expected)


def _calibration(out=24, width=64, tokens=512, seed=0):
    """Strongly correlated inputs (12 latent factors plus noise) with unequal column scales, like activations."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(tokens, 12, generator=g) @ torch.randn(12, width, generator=g)
    scales = torch.logspace(-0.5, 0.5, width)[torch.randperm(width, generator=g)]
    x = (latent + 0.3 * torch.randn(tokens, width, generator=g)) * scales
    return x, torch.randn(out, width, generator=g), _stats_from(x)


def _output_error(w, new_w, x):
    return float((x @ (w - new_w).T).square().sum() / (x @ w.T).square().sum())


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("unstructured", 0.7), ("2:4", 0.5), ("4:8", 0.5)])
def test_lower_output_error_than_magnitude_and_wanda(pattern, sparsity):
    x, w, stats = _calibration()
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        new_w, _ = prune_weight(w, method, sparsity, pattern, stats=stats, blocksize=16)
        errors[method] = _output_error(w, new_w, x)
        assert reconstruction_error(w, new_w, stats) == pytest.approx(errors[method], rel=1e-3)
    assert errors["sparsegpt"] < 0.8 * min(errors["magnitude"], errors["wanda"]), errors


@pytest.mark.parametrize("pattern,sparsity", [("2:4", 0.5), ("4:8", 0.5)])
def test_lazy_block_updates_equal_one_block(pattern, sparsity):
    """N:M masks do not depend on blocking, so blocks of 8 (lazy updates across blocks) match one block."""
    _, w, stats = _calibration(width=48)
    blocked, mask_blocked = prune_weight(w, "sparsegpt", sparsity, pattern, stats=stats, blocksize=8)
    whole, mask_whole = prune_weight(w, "sparsegpt", sparsity, pattern, stats=stats, blocksize=48)
    assert torch.equal(mask_blocked, mask_whole)
    torch.testing.assert_close(blocked, whole, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pattern", ["4:8", "3:6", "1:3"])
def test_blocksize_not_a_multiple_of_m_keeps_groups_whole(pattern):
    """Blocks of 45 columns become blocks of the most whole groups that fit (40, 42, 45): every group keeps
    M - N weights, and the result is that of blocks of one group each."""
    n, m = (int(v) for v in pattern.split(":"))
    _, w, stats = _calibration(width=90 if m != 8 else 96)
    new_w, mask = prune_weight(w, "sparsegpt", n / m, pattern, stats=stats, blocksize=45)
    assert torch.all((~mask).reshape(24, -1, m).sum(-1) == n)
    one_group, one_group_mask = prune_weight(w, "sparsegpt", n / m, pattern, stats=stats, blocksize=m)
    assert torch.equal(mask, one_group_mask)
    torch.testing.assert_close(new_w, one_group, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("2:4", 0.5)])
@pytest.mark.parametrize("kind", ["few-tokens", "duplicate-columns", "dead-columns"])
def test_rank_deficient_hessian_does_not_crash(kind, pattern, sparsity):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6 if kind == "few-tokens" else 200, 32, generator=g)
    if kind == "duplicate-columns":
        x[:, 16:] = x[:, :16]
    if kind == "dead-columns":
        x[:, ::4] = 0.0
    stats = _stats_from(x)
    assert torch.linalg.matrix_rank(stats.H) < 32
    w = torch.randn(10, 32, generator=g)
    messages = []
    new_w, mask = prune_weight(w, "sparsegpt", sparsity, pattern, stats=stats, percdamp=1e-6, log=messages.append)
    assert torch.isfinite(new_w).all()
    assert int((~mask).sum()) == 160 and torch.all(new_w[~mask] == 0)
    assert _output_error(w, new_w, x) < 0.6
    if kind == "dead-columns":
        assert any("8 of 32 input columns were never active" in m for m in messages)
        assert torch.all(new_w[:, ::4] == 0)


def test_failed_cholesky_is_retried_with_more_damping_and_logged():
    """An indefinite H (eigenvalues 2.05 and -0.05, as float round-off can make): damping 0.01 fails, 0.1 works."""
    stats = _stats_from(torch.ones(1, 2))
    stats.H = torch.tensor([[1.0, 1.05], [1.05, 1.0]])
    messages = []
    new_w, mask = prune_weight(torch.tensor([[1.0, 2.0]]), "sparsegpt", 0.5, stats=stats, log=messages.append)
    assert messages == ["sparsegpt: Cholesky failed with damping 0.01 x mean(diag H); retrying with 0.1"]
    assert mask.tolist() == [[False, True]] and torch.isfinite(new_w).all()


def test_hopeless_hessian_is_a_user_error():
    stats = _stats_from(torch.ones(1, 2))
    stats.H = torch.tensor([[1.0, 3.0], [3.0, 1.0]])
    messages = []
    with pytest.raises(PerpError) as err:
        prune_weight(torch.ones(1, 2), "sparsegpt", 0.5, stats=stats, log=messages.append)
    assert err.value.field == "stats"
    assert len(messages) == 2


def test_unstructured_count_is_exact_across_uneven_blocks():
    """7 x 40 at 30% with blocks of 16: shares 33 + 34 + 17 = floor(280 * 0.3) = 84."""
    x, w, stats = _calibration(out=7, width=40)
    _, mask = prune_weight(w, "sparsegpt", 0.3, stats=stats, blocksize=16)
    assert int((~mask).sum()) == 84
    assert [int((~mask[:, i : i + 16]).sum()) for i in (0, 16, 32)] == [33, 34, 17]


@pytest.mark.parametrize("n", [1, 7, 256, 257, 300, 600])
def test_upper_triangular_inverse_by_halves_equals_float64_solve(n):
    from perp_engine.pruning.sparsegpt import upper_triangular_inverse

    g = torch.Generator().manual_seed(n)
    x = torch.randn(2 * n + 4, n, generator=g, dtype=torch.float64)
    R = torch.linalg.cholesky(x.T @ x / x.shape[0] + 0.1 * torch.eye(n, dtype=torch.float64), upper=True)
    want = torch.linalg.solve_triangular(R, torch.eye(n, dtype=torch.float64), upper=True)
    got = upper_triangular_inverse(R.float())
    assert torch.equal(got.tril(-1), torch.zeros_like(got.tril(-1)))
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [1, 7, 256, 257, 300, 600])
def test_reverse_cholesky_by_halves_equals_float64_and_reads_the_lower_triangle(n):
    from perp_engine.pruning.sparsegpt import reverse_cholesky

    g = torch.Generator().manual_seed(n)
    x = torch.randn(2 * n + 4, n, generator=g, dtype=torch.float64)
    A = x.T @ x / x.shape[0]
    shifted = A + 0.1 * torch.eye(n, dtype=torch.float64)
    want = torch.linalg.cholesky(shifted.flip(0, 1), upper=True).T.flip(0, 1)  # the unique upper R, R R^T = A + 0.1 I
    lower_only = A.float().tril() + torch.full((n, n), float("nan")).triu(1)
    got = reverse_cholesky(lower_only, 0.1)
    assert torch.equal(got.tril(-1), torch.zeros_like(got.tril(-1)))
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close((got.double() @ got.double().T), shifted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("where", ["first half", "second half"])
def test_reverse_cholesky_says_none_when_either_half_is_indefinite(where):
    from perp_engine.pruning.sparsegpt import reverse_cholesky

    A = torch.eye(300)
    column = 10 if where == "first half" else 290
    A[column, column] = -1.0
    assert reverse_cholesky(A, 0.5) is None
    assert reverse_cholesky(A, 2.5) is not None
