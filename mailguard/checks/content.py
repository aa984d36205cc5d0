"""Content checks (MG3xx): what the message reveals about its recipients."""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings
from mailguard.report import Redacted


def sensitive_context(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG301: the sender, subject or opening text marks the recipients as a sensitive group.

    The engine runs it only from ``min_parties`` exposed parties (``[scoring]`` counts
    ``recipients.exposed_parties``), so the body is not read for a message to one person.
    """
    parties = len(ctx.recipients.parties)
    if not ctx.sensitive:
        return
    by_label: dict[str, list[str]] = {}
    places: dict[str, set[str]] = {}
    gdpr: dict[str, str] = {}
    for m in ctx.sensitive:
        by_label.setdefault(m.category.label, []).append(f"'{m.term}' in {m.where}")
        places.setdefault(m.category.label, set()).add(m.where)
        gdpr[m.category.label] = m.category.gdpr
    parts = [
        f"{label} ({'; '.join(sorted(set(ev))[:3])})" for label, ev in sorted(by_label.items())
    ]
    # The matched word is a quote from the message: "'housing benefit' in subject" tells a
    # reader of a redacted report what the withheld subject says. Where it was is not.
    safe = [f"{label} (in {', '.join(sorted(places[label]))})" for label in sorted(places)]
    tail = f": being on this list reveals something about each of the {parties:,} exposed parties"
    yield Hit(
        f"sensitive context — {', '.join(parts)}{tail}",
        evidence={
            "categories": sorted({m.category.key for m in ctx.sensitive}),
            "labels": sorted(by_label),
            "legal_basis": sorted(set(gdpr.values())),
            "parties": parties,
        },
        redacted=Redacted(f"sensitive context — {', '.join(safe)}{tail}"),
    )
