"""Recipient checks (MG1xx): exposed parties, personal addresses, envelope, list syntax."""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def sensitive_labels(ctx: CheckContext) -> list[str]:
    return sorted({m.category.label for m in ctx.sensitive})


def exposed_parties(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG101: unrelated external parties in To/Cc learn each other's addresses.

    Reports the count and the thresholds that apply (lower in a sensitive context); the
    engine scores them (``[scoring]`` in the rule file).
    """
    opts = settings.options
    r = ctx.recipients
    n = len(r.parties)
    if not n:
        return
    low, high = opts["min_parties"], opts["mass_parties"]
    labels: list[str] = []
    if opts["sensitive_min_parties"] <= n < high:
        labels = sensitive_labels(ctx)
        if labels:
            low, high = opts["sensitive_min_parties"], opts["sensitive_mass_parties"]
    if n < low:
        return  # a fact the engine would drop (its [scoring] min is this threshold): skip the words
    personal = len(r.personal)
    orgs = n - personal
    detail = _plural(personal, "personal address", "personal addresses")
    detail += f", {_plural(orgs, 'organisation')}"
    message = (
        f"{_plural(n, 'external party', 'external parties')} ({detail}) can see each other's "
        f"addresses in To/Cc"
    )
    if labels:
        message += (
            f"; threshold lowered to {low} because the context is sensitive ({', '.join(labels)})"
        )
    yield Hit(
        message,
        {"parties": n, "personal": personal, "organisations": orgs, "threshold": low,
         "mass_threshold": high, "sensitive": labels},
    )  # fmt: skip


def personal_exposed(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG102: members of the public (consumer mailboxes) are among the exposed."""
    opts = settings.options
    n = len(ctx.recipients.personal)
    if not n:
        return
    threshold = opts["min_personal"]
    if n >= opts["sensitive_min_personal"] and n < threshold and sensitive_labels(ctx):
        threshold = opts["sensitive_min_personal"]
    providers = sorted({ctx.recipients.visible[a].domain for a in ctx.recipients.personal})
    shown = ", ".join(providers[:4]) + (", …" if len(providers) > 4 else "")
    yield Hit(
        f"{_plural(n, 'personal address', 'personal addresses')} of individuals ({shown}) "
        f"are visible to every recipient",
        evidence={"personal": n, "providers": providers, "threshold": threshold},
    )


def envelope_visible(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG103: the envelope confirms the visible addresses really receive the message."""
    r = ctx.recipients
    overlap = r.envelope_visible - r.internal
    if len(r.envelope_rcpt) < 2 or not overlap:
        return
    yield Hit(
        f"{len(overlap):,} of the {len(r.envelope_rcpt):,} envelope recipients are external and "
        f"also written in To/Cc: every copy delivered shows them to the others",
        evidence={"envelope_recipients": len(r.envelope_rcpt), "visible_overlap": len(overlap)},
    )


def semicolon_lists(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG104: ``a; b; c`` lists pasted from Outlook."""
    headers = ctx.recipients.semicolon_headers
    if headers:
        names = ", ".join(h.title() for h in headers)
        yield Hit(
            f"{names} separates addresses with ';' (an Outlook-style paste): mailguard counted "
            f"every address, but other software may keep only the last one",
            evidence={"headers": headers},
        )


def unparseable_entries(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG105: malformed entries; dropped when they hold no address, counted when they do.

    Reports whenever there is one; the engine applies ``min_entries`` to ``entries``."""
    r = ctx.recipients
    invalid, malformed = len(r.invalid), len(r.malformed)
    total = invalid + malformed
    if not total:
        return
    headers = sorted({h.title() for h, _ in (*r.invalid, *r.malformed)})
    where = f"{_plural(total, 'entry', 'entries')} in {'/'.join(headers)}"
    dropped = (
        f"{'is' if invalid == 1 else 'are'} not a valid address and "
        f"{'was' if invalid == 1 else 'were'} left out of the counts"
    )
    counted = (
        f"the addresses a recipient sees in {'it were' if malformed == 1 else 'them were'} counted"
    )
    if not malformed:
        message = f"{where} {dropped}"
    elif not invalid:
        message = (
            f"{where} {'is' if total == 1 else 'are'} malformed (a missing comma, text around "
            f"an address, a stray bracket or quote): {counted}"
        )
    else:
        message = (
            f"{where} are malformed: {invalid:,} {dropped}; "
            f"{malformed:,} hold addresses, and {counted}"
        )
    yield Hit(
        message,
        evidence={"entries": total, "invalid": invalid, "malformed": malformed,
                  "headers": headers},
    )  # fmt: skip
