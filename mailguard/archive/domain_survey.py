"""Which recipient domains of a mailbox may be the organisation's own: ``mailguard domains``.

``internal_domains`` stays the source of truth; this only suggests. Each recipient domain
(To/Cc/Bcc, Resent-* folded in) is counted by messages and distinct addresses, and marked:

* **candidate internal** (only with DNS): it shares a *tenant-specific* MX host or SPF
  ``include:`` (or ``redirect=``) with the organisation -- the configured internal domains,
  or the most frequent sender domain when none are configured (consumer providers never
  count as an organisation). Hosts and includes that a mail provider serves to all its
  customers say nothing about who owns a domain, so they never make a candidate: a name
  counts as **shared** when it equals an entry of :data:`SHARED_MX` / :data:`SHARED_SPF`,
  or, for an entry written ``*.suffix``, ends in ``.suffix``. Examples: Google's
  ``aspmx.l.google.com`` (and its ``alt*`` siblings, ``aspmx*.googlemail.com``,
  ``smtp.google.com``) and ``_spf.google.com``; Microsoft 365's SPF include
  ``spf.protection.outlook.com``. Microsoft's MX host ``<name>.mail.protection.outlook.com``
  is *not* shared: it is made for one tenant's domain, so two domains pointing at the same
  one belong together.
* **suspicious**: a lookalike of an internal domain, by the lookalike rule's index.

Nothing is applied: the output ends with a ready-to-paste ``internal_domains = [...]`` line.
Bounded: counts live in dicts keyed by domain, at most :data:`MAX_LOOKED_UP` domains are
asked about (the most frequent), all at once on the DNS service's pool and within one
overall deadline; what is not back by then is reported as "no answer".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailguard import lookalike
from mailguard.archive.maildir import read_files
from mailguard.archive.mbox import iter_mbox, messages_of
from mailguard.archive.register import ErrorEntry
from mailguard.archive.scanner import plan
from mailguard.checks.domains import survey_index
from mailguard.config import Config
from mailguard.domains import DomainSet, registrable_domain
from mailguard.errors import InputError
from mailguard.message import parse_message
from mailguard.recipients import analyse
from mailguard.resolver import DnsService
from mailguard.sources import Input

#: MX hosts a provider serves to every customer (see the module docstring for the syntax).
SHARED_MX: tuple[str, ...] = (
    # Google Workspace / Gmail
    "aspmx.l.google.com", "*.aspmx.l.google.com", "*.googlemail.com", "smtp.google.com",
    "*.gmail-smtp-in.l.google.com", "gmail-smtp-in.l.google.com",
    # Microsoft consumer mail (outlook.com, hotmail.com); *.mail.protection.outlook.com is
    # per tenant domain and deliberately absent
    "*.olc.protection.outlook.com",
    # Zoho, Mimecast, Yahoo, Apple iCloud
    "mx.zoho.com", "mx2.zoho.com", "mx3.zoho.com", "mx.zoho.eu", "mx2.zoho.eu", "mx3.zoho.eu",
    "*.mimecast.com", "*.yahoodns.net", "*.mail.icloud.com",
)  # fmt: skip
#: SPF includes shared by every customer of a provider.
SHARED_SPF: tuple[str, ...] = (
    "_spf.google.com", "_netblocks.google.com", "_netblocks2.google.com",
    "_netblocks3.google.com", "spf.protection.outlook.com", "spf.protection.office365.us",
    "zoho.com", "zoho.eu", "one.zoho.com", "one.zoho.eu", "_netblocks.mimecast.com",
    "amazonses.com", "sendgrid.net", "mailgun.org", "servers.mcsv.net", "spf.mandrillapp.com",
    "_spf.salesforce.com", "icloud.com", "_spf.mail.yahoo.com",
)  # fmt: skip

MAX_LOOKED_UP = 1000
"""Domains asked about at most (the most frequent); the rest are "not looked up"."""
DEFAULT_DEADLINE = 10.0
"""Seconds for all the lookups of one survey together."""


def is_shared(name: str, table: Sequence[str]) -> bool:
    name = name.rstrip(".").lower()
    for entry in table:
        if entry.startswith("*."):
            if name.endswith(entry[1:]):
                return True
        elif name == entry:
            return True
    return False


def spf_includes(texts: Iterable[str]) -> set[str]:
    """The ``include:`` and ``redirect=`` targets of the SPF record among ``texts``."""
    found: set[str] = set()
    for text in texts:
        terms = text.split()
        if not terms or terms[0].lower() != "v=spf1":
            continue
        for term in terms[1:]:
            low = term.lower().lstrip("+?~-")
            for prefix in ("include:", "redirect="):
                if low.startswith(prefix) and len(low) > len(prefix):
                    found.add(low[len(prefix) :].rstrip("."))
    return found


@dataclass
class Tally:
    """Per recipient domain: messages and distinct addresses; sender domains for the
    organisation when none is configured."""

    messages: Counter[str] = field(default_factory=Counter)
    addresses: dict[str, set[str]] = field(default_factory=dict)
    senders: Counter[str] = field(default_factory=Counter)
    read: int = 0
    unreadable: int = 0

    def add(self, data: bytes, config: Config) -> None:
        try:
            message = parse_message(data, config.limits)
        except InputError:
            self.unreadable += 1
            return
        found = analyse(message, config)
        self.read += 1
        if found.sender is not None and found.sender.domain:
            self.senders[registrable_domain(found.sender.domain)] += 1
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            for key, address in found.by_header[kind].items():
                if not address.domain:
                    continue
                seen.add(address.domain)
                self.addresses.setdefault(address.domain, set()).add(key)
        self.messages.update(seen)


@dataclass
class Row:
    domain: str
    messages: int
    addresses: int
    internal: bool = False
    shares: list[str] = field(default_factory=list)
    """What it shares with the organisation: ``mx HOST`` / ``spf include:NAME``."""
    lookalike: lookalike.Lookalike | None = None
    dns: str = "not looked up (no --dns)"

    @property
    def candidate(self) -> bool:
        return bool(self.shares) and not self.internal

    def as_json(self) -> dict[str, object]:
        look = self.lookalike
        return {
            "domain": self.domain, "messages": self.messages, "addresses": self.addresses,
            "internal": self.internal, "candidate": self.candidate, "shares": self.shares,
            "suspicious": None if look is None else {
                "intended": look.intended, "kind": look.kind, "mixed_script": look.mixed_script
            },
            "dns": self.dns,
        }  # fmt: skip


@dataclass
class Survey:
    organisation: tuple[str, ...]
    basis: str
    """``configured`` or ``most frequent sender domain``."""
    rows: list[Row]
    messages: int
    unreadable: int
    dns: bool
    errors: list[ErrorEntry] = field(default_factory=list)
    fingerprint: dict[str, list[str]] = field(default_factory=dict)
    """The organisation's tenant-specific ``mx`` hosts and ``spf`` includes."""

    @property
    def suggestion(self) -> str | None:
        """``internal_domains = [...]``: the organisation and the candidates that are not
        also lookalikes (those are for a person to confirm); ``None`` without candidates."""
        extra = [r.domain for r in self.rows if r.candidate and r.lookalike is None]
        if not extra:
            return None
        names = [*self.organisation, *extra]
        return "internal_domains = [" + ", ".join(json.dumps(n) for n in names) + "]"


def local_inputs(
    source: str, pattern: str, max_bytes: int, errors: list[ErrorEntry]
) -> Iterator[Input]:
    """The messages of a local source, by the scan's own planning and readers."""
    units, unread = plan(source, 1, pattern)
    errors += unread
    for unit in units:
        if unit.kind == "mbox":
            yield from iter_mbox(Path(unit.path), unit.start, unit.end, max_bytes)
        else:
            for item in read_files(unit.files, max_bytes):
                yield from messages_of(item, max_bytes)


def survey(
    inputs: Iterable[Input],
    config: Config,
    *,
    dns: DnsService | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> Survey:
    tally = Tally()
    for item in inputs:
        if item.data is None:
            tally.unreadable += 1
        else:
            tally.add(item.data, config)
    organisation: tuple[str, ...] = config.internal_domains
    basis = "configured"
    if not organisation:
        personal = config.personal_set
        top = [d for d, _ in tally.senders.most_common() if d and d not in personal][:1]
        organisation, basis = tuple(top), "most frequent sender domain"
    own = DomainSet(organisation)
    rows = [
        Row(d, n, len(tally.addresses[d]), internal=d in own)
        for d, n in sorted(tally.messages.items(), key=lambda item: (-item[1], item[0]))
    ]
    index = survey_index(config, organisation)
    for row in rows:
        if not row.internal:
            match = index.match(row.domain)
            if match is not None and match.source == lookalike.INTERNAL:
                row.lookalike = match
    result = Survey(organisation, basis, rows, tally.read, tally.unreadable, dns is not None)
    if dns is not None and organisation:
        _compare(result, dns, deadline)
    return result


def _compare(result: Survey, dns: DnsService, deadline: float) -> None:
    """Mark the rows that share a tenant-specific MX host or SPF include with the org."""
    asked = [r for r in result.rows if not r.internal][:MAX_LOOKED_UP]
    names = [*result.organisation, *(r.domain for r in asked)]
    answers = dns.records(((n, t) for n in names for t in ("MX", "TXT")), deadline)

    def tenant(name: str) -> tuple[set[str] | None, set[str] | None]:
        mx, txt = answers.get((name, "MX")), answers.get((name, "TXT"))
        hosts = None if mx is None else {h for h in mx if h and not is_shared(h, SHARED_MX)}
        spf = None if txt is None else {
            i for i in spf_includes(txt) if not is_shared(i, SHARED_SPF)
        }  # fmt: skip
        return hosts, spf

    org_mx: set[str] = set()
    org_spf: set[str] = set()
    for name in result.organisation:
        hosts, spf = tenant(name)
        org_mx |= hosts or set()
        org_spf |= spf or set()
    result.fingerprint = {"mx": sorted(org_mx), "spf": sorted(org_spf)}
    looked_up = {r.domain for r in asked}
    for row in result.rows:
        if row.internal:
            row.dns = "internal"
            continue
        if row.domain not in looked_up:
            row.dns = f"not looked up (over {MAX_LOOKED_UP} domains)"
            continue
        hosts, spf = tenant(row.domain)
        row.shares = [f"mx {h}" for h in sorted((hosts or set()) & org_mx)]
        row.shares += [f"spf include:{i}" for i in sorted((spf or set()) & org_spf)]
        row.dns = "shares " + ", ".join(row.shares) if row.shares else "nothing shared"
        if hosts is None or spf is None:
            row.dns = f"{row.dns}; no answer for {'MX' if hosts is None else 'TXT'}"
            if not row.shares:
                row.dns = "no answer" if hosts is None and spf is None else row.dns
