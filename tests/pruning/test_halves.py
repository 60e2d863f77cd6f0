from perp_engine.pruning.halves import HALF_ALIGN, split_point


def test_split_point_is_aligned_near_the_middle_and_leaves_both_halves_non_empty():
    for n in range(HALF_ALIGN + 1, 5000):
        half = split_point(n)
        assert 0 < half < n and half % HALF_ALIGN == 0, n
        assert n / 2 <= half < n / 2 + HALF_ALIGN, n
