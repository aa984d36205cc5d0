"""Input checks (MG0xx): limits reached while reading hostile or oversized messages."""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings
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
    reasons += others
    safe += others
    if reasons:
        yield Hit(
            "input exceeds safe limits: " + "; ".join(reasons),
            evidence={"limits": reasons},
            redacted=Redacted("input exceeds safe limits: " + "; ".join(safe), {"limits": safe}),
        )
