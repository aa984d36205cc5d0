"""Results: findings and per-message reports, with the stable JSON contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailguard.addresses import Address
from mailguard.redact import REDACTED_KEY
from mailguard.scoring import Verdict

if TYPE_CHECKING:
    from mailguard.approval import Approved
    from mailguard.recipients import RecipientAnalysis
    from mailguard.rules import Rule

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Redacted:
    """A finding as a report under ``--redact`` shows it.

    Checks keep the raw facts (the header name, the matched word) in ``message`` and
    ``evidence``, because that is what a user fixing the message needs; only the check knows
    which parts of its words quote the message, so it also says what is left without them.
    """

    message: str
    evidence: Mapping[str, Any] | None = None
    """``None``: the evidence holds no message data and is shown as it is."""


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    name: str
    severity: str
    message: str
    weight: int
    """Points this finding added to the score."""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    redacted: Redacted | None = None
    """What ``--redact`` shows instead, when the message or evidence quotes message data."""
    rule: Rule | None = field(default=None, repr=False, compare=False)
    """The rule's definition: outputs and the milter read its metadata (tags, remedy, the
    sender's wording), never its code."""

    @property
    def tags(self) -> tuple[str, ...]:
        return self.rule.tags if self.rule is not None else ()

    @property
    def remedy(self) -> str | None:
        return self.rule.remedy if self.rule is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract's finding, plus the :class:`Redacted` variant under
        ``redacted`` when there is one: the scan register keeps findings as dicts, and the
        outputs (:class:`mailguard.redact.Privacy`) pick the variant and drop the key."""
        data = {
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "weight": self.weight,
            "evidence": dict(self.evidence),
            "tags": list(self.tags),
        }
        if self.redacted is not None:
            evidence = self.redacted.evidence
            data[REDACTED_KEY] = {
                "message": self.redacted.message,
                "evidence": dict(self.evidence if evidence is None else evidence),
            }
        return data


@dataclass(frozen=True, slots=True)
class Skipped:
    """An enabled rule that did not run on this message, and why (a service not given)."""

    code: str
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ExposedAddress:
    """An address shown only when the user asks (``--show-addresses``)."""

    address: Address
    kind: str  # "internal" | "personal" | "organisation" | "list"


@dataclass
class Report:
    """The decision about one message."""

    source: str
    verdict: Verdict
    score: int
    findings: list[Finding]
    recipients: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    analysis: RecipientAnalysis | None = field(default=None, repr=False, compare=False)
    """The full recipient analysis, for callers that need more than the counts."""
    date: str | None = field(default=None, repr=False, compare=False)
    """The Date header as written (the archive scanner dates incidents with it)."""
    subject: str | None = field(default=None, repr=False, compare=False)
    """The decoded Subject, cut to 200 characters. Not in ``to_dict``: it can be personal."""
    skipped: list[Skipped] = field(default_factory=list)
    """Enabled rules that did not run, so a reader knows which checks did not happen."""
    approval: Approved | None = None
    """Set when a valid signed approval made the verdict ``pass`` (:mod:`mailguard.approval`)."""

    def exposed(self) -> list[ExposedAddress]:
        """Visible addresses with their classification; outputs print them only on request."""
        r = self.analysis
        if r is None:
            return []

        def kind(key: str) -> str:
            if key in r.internal:
                return "internal"
            if key in r.lists:
                return "list"
            return "personal" if key in r.personal else "organisation"

        return [ExposedAddress(addr, kind(key)) for key, addr in r.visible.items()]

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """The per-message object of the JSON contract (no addresses)."""
        return {
            "source": self.source,
            "verdict": self.verdict,
            "score": self.score,
            "message_id": self.message_id,
            "recipients": self.recipients,
            "findings": [_public(f.to_dict()) for f in self.findings],
            "skipped": [s.to_dict() for s in self.skipped],
        } | ({"approval": self.approval.to_dict()} if self.approval else {})


def _public(finding: dict[str, Any]) -> dict[str, Any]:
    finding.pop(REDACTED_KEY, None)
    return finding


EMPTY_RECIPIENTS: dict[str, Any] = {
    "to": 0, "cc": 0, "bcc": 0, "visible": 0, "visible_internal": 0, "visible_external": 0,
    "external_domains": 0, "personal": 0,
}  # fmt: skip
