"""Faults injected into the engine at a seam that stays Python in the compiled build.

Why not ``monkeypatch.setattr(mailguard.engine, "analyse", ...)``: with ``MAILGUARD_COMPILE=1``
(README, "compiled build") the engine and its helpers are mypyc-compiled, and compiled code
calls a function of its own build directly, not through the module attribute: such a patch
is silently ignored and the test asserts nothing. The seams used here are looked up at run
time in either build: :attr:`mailguard.rules.Rule.check` (``rules.py`` is never compiled;
``tests/test_mypyc_safety.py`` keeps it so) and the :class:`~mailguard.limits.Limits` the
parser reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from mailguard.checks.base import CheckContext
from mailguard.limits import Limits
from mailguard.rules import Rule


def before_every_check(
    monkeypatch: pytest.MonkeyPatch, step: Callable[[CheckContext], Any]
) -> None:
    """Run ``step(ctx)`` before each rule's check of every message, inside the engine's guard.

    ``step`` raising is an internal error of the decision, as a bug in the engine would be;
    ``step`` sleeping (and calling :func:`mailguard.deadline.checkpoint`) is a slow decision.
    """
    resolve = Rule.check.fget
    assert resolve is not None

    def check(rule: Rule) -> Callable[..., Iterable[Any]] | None:
        real = resolve(rule)
        if real is None:
            return None  # raised by the engine itself: not run as a check

        def wrapped(ctx: CheckContext, settings: Any) -> Iterable[Any]:
            step(ctx)
            return real(ctx, settings)

        return wrapped

    monkeypatch.setattr(Rule, "check", property(check))


def exploding_limits(exc: BaseException) -> Limits:
    """Limits whose header-field cap raises ``exc`` when the parser reads it (while parsing)."""

    class Exploding(Limits):
        __slots__ = ()

        @property  # type: ignore[override]
        def max_header_field_bytes(self) -> int:
            raise exc

        @max_header_field_bytes.setter
        def max_header_field_bytes(self, value: int) -> None:
            pass  # the dataclass __init__ sets the field: ignored

    return Exploding()
