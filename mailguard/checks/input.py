"""Input checks (MG0xx): limits reached while reading hostile or oversized messages."""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings
from mailguard.headers import decode_words


def limits_reached(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG002: say where mailguard stopped reading, so a decision is never silently partial."""
    reasons = [
        p.detail
        for p in ctx.message.problems
        if p.kind in ("oversized-field", "header-block-truncated")
    ]
    if ctx.recipients.truncated:
        reasons.append(
            f"more than {ctx.config.limits.max_addresses:,} addresses (counting stopped there)"
        )
    limit_hit = ctx.message.body_text.limit_hit
    if limit_hit:
        reasons.append(limit_hit)
    if reasons:
        yield Hit("input exceeds safe limits: " + "; ".join(reasons), evidence={"limits": reasons})


def undecodable_text(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG003: text read with replacement characters because its encoding was unusable."""
    places: list[str] = []
    sender = ctx.recipients.sender
    for where, value in (
        ("subject", ctx.message.get("subject")),
        ("sender name", sender.name if sender is not None else None),
    ):
        if value:
            problem = decode_words(value)[1]
            if problem:
                places.append(f"{where}: {problem}")
    problem = ctx.message.body_text.problem
    if problem:
        places.append(problem)
    if places:
        yield Hit(
            "text read with replacement characters: " + "; ".join(places),
            evidence={"problems": places},
        )
