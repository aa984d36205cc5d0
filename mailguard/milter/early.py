"""Deciding a message at end-of-headers, so that the MTA does not stream its body to us.

Postfix sends a message's body to a milter in 64 KB chunks after the header block, and
waits for the end-of-message reply before it answers its client. When the header block
already settles the message, answering at end-of-headers saves that streaming, our
keeping and parsing of the body, and a round trip. Settled means, with no edit planned
(headers are added, and fields deleted, only at the end of the message):

* ``pass`` that the body cannot change (:meth:`mailguard.engine.Engine.body_could_change`:
  every rule that reads the body is shut by its recipient-count gate, and the input rules
  could not add enough weight to reach ``warn``): accepted;
* ``block``, refused or deferred with a reply and nothing else: the body can only add
  findings, never take one away.

Anything else (``warn``, a quarantine, a ``pass`` the body could still change, a multipart
message: :meth:`mailguard.milter.session.Transaction.may_settle_at_headers`) is decided at
the end of the message as before.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from mailguard.engine import Engine, ran_out_of_time
from mailguard.milter import protocol as p
from mailguard.milter.decision import Outcome, outcome_for
from mailguard.milter.session import Capabilities, Transaction
from mailguard.milter.settings import MilterSettings
from mailguard.report import Report
from mailguard.resolver import no_waiting

if TYPE_CHECKING:
    from mailguard.milter.server import MilterConnection


def header_decisions(settings: MilterSettings, engine: Engine) -> MilterSettings:
    """``settings`` without end-of-headers decisions when no message could be accepted there.

    While a rule reads every body whatever the recipients (the attachment rules do: a text
    part may hold a uuencoded file), a ``pass`` is never settled by the header block, and a
    decision there could only be a refusal. Judging each message's header block for that
    would judge every clean message twice, at end-of-headers and at its end, and a single
    text part (the only kind decided there) has little body to save. So end-of-headers is
    then negotiated away (:meth:`~mailguard.milter.session.Session.wanted_protocol`; mail out
    of scope is accepted at MAIL instead) and every message is judged once, at its end.
    Said in the log, since it overrides ``decide_at_headers``.
    """
    if not settings.decide_at_headers:
        return settings
    always = engine.body_always_counts("outgoing")
    if not always:
        return settings
    logging.getLogger("mailguard.milter").info(
        "rules %s read every message's body, so none can be accepted at end-of-headers: "
        "every message is judged once, at its end (decide_at_headers = false)", ",".join(always),
    )  # fmt: skip
    return replace(settings, decide_at_headers=False)


def decide_at_headers(conn: MilterConnection, txn: Transaction) -> None:
    """Answer end-of-headers on ``conn``: the decision if the headers settle it, else continue.

    Decided inline (on the event loop, within ``inline_time_limit``) or not at all: anything
    slow, failing or unsure (a DNS answer not cached yet) reads the body and is decided at
    the end of the message as usual, with its guards; so this only ever saves work.
    """
    started = time.monotonic()
    settings = txn.settings
    queue_id = txn.macros.get("i", "") or "-"
    session = conn.session
    outcome: Outcome | None = None
    deadline = started + min(settings.inline_time_limit, settings.decision_timeout)
    try:
        with no_waiting():
            report = conn.server.judge(txn, session.caps.leading_space, queue_id, deadline)
        # Late though complete (a step reached no checkpoint) is slow too: read on.
        if not ran_out_of_time(report) and time.monotonic() <= deadline:
            outcome = settle_at_headers(report, txn, session.caps, conn.server.engine)
    except Exception:  # our glue: the end of the message decides, with the usual guards
        outcome = None
    if outcome is None:
        conn.write(b"".join(session.read_body()))
        return
    conn.log_decision(queue_id, txn, report, outcome, started, "", " at=headers")
    conn.write(b"".join(session.conclude(outcome.frames)))
    conn.last_seen = time.monotonic()  # the clock of MilterConnection.last_seen


def settle_at_headers(
    report: Report, txn: Transaction, caps: Capabilities, engine: Engine
) -> Outcome | None:
    """The outcome to send at end-of-headers, or ``None`` to read the body and decide later.

    Most mail is a ``pass``, and for a pass :func:`outcome_for` can only come to a bare
    continue (accepted here) or to edits (read on): edits are our verdict fields, which
    ``add_headers`` other than ``always`` never adds to a pass, and the deletion of an
    approval field, which needs one in the header block. Short of those the mapping is
    skipped (:func:`settle_carefully` is the full one; a property test holds them equal).
    """
    if (
        report.verdict == "pass"
        and txn.settings.add_headers != "always"
        and _APPROVAL not in txn.names()
    ):
        if engine.body_could_change(report):
            return None
        return Outcome("accept", [p.SIMPLE[p.ACCEPT]])
    return settle_carefully(report, txn, caps, engine)


_APPROVAL = b"x-mailguard-approval"
"""Contained in the lower-cased name of every field :func:`approval.header_indexes` counts."""


def settle_carefully(
    report: Report, txn: Transaction, caps: Capabilities, engine: Engine
) -> Outcome | None:
    """:func:`settle_at_headers` by way of the end-of-message mapping, for every verdict."""
    outcome = outcome_for(report, txn.settings, caps, txn)
    frames = outcome.frames
    if report.verdict == "pass" and frames == [p.SIMPLE[p.CONTINUE]]:
        if engine.body_could_change(report):
            return None
        return Outcome("accept", [p.SIMPLE[p.ACCEPT]], outcome.planned)
    if report.verdict == "block" and len(frames) == 1 and frames[0][4:5] == p.REPLYCODE:
        return outcome
    return None
