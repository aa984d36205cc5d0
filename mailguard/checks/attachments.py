"""Attachment checks (MG6xx): files that list people, special-category columns, and files
that could not be read.

Each check reads the attachment analysis (``ctx.attachments``, computed once per message
and only when one of them is enabled) and reports facts; the points follow the rule's
options, in bands rather than a straight line, because "a few names", "a department" and "a whole
register" are different incidents. Sending only to colleagues weighs less (``internal_percent``):
the data stays in the organisation, though it may still reach people who should not see it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mailguard.attachments import EMPTY, LABELS, Analysis
from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings
from mailguard.domains import registrable_domain
from mailguard.report import Redacted
from mailguard.sensitive import vocabulary

_NONE: tuple[Hit, ...] = ()
_GROUP_ORDER = ("contact details", "identity", "identifiers")


def attachment_people(ctx: CheckContext, settings: RuleSettings) -> Iterable[Hit]:
    """MG601: an attachment lists people; points by band, kinds of data and recipients."""
    found = ctx.attachments
    n = found.people
    if not n:  # (EMPTY, the analysis of a message without files, has none)
        return _NONE
    opts = settings.options
    if n >= opts["block_people"]:
        points, band = opts["block_weight"], "block"
    elif n >= opts["warn_people"]:
        points, band = opts["warn_weight"], "warn"
    else:
        points, band = settings.weight, "note"
    kinds = sorted(found.kinds)
    groups = _groups(kinds)
    points += min(opts["kind_points"] * max(len(groups) - 1, 0), opts["max_kind_points"])
    internal = internal_only(ctx)
    if internal:
        points = points * opts["internal_percent"] // 100
    points = min(points, 100)
    files = sum(1 for f in found.files if f.facts.people)
    what = "; ".join(f"{g}: {', '.join(_kind_labels(ks))}" for g, ks in groups.items())
    tail = " (internal recipients only)" if internal else ""
    message = (
        f"{n:,} distinct {'person' if n == 1 else 'people'} listed in "
        f"{files:,} attachment{'s' if files != 1 else ''} ({what}){tail}"
    )
    return (Hit(message, {
        "people": n, "kinds": kinds, "data": [*groups], "files": files, "band": band,
        "internal_only": internal, "points": points, "partial": bool(found.limits),
    }),)  # fmt: skip


def special_category(ctx: CheckContext, settings: RuleSettings) -> Iterable[Hit]:
    """MG602: a column, sheet name or file name of an attachment listing people marks
    special-category data (health, religion, ethnicity, ...)."""
    found = ctx.attachments
    if found is EMPTY or found.people < settings.options["min_people"]:
        return _NONE
    sensitive = ctx.config.sensitive_settings  # the same switches as the message's context
    wanted = set(sensitive.categories) | {"custom"} if sensitive.categories else None
    special = {k: v for k, v in found.special.items() if wanted is None or k in wanted}
    if not special or not sensitive.enabled:
        return _NONE
    categories = {c.key: c for c in vocabulary().categories}
    labels = sorted(categories[k].label if k in categories else "organisation-defined"
                    for k in special)  # fmt: skip
    legal = sorted({categories[k].gdpr for k in special if k in categories})
    places = sorted({p for ps in special.values() for p in ps})
    internal = internal_only(ctx)
    points = settings.weight
    if internal:
        points = points * settings.options["internal_percent"] // 100
    head = f"special-category data in attachments listing {found.people:,} people"
    shown = "; ".join(places[:5]) + (f"; +{len(places) - 5} more" if len(places) > 5 else "")
    evidence = {"categories": sorted(special), "labels": labels, "legal_basis": legal,
                "people": found.people, "internal_only": internal, "points": points}  # fmt: skip
    safe_places = sorted({f.label for f in found.files if special.keys() & f.facts.special})
    return (Hit(
        f"{head} — {', '.join(labels)} ({shown})",
        {**evidence, "places": places},
        redacted=Redacted(f"{head} — {', '.join(labels)} (in {', '.join(safe_places)})",
                          {**evidence, "places": safe_places}),
    ),)  # fmt: skip


def uninspected(ctx: CheckContext, settings: RuleSettings) -> Iterable[Hit]:
    """MG603: an attachment that could not be read is said, never passed over in silence."""
    found = ctx.attachments
    if found is EMPTY:
        return _NONE
    files = found.uninspected
    if not files:
        return _NONE
    shown = [f"{f.name or f.label} ({LABELS.get(f.format, f.format)}): {f.problem}" for f in files]
    safe = [f"{f.label} ({LABELS.get(f.format, f.format)}): {f.problem}" for f in files]
    why = "attachment could not be inspected"
    evidence = {"files": len(files), "encrypted": sum(f.encrypted for f in files),
                "over_limit": sum(f.over_limit for f in files)}  # fmt: skip
    return (Hit(
        f"{why}: {'; '.join(shown)}", {**evidence, "problems": shown},
        redacted=Redacted(f"{why}: {'; '.join(safe)}", {**evidence, "problems": safe}),
    ),)  # fmt: skip


def internal_only(ctx: CheckContext) -> bool:
    """Whether every recipient (To, Cc, Bcc, envelope) is internal, and there is one."""
    r = ctx.recipients
    keys = set(r.visible) | set(r.bcc) | r.envelope_rcpt
    if not keys:
        return False
    internal_set = ctx.config.internal_set
    sender = r.sender
    own = registrable_domain(sender.domain) if sender is not None else None
    if not internal_set and (own is None or sender is None
                             or sender.domain in ctx.config.personal_set):  # fmt: skip
        return False
    for key in keys:
        if key in r.internal:
            continue
        domain = key.rpartition("@")[2]
        if internal_set:
            if domain not in internal_set:
                return False
        elif registrable_domain(domain) != own:
            return False
    return True


def attachment_limits(ctx: CheckContext) -> list[str]:
    """Caps reached reading attachments, for the limits finding: only when a rule that
    reads attachments is enabled (otherwise nothing was read, and nothing is owed)."""
    if not _reads_attachments(ctx.config.rule_settings, ctx.config.derived):
        return []
    found: Analysis = ctx.attachments
    return found.limits if found is not EMPTY else []


def _reads_attachments(rules: Mapping[str, RuleSettings], derived: dict[str, Any]) -> bool:
    known = derived.get("attachments:enabled")
    if known is None:
        known = derived["attachments:enabled"] = any(
            s.enabled and "attachments" in s.rule.reads for s in rules.values()
        )
    return bool(known)


def _groups(kinds: list[str]) -> dict[str, list[str]]:
    from mailguard.attachments.columns import vocabularies  # loaded with the first file

    group_of = vocabularies().groups
    groups: dict[str, list[str]] = {}
    for g in _GROUP_ORDER:
        members = [k for k in kinds if group_of.get(k) == g]
        if members:
            groups[g] = members
    return groups


def _kind_labels(kinds: list[str]) -> list[str]:
    from mailguard.attachments.columns import vocabularies

    labels = {c.key: c.label for c in vocabularies().kinds.categories}
    return [labels.get(k, k) for k in kinds]
