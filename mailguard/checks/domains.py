"""Domain checks (MG4xx): recipient domains that are not the ones the sender meant."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from mailguard import lookalike
from mailguard.checks.base import CheckContext, Hit
from mailguard.config import Config, RuleSettings
from mailguard.domains import registrable_domain
from mailguard.report import Redacted

_LDH = re.compile(r"^[a-z0-9.-]+$")
_MESSAGE_CANDIDATES = 50
"""The most used domains of one message that others are compared with."""

_SOURCES = {
    lookalike.INTERNAL: "one of your own domains",
    lookalike.PARTNER: "a partner's domain",
    lookalike.PROVIDER: "a consumer mail provider",
    lookalike.MESSAGE: "a domain used more often in this message",
}


def _index(config: Config, settings: RuleSettings) -> lookalike.Index:
    """The candidate index of this configuration, built on first use and kept with it."""
    opts = settings.options
    key = ("lookalike", opts["min_label_length"], opts["long_label_length"])
    cached = config.derived.get(str(key))
    if isinstance(cached, lookalike.Index):
        return cached
    candidates = [
        *((d, lookalike.INTERNAL) for d in config.internal_domains),
        *((d, lookalike.PARTNER) for d in config.partner_domains),
        *((d, lookalike.PROVIDER) for d in config.personal_set),
        *((d, lookalike.PROVIDER) for d in lookalike.shipped_allow_list()),
    ]
    never = opts["allow"]
    index = lookalike.Index(candidates, never, _options(settings))
    config.derived[str(key)] = index
    return index


def _options(settings: RuleSettings) -> lookalike.Options:
    opts = settings.options
    return lookalike.Options(opts["min_label_length"], opts["long_label_length"])


def lookalike_domains(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG401: a recipient domain is a near miss of a domain the sender most likely meant."""
    index = _index(ctx.config, settings)
    r = ctx.recipients
    counts: Counter[str] = Counter()
    for bucket in r.by_header.values():
        for addr in bucket.values():
            domain = addr.domain
            if domain and _LDH.match(domain):
                counts[domain] += 1
    if not counts:
        return
    per_org: Counter[str] = Counter()
    for domain, n in counts.items():
        per_org[registrable_domain(domain)] += n
    found: dict[str, tuple[lookalike.Lookalike, int]] = {}
    unknown: list[str] = []
    for domain in counts:
        reg = registrable_domain(domain)
        if reg in found:
            continue
        match = index.match(domain)
        if match is not None:
            found[reg] = (match, per_org[reg])
        elif not index.is_known(domain) and not _internal(ctx, domain):
            unknown.append(domain)
    if unknown:
        _in_message(ctx, settings, unknown, per_org, found)
    for match, n in found.values():
        yield _hit(match, n)


def _sender_domain(ctx: CheckContext) -> str | None:
    """The sender's organisation, which stands for "internal" when none is configured."""
    sender = ctx.recipients.sender
    if ctx.config.internal_domains or sender is None or not sender.domain:
        return None
    return registrable_domain(sender.domain)


def _internal(ctx: CheckContext, domain: str) -> bool:
    own = _sender_domain(ctx)
    return own is not None and registrable_domain(domain) == own


def _in_message(
    ctx: CheckContext,
    settings: RuleSettings,
    unknown: list[str],
    per_org: Counter[str],
    found: dict[str, tuple[lookalike.Lookalike, int]],
) -> None:
    """Compare the domains nobody knows with those used more often in the same message.

    The message's own index is built once per message, and only from domains used at
    least twice: between two domains used once each, which one was meant cannot be told.
    Without configured internal domains the sender's own stands in for them.
    """
    common = [(d, n) for d, n in per_org.most_common(_MESSAGE_CANDIDATES) if n >= 2]
    own = _sender_domain(ctx)
    candidates = [(d, lookalike.MESSAGE) for d, _ in common]
    used = dict(common)
    if own is not None and _LDH.match(own):
        candidates.insert(0, (own, lookalike.INTERNAL))
        used[own] = 1 << 30
    if not candidates:
        return
    local = lookalike.Index(candidates, (), _options(settings), full=False)
    for domain in unknown:
        reg = registrable_domain(domain)
        if reg in found or reg in used:
            continue
        match = local.match(domain)
        if match is not None and used[match.intended] > per_org[reg]:
            found[reg] = (match, per_org[reg])


def _hit(match: lookalike.Lookalike, addresses: int) -> Hit:
    shown = lookalike.unicode_form(match.domain)
    reg = registrable_domain(match.domain)
    written = shown if shown == match.domain else f"{shown} ({match.domain})"
    how = lookalike.KINDS[match.kind]
    if match.mixed_script:
        how += ", mixing scripts"
    plural = "address" if addresses == 1 else "addresses"
    message = (
        f"recipient domain {written} looks like {match.intended}, {_SOURCES[match.source]}: "
        f"{how} ({addresses:,} {plural})"
    )
    rank = 2 if match.source in (lookalike.INTERNAL, lookalike.PARTNER) else 1
    evidence = {
        "domain": match.domain,
        "registrable": reg,
        "intended": match.intended,
        "kind": match.kind,
        "source": match.source,
        "mixed_script": match.mixed_script,
        "addresses": addresses,
        "rank": rank,
    }
    # Registrable domains name organisations and providers, never a person, and no local
    # part is ever part of the words: the redacted variant says the same.
    return Hit(message, evidence, Redacted(message, evidence))
