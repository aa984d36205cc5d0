"""Doubling tests: twice the input may cost at most about twice the time.

One helper for the tests that time a doubling by hand, so that each does not rediscover
what made them fail on a busy machine while the code was linear:

* CPU time of the calling thread (``time.thread_time``), not the wall clock: a 2-core CI
  box running other work makes a process wait for a core, which is no work of ours (a
  survey doubling measured x3.4 with two CPU hogs beside it, x2.0 without);
* the garbage collector off while timing: a full collection walks the whole test
  session's heap and lands in one run or the other;
* the two sizes timed alternately, best of ``runs`` each, so a busy moment hits both;
* a failed doubling measured again one size up: a step in the machine's costs (a working
  set that outgrows a CPU cache, copies that cross malloc's mmap threshold) shows at one
  doubling only, a quadratic path costs x4 at every one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

RATIO = 3.0


def cpu_seconds(work: Callable[[], object]) -> float:
    """CPU seconds of one call of ``work`` in this thread, the collector off."""
    gc.collect()
    gc.disable()
    try:
        start = time.thread_time()
        work()
        return time.thread_time() - start
    finally:
        gc.enable()


def assert_doubling_linear(
    prepare: Callable[[int], Callable[[], object]],
    sizes: Sequence[int],
    *,
    runs: int = 3,
    what: str = "the input",
) -> None:
    """Fail unless, for one ``n`` of ``sizes`` (tried in order), ``prepare(2n)``'s work
    costs less than :data:`RATIO` times ``prepare(n)``'s. ``prepare`` builds the input (not
    timed) and returns the work to time; the work must not keep state between calls that
    makes a second call cheaper, unless that is what is meant to be measured."""
    seen = []
    for n in sizes:
        small, large = prepare(n), prepare(2 * n)
        best_small = best_large = float("inf")
        for _ in range(runs):
            best_small = min(best_small, cpu_seconds(small))
            best_large = min(best_large, cpu_seconds(large))
        if best_large < RATIO * best_small:
            return
        seen.append(
            f"{n:,} -> {2 * n:,}: {best_small:.4f} s -> {best_large:.4f} s "
            f"(x{best_large / max(best_small, 1e-9):.1f})"
        )
    raise AssertionError(f"doubling {what}: " + ", ".join(seen))
