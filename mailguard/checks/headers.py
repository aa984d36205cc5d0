"""Header-leak checks (MG5xx): headers that reveal recipients who were meant to be hidden."""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings


def bcc_header(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG501: a Bcc header left in a payload about to be sent."""
    n = len(ctx.recipients.bcc)
    if not n:
        return
    yield Hit(
        f"the message still carries a Bcc: header with {n:,} address{'es' if n != 1 else ''}: "
        f"unless every server on the way strips it, all recipients will see the hidden list",
        {"bcc": n},
    )
