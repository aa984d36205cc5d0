"""How an mbox is cut into work units: bounded sizes, and small units at the end so the
workers finish together (guided self-scheduling)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailguard.archive.scanner import MBOX_BYTES_PER_UNIT, MBOX_MIN_UNIT, unit_cuts


def sizes(begin: int, end: int, jobs: int) -> list[int]:
    cuts = unit_cuts(begin, end, jobs)
    edges = [begin, *cuts, end]
    return [b - a for a, b in itertools.pairwise(edges)]


@given(
    begin=st.integers(0, 10**9),
    total=st.integers(1, 20 * 10**9),
    jobs=st.integers(1, 64),
)
def test_units_cover_the_range_within_their_bounds(begin: int, total: int, jobs: int) -> None:
    cuts = unit_cuts(begin, begin + total, jobs)
    assert cuts == sorted(set(cuts))
    assert all(begin < c < begin + total for c in cuts)
    parts = sizes(begin, begin + total, jobs)
    assert sum(parts) == total
    if len(parts) > 1:
        assert min(parts) >= MBOX_MIN_UNIT
        # Every unit but the last (which takes a remainder under the floor) is capped.
        assert max(parts[:-1]) <= MBOX_BYTES_PER_UNIT
        assert parts[-1] < MBOX_BYTES_PER_UNIT + MBOX_MIN_UNIT
    # Enough units to balance the workers, when the file is big enough to cut.
    if total >= jobs * 8 * MBOX_MIN_UNIT * 2:
        assert len(parts) >= jobs * 8


@pytest.mark.parametrize("jobs", [2, 4])
def test_the_last_units_are_small(jobs: int) -> None:
    parts = sizes(0, 228_000_000, jobs)
    assert parts[0] == max(parts) > MBOX_BYTES_PER_UNIT // 2
    assert max(parts[-jobs:]) <= parts[0] // 4
    # ... at the price of few extra units over equal ones.
    assert len(parts) <= 228_000_000 // MBOX_BYTES_PER_UNIT + 4 * jobs + 4


def test_a_small_file_is_one_unit() -> None:
    assert unit_cuts(0, MBOX_MIN_UNIT, 2) == []
    assert unit_cuts(100, 100 + MBOX_MIN_UNIT + 10, 2) == []


def test_the_register_shares_domain_names_between_incidents() -> None:
    """Tallies come from other processes, each incident with its own copy of every domain
    name: the register keeps one (it grows by incidents on a large archive)."""
    import pickle

    from mailguard.archive.register import Register, Tally
    from mailguard.engine import Engine
    from tests.support.synth import MixGenerator

    gen = MixGenerator(3)
    engine = Engine()
    register = Register(keep_addresses=False)
    for _ in range(2):
        tally = Tally()
        tally.add_report(engine.check(gen.many_cc(40).data, mode="archived"))
        register.merge(pickle.loads(pickle.dumps(tally)))  # as it arrives from a worker
    first, second = (i.domains for i in register.total.incidents)
    shared = first.keys() & second.keys()
    assert shared
    names = {d: d for d in first}
    assert all(names[d] is d for d in second if d in names)  # the same objects
    assert sum(register.domains.values()) == sum(first.values()) + sum(second.values())
