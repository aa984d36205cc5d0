"""What a check receives and what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mailguard import sensitive
from mailguard.config import Config
from mailguard.headers import decode_rfc2047
from mailguard.message import Message
from mailguard.recipients import Envelope, RecipientAnalysis
from mailguard.report import Redacted

SENSITIVE_RULE = "MG301"


@dataclass(frozen=True, slots=True)
class Hit:
    """One problem found by a check."""

    message: str
    weight: int | None = None
    """Points contributed; ``None`` means the rule's configured weight."""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    redacted: Redacted | None = None
    """Required when ``message`` or ``evidence`` quotes the message (a header name, a matched
    word): the same finding without those words, for reports under ``--redact``."""


@dataclass
class CheckContext:
    """The parsed message and its analyses, shared by every check of one message."""

    message: Message
    recipients: RecipientAnalysis
    config: Config
    envelope: Envelope | None
    mode: str

    @cached_property
    def sensitive(self) -> list[sensitive.Match]:
        """Sensitive-context matches, computed only if a check asks (it reads the body)."""
        settings = self.config.rule_settings[SENSITIVE_RULE]
        if not settings.enabled:
            return []
        opts = settings.options
        wanted = frozenset(opts["categories"]) if opts["categories"] else None
        return sensitive.detect(
            self._context_texts(), sensitive.vocabulary(opts["extra_terms"]), wanted
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
