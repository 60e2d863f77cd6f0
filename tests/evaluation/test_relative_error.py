"""The relative squared error in its three uses: one pair of tensors (a loss), sums over chunks (the measured
errors), and their agreement: reconstruction's loss and the local error are the same quantity."""

import pytest
import torch

from perp_engine.evaluation.relative_error import ErrorSums, chunked_relative_error, relative_error, squared_norm


def test_chunked_error_of_equal_and_of_zero_outputs():
    a = [torch.ones(2, 3), torch.ones(1, 3)]
    assert chunked_relative_error(a, a) == 0.0
    assert abs(chunked_relative_error(a, [torch.zeros(2, 3), torch.zeros(1, 3)]) - 1.0) < 1e-12


def test_chunks_of_any_size_give_the_error_of_the_whole():
    generator = torch.Generator().manual_seed(0)
    reference, value = torch.randn(7, 5, generator=generator), torch.randn(7, 5, generator=generator)
    whole = float(relative_error(reference, value))
    expected = float(((value.double() - reference.double()) ** 2).sum() / (reference.double() ** 2).sum())
    assert whole == pytest.approx(expected, rel=1e-6)
    for sizes in ([7], [1, 6], [3, 3, 1]):
        chunked = chunked_relative_error(list(reference.split(sizes)), list(value.split(sizes)))
        assert chunked == pytest.approx(whole, rel=1e-6)


def test_the_loss_backpropagates_into_the_value_only():
    reference = torch.randn(4, 3)
    value = torch.randn(4, 3, requires_grad=True)
    relative_error(reference, value).backward()
    expected = 2 * (value.detach() - reference) / (reference ** 2).sum()
    torch.testing.assert_close(value.grad, expected)


def test_a_zero_reference_gives_the_squared_norm_not_a_division_by_zero():
    value = torch.tensor([[1.0, 2.0]])
    assert float(relative_error(torch.zeros(1, 2), value)) == 5.0
    sums = ErrorSums()
    sums.add(torch.zeros(1, 2), value)
    assert sums.value == 0.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_sums_are_float32_on_the_tensors_device(dtype):
    """float64 does not exist on every device (MPS); half-precision squares would lose the small differences."""
    x = torch.full((3,), 1 + 2 ** -7, dtype=dtype)
    assert squared_norm(x).dtype == torch.float32
    assert float(relative_error(torch.ones(3, dtype=dtype), x)) > 0
