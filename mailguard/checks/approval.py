"""Approval checks (MG7xx): a signed approval that does not verify is never ignored."""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings
from mailguard.report import Redacted


def approval_invalid(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG701: the message carries an approval that is malformed, expired, by an unknown
    key, or for other recipients, body, From or Subject than it now has.

    Ignoring it would teach senders that a broken approval is as good as none; reporting it
    with a weight that blocks tells them exactly what to redo. The words hold a key id and
    times, never message content, so the redacted variant is the same.
    """
    result = ctx.approval()
    if result.status != "invalid":
        return
    message = f"the signed approval is not accepted: {result.reason}"
    evidence: dict[str, object] = {"reasons": list(result.reasons), "key_id": result.key_id}
    yield Hit(message, evidence, Redacted(message, evidence))
