"""The incident register: what an archive scan found, in the shape a regulator asks for.

GDPR Art. 33(5) requires every personal-data breach to be documented; Art. 33(3) asks for
the nature of the breach, the categories and approximate number of data subjects and of
records. So the register keeps, per incident (a message at ``warn`` or above), the counts
that answer those questions, and across the archive the set of distinct exposed addresses:
the number of data subjects is a count of *people*, not of messages, and one person on ten
leaked lists is one data subject.

To count people the register needs something equal for the same address and the domain
each belongs to, not the address: unless a scan shows addresses, its workers send a token
per person (:mod:`mailguard.archive.people`) and no address leaves them. When addresses are
kept (``--show-addresses``, ``--redact``) they stay raw in memory and only outputs decide
how to show them. Workers build :class:`Incident` records and :class:`Tally`
objects; the parent merges them, so nothing here depends on how the scan was parallelised.
"""

from __future__ import annotations

import email.utils
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from sys import intern
from typing import Any, cast

from mailguard.archive.people import Person, Tokens, by_registrable, domain_of, domains_of
from mailguard.report import Report
from mailguard.rules import TAG_ATTACHMENT, TAG_SENSITIVE

INCIDENT_VERDICTS = ("warn", "block")
WORST = 10
ADDRESSES = Tokens()


@dataclass(slots=True)
class Incident:
    """One message at ``warn`` or above."""

    source: str
    """Where it is: ``archive.mbox#12`` (1-based), a file path, or ``imap://host/Sent;UID=7``."""
    message_id: str | None
    date: datetime | None
    """From the Date header, in UTC; ``None`` when missing or unreadable."""
    sender: str | None
    subject: str | None
    verdict: str
    score: int
    findings: list[dict[str, Any]]
    recipients: dict[str, Any]
    """The engine's recipient counts (visible, visible_external, personal, ...)."""
    exposed: list[str]
    """Visible external addresses (normalised), for uniqueness counts; shown only on request."""
    personal: list[str]
    """The subset of ``exposed`` at consumer mailbox providers: members of the public."""
    domains: dict[str, int]
    """External registrable domain -> visible addresses at it."""
    sensitive: list[str] = field(default_factory=list)
    """Labels of the sensitive categories found (the sensitive-context finding), e.g. "HIV"."""
    exposed_count: int = 0
    personal_count: int = 0
    """``len(exposed)`` and ``len(personal)``, kept when the lists are dropped (see
    :class:`Register`)."""
    listed: int = 0
    """People listed in the message's attachments: counted apart from those exposed in its
    headers (they are other people, and nobody's address in To/Cc)."""
    listed_data: list[str] = field(default_factory=list)
    """What the attachments hold about them: kinds of data and special categories."""
    people: list[Person] | None = None
    """Who was exposed, as the register counts people: the addresses (``exposed`` itself),
    or tokens when the scan keeps no addresses and ``exposed`` is empty (see
    :mod:`mailguard.archive.people`). ``None``: counted from ``exposed``."""
    where: list[str] | None = None
    """The domain of each of :attr:`people`, in step, for distinct people per domain."""
    public: list[Person] | None = None
    """Those of :attr:`people` at consumer mailbox providers (``personal``, or tokens)."""

    @property
    def codes(self) -> list[str]:
        return [f["code"] for f in self.findings]

    def tagged(self, tag: str) -> bool:
        """Whether a finding's rule carries ``tag``: reports decide from tags, not codes."""
        return any(tag in f.get("tags", ()) for f in self.findings)

    @classmethod
    def from_report(
        cls, report: Report, date: datetime | None, tokens: Tokens = ADDRESSES
    ) -> Incident:
        """``tokens``: what stands for each exposed person (the addresses by default)."""
        r = report.analysis
        exposed: list[str] = []
        personal: list[str] = []
        domains: dict[str, int] = {}
        people: list[Person] = []
        where: list[str] = []
        public: list[Person] = []
        if r is not None:
            internal, lists = r.internal, r.lists
            exposed = [key for key in r.visible if key not in internal and key not in lists]
            personal = [key for key in exposed if key in r.personal]
            domains = dict(r.domains)
            where = domains_of(r, exposed)
            # The same lists, not copies: pickled once.
            people, public = cast(list[Person], exposed), cast(list[Person], personal)
        exposed_count, personal_count = len(exposed), len(personal)
        token = tokens.function()
        if token is not None:
            people, public = list(map(token, exposed)), list(map(token, personal))
            exposed, personal = [], []
        sensitive: list[str] = []
        listed, listed_data = 0, []
        for f in report.findings:
            if TAG_SENSITIVE in f.tags:
                sensitive = list(f.evidence.get("labels", []))
            if TAG_ATTACHMENT in f.tags:
                listed = max(listed, int(f.evidence.get("people", 0)))
                listed_data += f.evidence.get("data", []) + f.evidence.get("labels", [])
        sender = r.sender.addr if r is not None and r.sender is not None else None
        return cls(
            source=report.source,
            message_id=report.message_id,
            date=date,
            sender=sender,
            subject=report.subject,
            verdict=report.verdict,
            score=report.score,
            findings=[f.to_dict() for f in report.findings],
            recipients=dict(report.recipients),
            exposed=exposed,
            personal=personal,
            domains=domains,
            sensitive=sensitive,
            exposed_count=exposed_count,
            personal_count=personal_count,
            listed=listed,
            listed_data=list(dict.fromkeys(listed_data)),
            people=people,
            where=where,
            public=public,
        )


MESSAGE, PATH, SOURCE = "message", "path", "source"


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """A message, a folder or a whole source that could not be read; the scan went on."""

    source: str
    message: str
    kind: str = MESSAGE
    """``message`` (counted as a message with verdict ``error``), ``path`` (a folder that
    could not be listed: how many messages it holds is unknown) or ``source`` (a source
    that failed as a whole or midway: a missing mbox, a refused IMAP login). Only
    ``message`` entries are messages."""


@dataclass(slots=True)
class Tally:
    """Counts from one batch of messages; batches from any worker add up."""

    messages: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    incidents: list[Incident] = field(default_factory=list)
    errors: list[ErrorEntry] = field(default_factory=list)
    bytes: int = 0

    def count(self, verdict: str, date: datetime | None, size: int = 0) -> None:
        self.messages += 1
        self.verdicts[verdict] += 1
        self.bytes += size
        if date is not None:
            if self.first is None or date < self.first:
                self.first = date
            if self.last is None or date > self.last:
                self.last = date

    def add_report(
        self,
        report: Report,
        size: int = 0,
        date: datetime | None = None,
        tokens: Tokens = ADDRESSES,
    ) -> None:
        """Count a judged message; keep it as an incident when it is ``warn`` or worse."""
        if date is None:
            date = parse_date(report.date)
        self.count(report.verdict, date, size)
        if report.verdict in INCIDENT_VERDICTS:
            self.incidents.append(Incident.from_report(report, date, tokens))
        elif report.verdict == "error":
            message = report.findings[0].message if report.findings else "unreadable"
            self.errors.append(ErrorEntry(report.source, message))

    def add_error(self, source: str, message: str, kind: str = MESSAGE) -> None:
        """A message that never reached the engine (cut off, unreadable file), or a folder
        or source that could not be read (``kind``), which is not counted as a message."""
        if kind == MESSAGE:
            self.count("error", None)
        self.errors.append(ErrorEntry(source, message, kind))


class Register:
    """Everything a scan found, merged from every batch, in source order per batch."""

    def __init__(self, sources: Iterable[str] = (), *, keep_addresses: bool = True) -> None:
        """``keep_addresses=False`` drops each incident's address lists once they are
        counted into :attr:`exposed`: the register then grows with the number of distinct
        people, not with the number of incidents times their recipients."""
        self.sources = list(sources)
        self.keep_addresses = keep_addresses
        self.total = Tally()
        self.people: dict[Person, str] = {}
        """Each distinct person exposed (an address, or a token when the scan keeps none:
        :mod:`mailguard.archive.people`) -> the domain of the address."""
        self.public: set[Person] = set()
        """The distinct people exposed at consumer mailbox providers: members of the public."""
        self.exposed: set[str] = set()
        """The distinct exposed addresses themselves, only when the register keeps addresses
        (to list them); counts come from :attr:`people`."""
        self.domains: Counter[str] = Counter()
        self.listed = 0
        """People listed in attachments of incidents, summed over incidents (no address of
        theirs is kept, so one person in two files sent twice counts twice)."""
        """Registrable domain -> addresses exposed at it, summed over incidents (one person
        in two incidents counts twice; distinct people per domain follow from ``exposed``)."""
        self.interrupted = False
        self.elapsed = 0.0
        self.since: date | None = None
        self.until: date | None = None
        self.provenance: dict[str, Any] = {}
        """How the register was made (version, rules, thresholds, domains, window): see
        :func:`mailguard.archive.provenance.provenance`."""

    # ------------------------------------------------------------------ building

    def merge(self, tally: Tally) -> None:
        t = self.total
        t.messages += tally.messages
        t.verdicts.update(tally.verdicts)
        t.bytes += tally.bytes
        for when in (tally.first, tally.last):
            if when is not None:
                t.first = when if t.first is None or when < t.first else t.first
                t.last = when if t.last is None or when > t.last else t.last
        t.errors.extend(tally.errors)
        for incident in tally.incidents:
            # Each incident arrives with its own copy of every domain name (unpickled from
            # a worker): shared, the register grows ~25 % less per incident.
            incident.domains = {intern(d): n for d, n in incident.domains.items()}
            t.incidents.append(incident)
            self._count_people(incident)
            self.domains.update(incident.domains)
            self.listed += incident.listed
            if not self.keep_addresses:
                incident.exposed, incident.personal = [], []
            incident.people = incident.where = incident.public = None  # counted, not kept twice

    def _count_people(self, incident: Incident) -> None:
        if incident.people is None or incident.where is None:
            self.people.update((a, domain_of(a)) for a in incident.exposed)
        else:
            self.people.update(zip(incident.people, incident.where, strict=True))
        self.public.update(incident.personal if incident.public is None else incident.public)
        if self.keep_addresses:
            self.exposed.update(incident.exposed)

    @property
    def unique_people(self) -> int:
        """Distinct people exposed across the scan (a count of people, not of messages)."""
        return len(self.people)

    def distinct_by_domain(self) -> Counter[str]:
        """Registrable domain -> distinct people exposed at it (:attr:`domains` sums
        incidents instead)."""
        return by_registrable(self.people.values())

    # ------------------------------------------------------------------ reading

    @property
    def incidents(self) -> list[Incident]:
        """Oldest first; undated ones last, in the order they were found."""
        return sorted(
            self.total.incidents,
            key=lambda i: (i.date is None, i.date or datetime.min.replace(tzinfo=UTC)),
        )

    @property
    def errors(self) -> list[ErrorEntry]:
        return self.total.errors

    @property
    def failed_sources(self) -> list[ErrorEntry]:
        """Sources that could not be read at all, or broke off midway."""
        return [e for e in self.total.errors if e.kind == SOURCE]

    @property
    def unread_paths(self) -> list[ErrorEntry]:
        """Folders inside a source that could not be listed."""
        return [e for e in self.total.errors if e.kind == PATH]

    @property
    def incomplete(self) -> bool:
        """Whether part of what was asked for was never read (beyond single messages)."""
        return self.interrupted or any(e.kind != MESSAGE for e in self.total.errors)

    def worst(self, n: int = WORST) -> list[Incident]:
        """Highest score first, then most people exposed."""
        return sorted(
            self.total.incidents,
            key=lambda i: (-i.score, -int(i.recipients.get("visible_external", 0)), i.source),
        )[:n]

    def by_month(self) -> dict[str, Counter[str]]:
        """``YYYY-MM`` -> incidents by verdict, for the chart; undated under ``undated``."""
        months: dict[str, Counter[str]] = {}
        for i in self.total.incidents:
            key = i.date.strftime("%Y-%m") if i.date else "undated"
            months.setdefault(key, Counter())[i.verdict] += 1
        return dict(sorted(months.items()))

    def count(self, verdict: str) -> int:
        return self.total.verdicts.get(verdict, 0)

    def summary(self) -> dict[str, Any]:
        """The ``summary`` object of the scan JSON contract."""
        t = self.total
        return {
            "messages": t.messages,
            "pass": self.count("pass"),
            "warn": self.count("warn"),
            "block": self.count("block"),
            "error": self.count("error"),
            "unreadable_paths": len(self.unread_paths),
            "failed_sources": len(self.failed_sources),
            "incidents": len(t.incidents),
            "unique_exposed_addresses": self.unique_people,
            "unique_exposed_personal_addresses": len(self.public),
            "exposed_domains": len(self.domains),
            **({"people_listed_in_attachments": self.listed} if self.listed else {}),
            "first_date": isoformat_utc(t.first),
            "last_date": isoformat_utc(t.last),
            "bytes": t.bytes,
            "interrupted": self.interrupted,
            "seconds": round(self.elapsed, 3),
        }


def parse_date(value: str | None) -> datetime | None:
    """A Date header as an aware UTC datetime; ``None`` if it cannot be read."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000" or no zone: RFC 5322 says unknown, read as UTC
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def isoformat_utc(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
