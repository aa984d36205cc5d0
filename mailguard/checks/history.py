"""History checks (MG403, MG404): recipients that do not fit what the sender usually does.

They ask the store through ``ctx.services.history``
(:class:`mailguard.history.service.HistoryService`); a store that stops answering makes
them add a ``skipped`` note and find nothing, so the decision goes on without them.

A near miss is named ("did you mean …?") in the finding's message, which only the
sender's own tooling shows (``mailguard check``, the JSON report); the redacted form, the
milter's log line and its SMTP reply never carry it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings
from mailguard.domains import registrable_domain
from mailguard.history import near
from mailguard.history.service import HistoryService, HistoryUnavailable, NearMiss
from mailguard.report import Redacted, Skipped

_SUGGESTIONS = 3
"""Near misses per message that get a "did you mean"."""
_ID = re.compile(r"<([^<>\s]{1,250})>")
_REPLY_SUBJECT = re.compile(r"^\s*(re|aw|sv|antw|r)\s*:", re.IGNORECASE)
_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|wg|tr|rv)\s*:", re.IGNORECASE)
_QUOTE_MARKERS = re.compile(
    r"^(?:-{2,}\s*original message\s*-{2,}|_{10,}\s*$|on .{1,200} wrote:\s*$"
    r"|-{2,}\s*forwarded message\s*-{2,}|begin forwarded message:)",
    re.IGNORECASE | re.MULTILINE,
)


class _Parties:
    """The message's sender and recipients as the history rules see them."""

    def __init__(self, ctx: CheckContext) -> None:
        r = ctx.recipients
        self.sender = r.sender.addr if r.sender is not None else None
        ordered = dict.fromkeys([*r.visible, *r.bcc, *sorted(r.envelope_rcpt)])
        ordered.pop(self.sender or "", None)
        self.all = [a for a in ordered if a not in r.lists]
        config = ctx.config
        own = registrable_domain(r.sender.domain) if r.sender is not None else None
        personal = r.sender is not None and r.sender.domain in config.personal_set

        def internal(addr: str) -> bool:
            if addr in r.internal:
                return True
            domain = addr.rpartition("@")[2]
            if config.internal_set:
                return domain in config.internal_set
            return not personal and own is not None and registrable_domain(domain) == own

        self.internal = {a for a in self.all if internal(a)}
        self.external = [a for a in self.all if a not in self.internal]


def _service(ctx: CheckContext) -> HistoryService:
    history = ctx.services.history
    assert isinstance(history, HistoryService)
    return history


Check = Callable[[CheckContext, RuleSettings], Iterator[Hit]]


def _degrading(check: Check) -> Check:
    """The check, finding nothing and noting it as skipped when the store cannot answer."""

    @functools.wraps(check)
    def run(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
        try:
            yield from check(ctx, settings)
        except HistoryUnavailable:
            reason = "the history store could not be read"
            ctx.notes.append(Skipped(settings.code, settings.rule.name, reason))

    return run


@_degrading
def unfamiliar_recipient(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG403: an external recipient the sender never wrote to, among familiar ones, or a
    near miss of a familiar address."""
    opts = settings.options
    history = _service(ctx)
    parties = _Parties(ctx)
    if parties.sender is None or not parties.external:
        return
    if len(parties.all) > opts["max_recipients"]:
        return  # a mailout: not a slip of autocomplete, and each address would cost lookups
    if history.sender_messages(parties.sender) < opts["min_sender_messages"]:
        return  # too little history to tell a stranger from a first contact
    org_wide = opts["organisation"]
    mine, org = history.familiar(parties.sender, parties.all)
    familiar = mine | org if org_wide else mine
    named = 0
    for addr in parties.external:
        if addr in familiar:
            continue
        miss = history.near_miss(addr, parties.sender, org_wide)
        others = [a for a in parties.all if a != addr]
        if miss is not None and miss.target not in {history.address(a) for a in others}:
            named += 1  # a suggestion costs a few thousand hashes: the first few only
            yield _near_hit(ctx, history, addr, miss, suggest=named <= _SUGGESTIONS)
            continue
        familiar_others = [a for a in others if a in familiar]
        if familiar_others and all(a in familiar or a in parties.internal for a in others):
            yield _stranger_hit(addr, len(familiar_others), org_wide)


def _near_hit(
    ctx: CheckContext, history: HistoryService, addr: str, miss: NearMiss, *, suggest: bool
) -> Hit:
    config = ctx.config
    domains = [
        *config.internal_domains, *config.partner_domains,
        *(a.rpartition("@")[2] for a in ctx.recipients.visible), *sorted(config.personal_set),
    ]  # fmt: skip
    meant = history.suggest(addr, miss, dict.fromkeys(domains)) if suggest else None
    whose = "you have written to" if miss.own else "your organisation has written to"
    how = near.KINDS[miss.kind]
    guess = f"; did you mean {meant}?" if meant else ""
    message = f"{addr} is new to you and close to an address {whose} ({how}){guess}"
    evidence = {"rank": 2, "kind": miss.kind, "own": miss.own, "suggested": meant is not None}
    redacted = Redacted(
        f"a recipient is new to you and close to an address {whose} ({how})", evidence
    )
    return Hit(message, {**evidence, "recipient": addr, "meant": meant}, redacted)


def _stranger_hit(addr: str, familiar: int, org_wide: bool) -> Hit:
    who = "neither you nor your organisation has" if org_wide else "you have never"
    written = "written to"
    message = (
        f"{addr}: {who} {written} this external address, yet the message's other "
        f"{familiar} recipient(s) are familiar"
    )
    evidence = {"rank": 1, "kind": "unfamiliar", "familiar_recipients": familiar}
    redacted = Redacted(
        f"an external recipient {who} {written}, among {familiar} familiar one(s)", evidence
    )
    return Hit(message, {**evidence, "recipient": addr}, redacted)


@_degrading
def reply_all_drift(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG404: a reply or forward in a known thread that adds outsiders to a substantial or
    sensitive history; a reply-all to a large list whose original had a single sender."""
    opts = settings.options
    message = ctx.message
    ids = [*_ID.findall(" ".join(message.get_all("in-reply-to")))[:1]]
    ids += reversed(_ID.findall(" ".join(message.get_all("references")))[-100:])
    if not ids:
        return
    history = _service(ctx)
    parties = _Parties(ctx)
    if parties.sender is None:
        return
    thread = history.thread(list(dict.fromkeys(ids)))
    subject = message.get("subject") or ""
    forward = bool(_FORWARD_SUBJECT.match(subject))
    if thread is not None and parties.external:
        added = [a for a in parties.external if not history.on_thread(thread, a)]
        quoted = quoted_chars(message.body_text.text)
        sensitive = bool(ctx.sensitive)
        if added and (quoted >= opts["min_quoted_chars"] or sensitive):
            why = "sensitive context" if sensitive else f"{quoted:,} characters of quoted history"
            what = "forward" if forward else "reply"
            text = (
                f"this {what} adds {len(added)} external recipient(s) who were not on the "
                f"thread, and it carries {why}"
            )
            evidence = {"rank": 2, "kind": "drift", "added": len(added), "quoted": quoted,
                        "sensitive": sensitive}  # fmt: skip
            yield Hit(text, evidence, Redacted(text, evidence))
            return
    visible = len(ctx.recipients.visible)
    replying = bool(message.get_all("in-reply-to")) and not forward
    single = thread is None or (
        thread.senders == 1 and thread.first_sender != history.address(parties.sender)
    )
    if replying and visible >= opts["min_list"] and single:
        text = (
            f"a reply to {visible} visible recipients of a message that had a single "
            "sender: most of them need not see the answer (reply-all)"
        )
        evidence = {"rank": 1, "kind": "reply-all", "visible": visible}
        yield Hit(text, evidence, Redacted(text, evidence))


def quoted_chars(text: str) -> int:
    """Characters of quoted history: ``>`` lines, and everything after a quote marker."""
    marker = _QUOTE_MARKERS.search(text)
    after = len(text) - marker.start() if marker else 0
    head = text[: marker.start()] if marker else text
    quoted = sum(len(line) for line in head.splitlines() if line.startswith(">"))
    return quoted + after
