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
from contextvars import ContextVar, Token

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


class limit:  # lower case, like contextlib.suppress: used as ``with limit(at):``
    """Run the block under a deadline (a :func:`time.monotonic` instant; ``None``: none).

    A deadline already in force and earlier than ``at`` stays: an inner caller cannot give
    itself more time than its own caller has. A class rather than ``@contextmanager``: it
    is entered once per decision, and a generator costs several times more.
    """

    __slots__ = ("_at", "_token")

    def __init__(self, at: float | None) -> None:
        self._at = at
        self._token: Token[float | None] | None = None

    def __enter__(self) -> None:
        at, outer = self._at, _get()
        if at is not None and (outer is None or at < outer):
            self._token = _deadline.set(at)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _deadline.reset(self._token)
            self._token = None


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once passed), or ``None``."""
    at = _get()
    return None if at is None else at - _now()
