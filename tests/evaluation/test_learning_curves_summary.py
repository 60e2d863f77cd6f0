"""Reconstruction's per-block learning curves summed up as one curve relative to where each block started."""

import pytest

from perp_engine.evaluation.learning_curves import relative_block_curve


def curve(steps, errors):
    return [{"step": s, "seconds": 0.0, "error": e} for s, e in zip(steps, errors)]


@pytest.mark.parametrize("curves, steps, means", [
    ([curve([0, 5, 10], [2.0, 1.0, 0.5]), curve([0, 5, 10], [0.1, 0.1, 0.05])], [0, 5, 10], [1.0, 0.75, 0.375]),
    ([curve([0, 5, 10], [2.0, 1.0, 0.5]), curve([0, 5], [4.0, 1.0])], [0, 5], [1.0, 0.375]),  # a block that stopped
    ([curve([0, 5], [0.0, 0.0]), curve([0, 5], [4.0, 2.0])], [0, 5], [1.0, 0.5]),  # an untouched block: no ratio
    ([[], curve([0, 5], [0.0, 0.0])], [], []),
])
def test_relative_block_curve(curves, steps, means):
    got_steps, got_means = relative_block_curve(curves)
    assert got_steps == steps and got_means == pytest.approx(means)
