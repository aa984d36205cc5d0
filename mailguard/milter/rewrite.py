"""The milter's ``rewrite`` action: plan the header edits, re-check, or fall back.

Runs where the decision runs (on the event loop for everyday messages, on a worker for
big ones) and under the same deadline, because the re-check is a second engine run: a
re-check that runs out of time makes the decision one that ran out of time (moved to a
worker, or ``on_error``), never a rewrite that was not checked. What the MTA is then told
is :mod:`mailguard.milter.decision`'s business; the plan, the edits and their index
semantics are :mod:`mailguard.remedy`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailguard.engine import Engine, ran_out_of_time
from mailguard.milter.settings import MilterSettings
from mailguard.recipients import Envelope
from mailguard.remedy import Rewritten, plan_rewrite, rewrite_message
from mailguard.report import Report

if TYPE_CHECKING:
    from mailguard.milter.session import Transaction


def judge(
    engine: Engine, txn: Transaction, leading_space: bool, source: str, deadline: float
) -> Report:
    """The engine's report on ``txn``; a ``rewrite`` is attempted too and kept on ``txn``.

    A re-check stopped at the deadline makes the whole decision one that ran out of time:
    the server then moves it to a worker (or applies ``on_error``), as for a slow check,
    instead of falling back because of the clock.
    """
    raw = txn.raw_message(leading_space)
    envelope = txn.envelope
    report = engine.check(
        raw, envelope=envelope, source=source, deadline=deadline, incomplete=txn.incomplete
    )
    if level_for(report, txn.settings) is None:
        txn.rewrite = None  # most mail: no rewrite asked for, nothing to plan
        return report
    names = [name for name, _ in txn.headers]
    txn.rewrite = attempt(
        engine, report, txn.settings, names, raw, envelope=envelope, deadline=deadline,
        complete=not txn.dropped_fields,
    )  # fmt: skip
    after = txn.rewrite.after if txn.rewrite is not None else None
    return after if after is not None and ran_out_of_time(after) else report


def level_for(report: Report, settings: MilterSettings) -> str | None:
    """The verdict level whose configured action is ``rewrite`` for this report, if any."""
    if report.verdict == "block" and settings.on_block == "rewrite":
        return "block"
    if report.verdict == "warn" and settings.on_warn == "rewrite":
        return "warn"
    return None


def attempt(
    engine: Engine,
    report: Report,
    settings: MilterSettings,
    names: Sequence[bytes],
    raw: bytes,
    *,
    envelope: Envelope,
    deadline: float | None,
    complete: bool = True,
) -> Rewritten | None:
    """Plan and re-check a rewrite when the configured action is ``rewrite``; else ``None``.

    ``names`` are the header field names in the order the MTA sent them (the indexes of the
    deletes count them), ``raw`` the message as the engine read it. ``complete`` is false
    when fields past ``max_header_bytes`` were not kept: recipients may hide there, and a
    rewrite that cannot delete them is no cure.
    """
    level = level_for(report, settings)
    if level is None:
        return None
    fields = [(name.decode("latin-1"), "") for name in names]
    if not complete:
        plan = plan_rewrite(fields, report, level=level, scoring=engine.config.scoring)
        return Rewritten(False, plan, why="header-block-not-read")
    return rewrite_message(
        raw, report, level=level, scoring=engine.config.scoring, rewrite_to=settings.rewrite_to,
        fields=fields,
        recheck=lambda data: engine.check(
            data, envelope=envelope, source="rewritten", deadline=deadline
        ),
    )  # fmt: skip
