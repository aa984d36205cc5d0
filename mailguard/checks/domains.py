"""Domain checks (MG4xx): recipient domains that are not the ones the sender meant."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence, Sized

from mailguard import lookalike
from mailguard.checks.base import CheckContext, Hit
from mailguard.config import Config, RuleSettings
from mailguard.domains import registrable_domain
from mailguard.report import Redacted

_SOURCES = {
    lookalike.INTERNAL: "one of your own domains",
    lookalike.PARTNER: "a partner's domain",
    lookalike.PROVIDER: "a consumer mail provider",
    lookalike.MESSAGE: "a domain used more often in this message",
}


_INDEX_KEY = "lookalike.Index"


def _index(config: Config, settings: RuleSettings) -> lookalike.Index:
    """The candidate index of this configuration, built on first use and kept with it
    (a configuration's rule options do not change after it is made)."""
    cached = config.derived.get(_INDEX_KEY)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    index = _build(config, settings, config.internal_domains)
    config.derived[_INDEX_KEY] = index
    return index


def survey_index(config: Config, internal: Sequence[str]) -> lookalike.Index:
    """MG401's index with ``internal`` as the internal domains, for ``mailguard domains``
    (which infers them from the mail when none are configured). Not cached: one per run."""
    return _build(config, config.rule_settings["MG401"], internal)


def _build(config: Config, settings: RuleSettings, internal: Sequence[str]) -> lookalike.Index:
    opts = settings.options
    candidates = [
        *((d, lookalike.INTERNAL) for d in internal),
        *((d, lookalike.PARTNER) for d in config.partner_domains),
        *((d, lookalike.PROVIDER) for d in config.personal_set),
        *((d, lookalike.PROVIDER) for d in lookalike.shipped_allow_list()),
    ]
    options = lookalike.Options(opts["min_label_length"], opts["long_label_length"])
    return lookalike.Index(candidates, opts["allow"], options)


def _groups(ctx: CheckContext) -> Mapping[str, Sized]:
    """The message's recipient domains (To, Cc and Bcc) -> their addresses."""
    r = ctx.recipients
    groups: Mapping[str, Sized] = r.by_domain  # grouped by the analysis already
    if r.bcc:
        bcc: dict[str, list[str]] = {d: [*keys] for d, keys in r.by_domain.items()}
        for address in r.bcc.values():
            bcc.setdefault(address.domain, []).append(address.addr)
        groups = bcc
    return groups


def lookalike_limit(ctx: CheckContext) -> list[str]:
    """For MG002: that MG401 compared only the first ``limits.max_lookalike_domains``
    recipient domains, if the message has more (and the rule is on)."""
    cap = ctx.config.limits.max_lookalike_domains
    r = ctx.recipients
    if len(r.by_domain) + len(r.bcc) <= cap:  # every message but a hostile one: no grouping
        return []
    settings = ctx.config.rule_settings.get("MG401")
    if settings is None or not settings.enabled:
        return []
    count = len(_groups(ctx))
    if count <= cap:
        return []
    return [
        f"{count:,} distinct recipient domains: only the first {cap:,} were compared for "
        "lookalikes (MG401)"
    ]


def lookalike_domains(ctx: CheckContext, settings: RuleSettings) -> Iterator[Hit]:
    """MG401: a recipient domain is a near miss of a domain the sender most likely meant.

    At most ``limits.max_lookalike_domains`` distinct domains, in the order the message
    names them, are compared: a new domain costs a fraction of a millisecond, and a
    hostile message naming 200,000 must not hold a milter worker for a minute. MG002 says
    when the rest were left out.
    """
    groups = _groups(ctx)
    if not groups:
        return
    cap = ctx.config.limits.max_lookalike_domains
    if len(groups) > cap:
        groups = dict(itertools.islice(groups.items(), cap))
    index = _index(ctx.config, settings)
    own = None
    sender = ctx.recipients.sender
    if sender is not None and not ctx.config.internal_domains:
        # The sender's organisation stands for "internal" when none is configured.
        own = index.classify(sender.domain)[0] if sender.domain else None
    for match, n in index.scan(groups, own):
        yield _hit(match, n)


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
