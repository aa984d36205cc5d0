"""Recipient-domain checks that ask DNS (MG4xx): domains that take no mail.

The lookups go through the ``dns`` service (:mod:`mailguard.resolver`), injected into the
engine; a rule that needs it does not run without it. What DNS could not answer in time is
not a finding: the report says the check was incomplete (``skipped``), so a dead resolver
neither blocks mail nor passes it off as checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import RuleSettings
from mailguard.report import Redacted, Skipped
from mailguard.resolver import DnsService, Lookups, Status

_WORDS = {
    Status.NXDOMAIN: "does not exist",
    Status.NULL_MX: "accepts no mail (null MX)",
    Status.NO_MAIL: "has no mail server (no MX, no address)",
}


def recipient_domains(ctx: CheckContext) -> list[str]:
    """Distinct external recipient domains (To/Cc, Bcc, envelope), in first-seen order."""
    r = ctx.recipients
    internal = ctx.config.internal_set
    seen: dict[str, None] = {}
    addresses = [*r.visible.values(), *r.bcc.values()]
    domains = [a.domain for a in addresses]
    domains += [key.rpartition("@")[2] for key in sorted(r.envelope_rcpt)]
    for domain in domains:
        usable = domain and "." in domain and not domain.startswith("[")
        if usable and domain not in seen and domain not in internal:
            seen[domain] = None
    return list(seen)


def undeliverable_domains(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG402: recipient domains that do not exist or take no mail (a likely typo)."""
    service = ctx.services.dns
    domains = recipient_domains(ctx)
    limit = settings.options["max_domains"]
    checked = domains[:limit]
    if not isinstance(service, DnsService):  # another resolver, for other rules' use
        ctx.notes.append(Skipped(settings.code, settings.rule.name, "the dns service given "
                                 "is not mailguard's resolver"))  # fmt: skip
        return
    found: Lookups = service.lookup(checked)
    unknown = found.unknown
    left_out = len(domains) - len(checked)
    if unknown or left_out:
        parts = []
        if unknown:
            parts.append(f"{len(unknown)} of {len(checked)} domains got no answer in time "
                         "(timeout, SERVFAIL or refused)")  # fmt: skip
        if left_out:
            parts.append(f"{left_out} domains over max_domains were not looked up")
        ctx.notes.append(
            Skipped(settings.code, settings.rule.name, "DNS check incomplete: " + "; ".join(parts))
        )
    bad = found.undeliverable
    if not bad:
        return
    words = "; ".join(f"{d} {_WORDS[s]}" for d, s in bad.items())
    n = len(bad)
    summary = f"{n} recipient domain{'s' if n != 1 else ''} cannot receive mail"
    kinds = {s.value: sum(1 for v in bad.values() if v == s) for s in _WORDS}
    yield Hit(
        f"{summary}: {words} - a typo? The message would bounce there",
        {"undeliverable": n, "domains": {d: s.value for d, s in bad.items()}, "kinds": kinds,
         "unknown": len(unknown)},
        Redacted(f"{summary} (domains withheld)",
                 {"undeliverable": n, "kinds": kinds, "unknown": len(unknown)}),
    )  # fmt: skip
