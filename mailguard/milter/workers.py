"""Decisions on worker threads, and what happens to a worker whose decision was given up.

A deadline stops a decision at its next checkpoint, but a custom check (``rule_paths``)
owes us none: past ``decision_timeout`` the MTA gets ``on_error`` and nobody waits for the
call any more, yet it still holds its thread until it returns. With a fixed pool, a few
such calls took every worker, and every later message then waited for one past its own
budget: a sweep under a real Postfix deferred 191 of 362 clean messages behind 4 s calls
with a 2 s budget. So a decision given up at its deadline gives its slot back, and the pool
may start a thread in its place: at most :data:`SPARE_THREADS` of them, so a check that
never returns cannot make threads grow without bound. Past that, decisions wait for a slot
within their own budget (``on_error`` when it runs out) and the log says why. At a stop,
``mailguard milter`` does not wait for the calls given up (:attr:`Workers.given_up`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from mailguard.engine import ran_out_of_time
from mailguard.milter import protocol as p
from mailguard.report import Report

if TYPE_CHECKING:
    from mailguard.milter.server import MilterConnection
    from mailguard.milter.session import Transaction

log = logging.getLogger("mailguard.milter")

SPARE_THREADS = 16
"""Threads that may be started in place of ones still busy with a decision given up."""


class Workers:
    """``size`` decisions at once on a thread pool; a given-up one frees its slot."""

    def __init__(self, size: int, spare: int = SPARE_THREADS) -> None:
        self.pool = ThreadPoolExecutor(size + spare, thread_name_prefix="mailguard-decide")
        self.spare = spare
        self.slots = asyncio.Semaphore(size)
        self.given_up: set[asyncio.Future[Report]] = set()
        """Decisions nobody waits for whose call has not returned (each holds a thread)."""
        self._spares_used = 0
        self._said = False

    def release(self, future: asyncio.Future[Report]) -> None:
        """Called on the event loop once nobody waits for ``future`` any more."""
        if future.done():
            self.slots.release()
            return
        self.given_up.add(future)
        future.add_done_callback(self.given_up.discard)
        if self._spares_used < self.spare:
            self._spares_used += 1
            self.slots.release()  # its thread is replaced: the pool may start another
            future.add_done_callback(self._spare_back)
        else:
            if not self._said:
                log.warning(
                    "%d decisions given up are still running (a check that ignores the "
                    "deadline): no spare thread left, so decisions wait for these",
                    len(self.given_up),
                )  # fmt: skip
                self._said = True
            future.add_done_callback(lambda _: self.slots.release())

    def _spare_back(self, _: object) -> None:
        self._spares_used -= 1
        self._said = False


async def decide_on_worker(conn: MilterConnection, txn: Transaction, started: float) -> None:
    """On the pool, with progress frames and the time budget (waiting for a slot counts)."""
    settings = txn.settings
    queue_id = txn.macros.get("i", "") or "-"
    report: Report | None = None
    loop = asyncio.get_running_loop()
    deadline = started + settings.decision_timeout
    workers = conn.server.workers
    future: asyncio.Future[Report] | None = None
    slot: asyncio.Future[bool] | None = None
    failure = ""
    try:
        while report is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = over_budget(settings.decision_timeout)
                break
            wait = min(settings.progress_interval, remaining)
            if future is None:
                # Not wait_for(acquire()): on 3.11 a timeout racing the acquire can lose it.
                slot = slot or asyncio.ensure_future(workers.slots.acquire())
                await asyncio.wait((slot,), timeout=wait)
                if not slot.done():
                    conn.write(p.SIMPLE[p.PROGRESS])
                    continue
                future = loop.run_in_executor(
                    workers.pool, conn.server.judge, txn, conn.session.caps.leading_space,
                    queue_id, deadline,
                )  # fmt: skip
                continue
            try:
                report = await asyncio.wait_for(asyncio.shield(future), wait)
            except TimeoutError:
                conn.write(p.SIMPLE[p.PROGRESS])
    except asyncio.CancelledError:
        return  # the MTA went away; it will retry or apply milter_default_action
    except Exception as exc:  # a bug in a rule must not lose or pass the message silently
        failure = f"internal error ({type(exc).__name__})"
    finally:
        if future is not None:
            workers.release(future)
        elif slot is not None and slot.done() and not slot.cancelled():
            workers.slots.release()  # acquired, never used
        elif slot is not None:
            slot.cancel()
    if report is not None and ran_out_of_time(report):
        report, failure = None, over_budget(settings.decision_timeout)
    conn.conclude(txn, queue_id, report, started, failure)
    conn.deciding = None
    if conn.transport is not None and not conn.transport.is_closing():
        conn.transport.resume_reading()
    conn.drain()


def over_budget(timeout: float) -> str:
    return f"decision exceeded its {timeout:g} s budget"
