"""From a verdict to what reaches the upstream, and the one reply the client gets.

``reject`` and ``tempfail`` relay nothing and word the refusal exactly as the milter does
(:func:`mailguard.milter.decision.refusal_reason`), so a sender sees the same reason
whichever gate stopped the message. ``accept`` relays the message as it came, with the
milter's monitor-style X-Mailguard-* headers when ``add_headers`` asks for them.
``rewrite`` is the milter's rewrite (:mod:`mailguard.remedy`) applied to the bytes, then
re-checked with the same engine; if it cannot cure the message, ``rewrite_fallback``.
``split`` sends one copy per envelope recipient over the one upstream connection, each
with ``To:`` that recipient alone, no Cc/Bcc and a fresh Message-ID, the body untouched.

A split is the one action that can half succeed, and SMTP can answer the client only once
for the whole message. The reply therefore says how many copies went and how many did not;
every accepted copy is in the retry journal (:mod:`mailguard.proxy.journal`) before the
next is sent, so the client's retry of the same message delivers only the missing ones:

- all copies accepted (or accepted earlier): ``250 2.0.0`` with the counts;
- any copy failed temporarily, or the upstream went away: ``451 4.4.2`` "N of M copies
  delivered ... send the same message again: only the missing copies will be sent";
- otherwise some copies were refused for good: ``554 5.0.0`` with the counts and the
  upstream's first refusal code; a resend again sends only those.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mailguard.engine import Engine
from mailguard.milter.decision import refusal_reason
from mailguard.milter.decision import verdict_headers as milter_headers
from mailguard.milter.settings import MilterSettings
from mailguard.proxy import edit
from mailguard.proxy.journal import Journal
from mailguard.proxy.relay import Reply, Upstream, UpstreamError
from mailguard.proxy.settings import ProxySettings
from mailguard.recipients import Envelope
from mailguard.remedy import rewrite_message
from mailguard.report import Report
from mailguard.scoring import Scoring

T = TypeVar("T")
INLINE_COPY_BYTES = 64 * 1024
"""A split copy of a message up to this size is built on the event loop (microseconds)."""


def configured(report: Report, settings: ProxySettings) -> str:
    if report.verdict == "block":
        return settings.on_block
    if report.verdict == "warn":
        return settings.on_warn
    if report.verdict == "error":
        return settings.on_error
    return "accept"


@functools.lru_cache(maxsize=4)
def _policy(add_headers: str) -> MilterSettings:
    return MilterSettings(add_headers=add_headers)  # built once: its defaults parse networks


def verdict_headers(report: Report, settings: ProxySettings) -> list[tuple[str, str]]:
    """The milter's monitor-style headers, under the same ``add_headers`` policy."""
    return milter_headers(report, _policy(settings.add_headers), "", "")


def refusal(code: str, report: Report) -> Reply:
    number, _, enhanced = code.partition(" ")
    return int(number), f"{enhanced} {refusal_reason(report)}"


def rewrite(
    raw: bytes, report: Report, engine: Engine, envelope: Envelope, scoring: Scoring,
    rewrite_to: str = "undisclosed",
) -> tuple[bytes | None, dict[str, object]]:  # fmt: skip
    """The milter's rewrite (:func:`mailguard.remedy.rewrite_message`) on the bytes, re-checked
    with the same engine and envelope: the message to relay (None: use the fallback) and
    the counts for the log line, as the milter logs them."""
    level = "block" if report.verdict == "block" else "warn"
    done = rewrite_message(
        raw, report, level=level, scoring=scoring, rewrite_to=rewrite_to,
        recheck=lambda data: engine.check(data, envelope=envelope, source="proxy"),
    )  # fmt: skip
    if not done.ok:  # logged as the milter does: rewrite=fallback:<codes>
        return None, {"rewrite": f"fallback:{done.why}"}
    plan = done.plan
    return done.data, {"visible_before": plan.visible_before, "visible_after": plan.visible_after}


@dataclass
class SplitResult:
    copies: int = 0
    sent: int = 0
    earlier: int = 0
    """Copies the journal says went out on an earlier attempt (not sent again)."""
    temporary: int = 0
    permanent: int = 0
    first_failure: Reply | None = None

    def reply(self) -> Reply:
        done = self.sent + self.earlier
        counts = f"{done:,} of {self.copies:,} copies delivered"
        if self.temporary:
            why = self.first_failure[1] if self.first_failure else "upstream failure"
            upstream = f"{self.first_failure[0]} " if self.first_failure else ""
            return 451, (
                f"4.4.2 mailguard: {counts}, {self.copies - done:,} not yet (upstream: "
                f"{upstream}{_short(why)}); send the same message again: only the missing "
                "copies will be sent"
            )
        if self.permanent:
            code = self.first_failure[0] if self.first_failure else 554
            return 554, (
                f"5.0.0 mailguard: {counts}, {self.permanent:,} refused by the upstream "
                f"({code}); a resend of the same message sends only those"
            )
        earlier = f", {self.earlier:,} of them on an earlier attempt" if self.earlier else ""
        return 250, f"2.0.0 mailguard: split into one copy per recipient, {counts}{earlier}"


def _short(text: str) -> str:
    """The upstream's reply text, one line, no addresses (it may quote the recipient)."""
    line = " ".join(text.split())[:120]
    return " ".join(w for w in line.split() if "@" not in w)


async def split(
    upstream: Upstream, journal: Journal, raw: bytes, mail_from: str, options: tuple[str, ...],
    recipients: list[str], domain: str,
) -> SplitResult:  # fmt: skip
    """Send the missing copies, journal each success (on the event loop; the journal's
    SQLite and, for a big message, building each copy run on a worker thread).

    Stops at the first sign that the connection is gone, without reconnecting: an upstream
    that drops us mid-way may be limiting us, and the remaining copies count as temporary
    failures that the client's retry (after our 451) sends. A copy the upstream refuses is
    counted and the next one tried.
    """
    loop = asyncio.get_running_loop()

    def off(func: Callable[..., T], *args: object) -> asyncio.Future[T]:
        return loop.run_in_executor(None, func, *args)

    # One copy per person: a recipient given twice (in any case) gets one copy, not two.
    first: dict[str, str] = {}
    for recipient in recipients:
        first.setdefault(recipient.lower(), recipient)
    recipients = list(first.values())
    result = SplitResult(copies=len(recipients))
    key = await off(journal.message_key, mail_from, raw)
    earlier = await off(journal.delivered, key, recipients)
    result.earlier = len(earlier)
    template = await off(edit.SplitTemplate, raw, domain, [
        ("X-Mailguard-Action", f"split; one copy per recipient ({len(recipients)})")
    ])  # fmt: skip
    big = len(raw) > INLINE_COPY_BYTES
    for recipient in recipients:
        if recipient in earlier:
            continue
        data = await off(template.copy, recipient) if big else template.copy(recipient)
        try:
            reply = await upstream.send_copy(mail_from, options, recipient, data)
        except UpstreamError as exc:
            result.temporary = result.copies - result.sent - result.earlier - result.permanent
            result.first_failure = result.first_failure or exc.reply
            break
        if 200 <= reply[0] < 300:
            result.sent += 1
            try:
                await off(journal.record, key, recipient)
            except sqlite3.Error:
                # Unrecorded copies would go out again on the retry: stop here instead.
                result.temporary = result.copies - result.sent - result.earlier - result.permanent
                result.first_failure = (451, "4.3.0 mailguard: the retry journal cannot be written")
                break
        else:
            result.first_failure = result.first_failure or reply
            if reply[0] >= 500:
                result.permanent += 1
            else:
                result.temporary += 1
    return result
