"""What a check receives and what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mailguard import sensitive
from mailguard.approval import Verification, review
from mailguard.config import Config
from mailguard.headers import decode_rfc2047
from mailguard.message import Message
from mailguard.recipients import Envelope, RecipientAnalysis
from mailguard.report import Redacted, Skipped
from mailguard.services import Services


@dataclass(frozen=True, slots=True)
class Hit:
    """What a check found: facts, not points.

    The engine turns the facts into points with the rule's ``[scoring]`` table (the count
    it names is read from ``evidence``); a rule without one is worth its weight.
    """

    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    redacted: Redacted | None = None
    """Required when ``message`` or ``evidence`` quotes the message (a header name, a matched
    word): the same finding without those words, for reports under ``--redact``."""


@dataclass
class CheckContext:
    """The parsed message and its analyses, shared by every check of one message.

    Shared analyses are providers here, computed once and only when a check asks, with
    their own settings section (``[sensitive]``): no check reads another rule's options.
    """

    message: Message
    recipients: RecipientAnalysis
    config: Config
    envelope: Envelope | None
    mode: str
    services: Services = field(default_factory=Services)
    notes: list[Skipped] = field(default_factory=list)
    """Checks that ran but could not finish (DNS unanswered): the report lists them under
    ``skipped``, because they are neither a finding nor an error."""

    @cached_property
    def sensitive(self) -> list[sensitive.Match]:
        """Sensitive-context matches (reads the body): the ``[sensitive]`` provider."""
        settings = self.config.sensitive_settings
        if not settings.enabled:
            return []
        wanted = frozenset(settings.categories) if settings.categories else None
        return sensitive.detect(
            self._context_texts(), sensitive.vocabulary(settings.extra_terms), wanted
        )

    def _context_texts(self) -> dict[str, str]:
        texts: dict[str, str] = {}
        sender = self.recipients.sender
        if sender is not None:
            texts["sender name"] = decode_rfc2047(sender.name).strip('"')
            texts["sender address"] = sender.addr.replace("_", " ")
        texts["subject"] = decode_rfc2047(self.message.get("subject") or "")
        texts["body"] = self.message.body_text.text
        return texts

    _approval: Verification | None = field(default=None, repr=False)
    """Set by :meth:`approval` (a plain field, not a cached property: mypyc)."""

    def approval(self) -> Verification:
        """The message's signed approval, verified once (rule MG701 and the engine ask)."""
        if self._approval is None:
            self._approval = review(self.message, self.services, self.mode, self.recipients)
        return self._approval
