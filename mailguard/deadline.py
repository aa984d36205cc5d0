"""Cooperative deadlines: a decision that ran out of time stops instead of burning a CPU.

A Python thread cannot be killed. When the milter gives up on a decision (``decision_timeout``)
and tells the MTA so, the worker thread would otherwise keep parsing a hostile 10 MB header for
seconds more, holding a pool slot and the GIL. So the loops that can run long (header fields,
address lists, MIME parts, term matching) call :func:`checkpoint`, which raises
:class:`DeadlineExceeded` once the deadline of the current decision has passed; the engine
turns that into an ``error`` report that says why.

The deadline lives in a :class:`~contextvars.ContextVar`, so it belongs to one decision: the
event loop's thread and each worker thread see their own, and code run without one (``check``
from a script, ``scan``) pays one context-variable read per checkpoint and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("mailguard_deadline", default=None)
_get = _deadline.get
_now = time.monotonic


class DeadlineExceeded(BaseException):
    """The current decision's deadline passed; raised by :func:`checkpoint`.

    A :class:`BaseException`, like :class:`asyncio.CancelledError`: it says nothing about the
    input, so a decoder's ``except Exception`` (bad charsets and the like) must not swallow it
    and carry on.
    """


def checkpoint() -> None:
    """Raise :class:`DeadlineExceeded` if the current deadline has passed.

    Called once per iteration of loops whose length the input controls; a clock read only
    happens under a deadline.
    """
    at = _get()
    if at is not None and _now() >= at:
        raise DeadlineExceeded


@contextmanager
def limit(at: float | None) -> Iterator[None]:
    """Run the block under a deadline (a :func:`time.monotonic` instant; ``None``: none).

    A deadline already in force and earlier than ``at`` stays: an inner caller cannot give
    itself more time than its own caller has.
    """
    outer = _get()
    if at is None or (outer is not None and outer <= at):
        yield
        return
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once passed), or ``None``."""
    at = _get()
    return None if at is None else at - _now()
