"""Stamp pairing of predictions with ground truth (`fusanet_core.evaluation.pairing`)."""

from __future__ import annotations

from fusanet_core.evaluation.pairing import pair_nearest


def test_pair_nearest_exact_slop_ties_and_misses() -> None:
    gt = [100, 200, 300]
    assert pair_nearest([100, 200, 300], gt, 0) == [0, 1, 2]
    assert pair_nearest([150, 260, 390, 10], gt, 40) == [None, 2, None, None]
    assert pair_nearest([150], gt, 50) == [0]  # a tie goes to the earlier ground truth
    assert pair_nearest([150], [200, 100], 50) == [1]  # unsorted ground truth: index into the input order
    assert pair_nearest([1, 2], [], 10) == [None, None]
