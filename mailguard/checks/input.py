"""Input checks (MG0xx): limits reached while reading hostile or oversized messages."""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.attachments import attachment_limits
from mailguard.checks.base import CheckContext, Hit
from mailguard.checks.domains import lookalike_limit
from mailguard.config import RuleSettings
from mailguard.headers import decode_words
from mailguard.report import Redacted


def limits_reached(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG002: say where mailguard stopped reading, so a decision is never silently partial."""
    reasons: list[str] = []
    safe: list[str] = []  # without the header name: any name can be an address or a word
    for p in ctx.message.problems:
        if p.kind in ("oversized-field", "header-block-truncated"):
            reasons.append(p.detail)
            oversized = p.kind == "oversized-field"
            safe.append(f"a header is {p.size:,} characters long" if oversized else p.detail)
    others: list[str] = []
    if ctx.recipients.truncated:
        others.append(
            f"more than {ctx.config.limits.max_addresses:,} addresses (counting stopped there)"
        )
    limit_hit = ctx.message.body_text.limit_hit
    if limit_hit:
        others.append(limit_hit)
    others += attachment_limits(ctx)
    others += lookalike_limit(ctx)
    reasons += others
    safe += others
    if reasons:
        yield Hit(
            "input exceeds safe limits: " + "; ".join(reasons),
            evidence={"limits": reasons},
            redacted=Redacted("input exceeds safe limits: " + "; ".join(safe), {"limits": safe}),
        )


def undecodable_text(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG003: text read with replacement characters because its encoding was unusable, or
    header lines ended by a bare CR, which mail programs read in two different ways."""
    places: list[str] = []
    where_only: list[str] = []  # under --redact: a charset name is the sender's text
    sender = ctx.recipients.sender
    for where, value in (
        ("subject", ctx.message.get("subject")),
        ("sender name", sender.name if sender is not None else None),
    ):
        if value:
            problem = decode_words(value)[1]
            if problem:
                places.append(f"{where}: {problem}")
                where_only.append(where)
    problem = ctx.message.body_text.problem
    if problem:
        places.append(problem)
        where_only.append("body")
    said = ["text read with replacement characters: " + "; ".join(places)] if places else []
    safe = ["text read with replacement characters in " + ", ".join(where_only)] if places else []
    # The detail holds counts only, never the message's text: the same under --redact.
    bare_cr = [p.detail for p in ctx.message.problems if p.kind == "bare-cr"]
    if said or bare_cr:
        yield Hit(
            "; ".join(said + bare_cr),
            evidence={"problems": places + bare_cr},
            redacted=Redacted("; ".join(safe + bare_cr), {"problems": where_only + bare_cr}),
        )
