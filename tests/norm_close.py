"""Closeness in norm, for half-precision gradients: elementwise tolerances either fail on bfloat16's rounding or,
loose enough for it, pass an all-zero gradient."""

import torch


def assert_close_in_norm(actual: torch.Tensor, expected: torch.Tensor, share: float, msg: str = "") -> None:
    """``actual`` differs from the non-zero ``expected`` by at most ``share`` of ``expected``'s norm."""
    expected = expected.float()
    scale = float(expected.norm())
    assert scale > 0, f"{msg}: the expected tensor is zero, so closeness in norm says nothing"
    error = float((actual.float() - expected).norm()) / scale
    assert error <= share, f"{msg}: off by {error:.2%} of the expected norm (allowed {share:.2%})"
