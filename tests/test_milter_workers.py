"""The milter's worker slots: a decision given up at its deadline gives its slot back,
with a bounded number of spare threads (the Postfix-level proof is in
tests/test_milter_postfix.py, where four stuck custom checks no longer defer the next
clean message)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from mailguard.milter.workers import Workers


def test_spare_threads_are_bounded_and_running_out_of_them_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unblock = threading.Event()

    async def scenario() -> None:
        workers = Workers(1, spare=1)
        loop = asyncio.get_running_loop()

        async def stuck() -> asyncio.Future:  # type: ignore[type-arg]
            await asyncio.wait_for(workers.slots.acquire(), 5)
            return loop.run_in_executor(workers.pool, unblock.wait)

        first = await stuck()
        workers.release(first)  # given up while running: the slot is back, a spare used
        assert len(workers.given_up) == 1 and not workers.slots.locked()
        second = await stuck()
        workers.release(second)  # no spare left: the slot stays taken until it returns
        assert len(workers.given_up) == 2 and workers.slots.locked()
        unblock.set()
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        await asyncio.sleep(0)  # the done-callbacks
        assert not workers.given_up and not workers.slots.locked()
        workers.pool.shutdown()

    with caplog.at_level(logging.WARNING, logger="mailguard.milter"):
        try:
            asyncio.run(scenario())
        finally:
            unblock.set()  # a failed assertion must not leave the pool's threads waiting
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no spare thread left" in warnings[0]


def test_a_finished_decision_just_frees_its_slot() -> None:
    async def scenario() -> None:
        workers = Workers(1, spare=1)
        loop = asyncio.get_running_loop()
        await workers.slots.acquire()
        done = loop.run_in_executor(workers.pool, lambda: None)
        await done
        workers.release(done)
        assert not workers.given_up and not workers.slots.locked()
        workers.pool.shutdown()

    asyncio.run(scenario())
