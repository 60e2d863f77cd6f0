"""Where the by-halves computations on square matrices split them: SparseGPT's Hessian (``stats``), its Cholesky
factor and triangular inverse (``sparsegpt``)."""

from __future__ import annotations

HALF_ALIGN = 32  # a split falls on a multiple of this, so the blocks' products keep whole vector-register panels


def split_point(n: int) -> int:
    """Where the second half of ``n`` rows or columns starts: n / 2 rounded up to a multiple of HALF_ALIGN (for n
    above HALF_ALIGN, both halves are non-empty)."""
    return -(-n // 2 // HALF_ALIGN) * HALF_ALIGN
