"""The doubling helper itself: it must pass linear work and fail a quadratic one, or the
tests that use it prove nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.doubling import assert_doubling_linear


def _linear(n: int) -> Callable[[], object]:
    data = list(range(n * 200))
    return lambda: sum(data)


def _quadratic(n: int) -> Callable[[], object]:
    """n²/2 interpreter steps and no memory traffic: x4 per doubling on a busy box too (the
    earlier slice-and-count version measured under x3 there about one run in five, its
    copies sharing the memory bus with whatever else ran)."""

    def work() -> int:
        total = 0
        for i in range(n):
            for _ in range(i):
                total += 1
        return total

    return work


def test_linear_work_passes() -> None:
    assert_doubling_linear(_linear, (1000, 2000), what="a list")


def test_quadratic_work_fails_at_every_size() -> None:
    # Tens of milliseconds at the smallest size and best of 7: on a VM whose host steals
    # cycles, CPU time can be charged for time the guest did not run, and at 1,000 (about
    # 20 ms) one such burst in each of 3 small runs once made x4 look like x2.9 in CI.
    with pytest.raises(AssertionError, match=r"doubling a string: 1,200 -> 2,400: .*"
                       r"2,400 -> 4,800: "):  # fmt: skip
        assert_doubling_linear(_quadratic, (1200, 2400), runs=7, what="a string")
