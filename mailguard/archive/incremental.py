"""Incremental re-scans: plan only the new mail of each source, carry the rest over.

For each source the planner compares what is there now with the :mod:`state
<mailguard.archive.state>` record of the last scan and decides, saying which and why:

* **first scan**: no record (or a new state file);
* **full re-scan**: the rules or the configuration changed (the fingerprint differs), or
  the key file is another one; an mbox is shorter than the offset reached (truncated), its
  first or last 64 KB before that offset changed, or the offset is no longer at a
  ``From_`` line (rewritten); a file read last time is gone or renamed; a PST file's hash
  changed;
* **incremental**: the counts of the old mail come from the record; only the mbox bytes
  after the offset, or the files not seen before, are judged. Stored incidents get their
  sender, subject and Message-ID back from their header blocks (the store keeps none);
  unreadable messages, incidents stored without a record, and every incident when the
  addresses are to be shown, are judged again.

A stored incident whose message is no longer what was recorded (an mbox or a file changed
in place) is judged again; if it is no longer an incident, the register is incomplete with
an error saying so, and the source's record is dropped: its next scan is a full one.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailguard.archive.imap_resume import ImapResume
from mailguard.archive.maildir import SUBDIRS, is_maildir, read_files, unique_name
from mailguard.archive.people import Person, Tokens, domain_of
from mailguard.archive.register import INCIDENT_VERDICTS, MESSAGE, SOURCE, Incident, Register, Tally
from mailguard.archive.scanner import file_units, mbox_units
from mailguard.archive.state import TWICE, Record, StateStore, add_counts, edge_hashes
from mailguard.archive.stored_headers import MboxHeaders, from_line_at, header_fields, offset_of
from mailguard.archive.workers import Unit
from mailguard.config import Config
from mailguard.engine import Engine, report_message_id, report_subject
from mailguard.errors import InputError
from mailguard.message import parse_message
from mailguard.recipients import sender_of
from mailguard.sources import Input, read_file, read_head

BATCH = 64

Reader = Callable[[str, bool], Input | None]
"""(a stored position, whole message?) -> its header block or whole message now (None: no
longer there)."""


@dataclass(slots=True)
class _Source:
    record: Record
    note: str
    key_of: dict[str, str] = field(default_factory=dict)
    """A file's path -> its key in the record (``files`` sources)."""
    key: Callable[[str], str] | None = None
    """The key of a file not in ``key_of``: a Maildir message renamed since the listing is
    read under its new name, and is still recorded under its unique name."""
    expected: int = 0
    """Stored positions; each must come back as an incident or an unreadable message."""
    got: int = 0
    new: int = 0
    carried: int = 0
    stored: list[tuple[str, str]] = field(default_factory=list)
    """(position, record) of incidents rebuilt from the store, not judged again."""
    reader: Reader | None = None
    imap: ImapResume | None = None
    """An IMAP folder: decided only once it is open, while it is read."""
    old: Record | None = None

    def position(self, source: str) -> str:
        if self.imap is not None:
            return source.rsplit(";UID=", 1)[-1]
        if source in self.key_of:
            return self.key_of[source]
        return self.key(source) if self.key is not None else source


class Incremental:
    """Plans one scan against the store and records what it found, source by source.

    ``addresses``: the output lists addresses (``--show-addresses``, ``--redact``), so
    stored incidents are judged again; otherwise every incident's address lists are
    replaced by their keyed hashes before they are merged, so the register's count of
    distinct people spans old and new incidents alike.
    """

    def __init__(
        self, store: StateStore, fingerprint: str, jobs: int, config: Config, *, addresses: bool
    ) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.jobs = jobs
        self.config = config
        self.addresses = addresses
        self.tokens = Tokens()
        """What stands for each exposed person in the incidents that reach the store: the
        addresses (hashed here), or the store's own hashes made by the workers."""
        self.changed: str | None = None
        if store.fingerprint not in (None, fingerprint):
            self.changed = "the rules or the configuration changed since the last scan"
        elif store.key_changed:
            self.changed = "the state's key file is not the one it was written with"
        self.carried = Tally()
        """Counts of the mail read by earlier scans: merged into the register at the end."""
        self._sources: dict[str, _Source] = {}
        self._reread: dict[int, Unit] = {}
        """Units that judge stored positions again, by id (kept alive here: ids stay unique)."""
        self._engine: Engine | None = None
        self._update: tuple[list[Record], list[str]] | None = None
        """The records :meth:`finish` made and the sources it dropped, for :meth:`save`."""

    # ------------------------------------------------------------------ planning

    def _old(self, label: str, kind: str) -> Record | None:
        if self.changed is not None:
            return None
        old = self.store.load(label)
        return old if old is not None and old.kind == kind else None

    def _full(
        self, record: Record, old: Record | None, reason: str, units: list[Unit]
    ) -> list[Unit]:
        if old is None and self.changed is None:
            note = "first scan"
        else:
            note = f"full re-scan: {self.changed or reason}"
        self._sources[record.label] = _Source(record, note)
        return units

    def plan_mbox(
        self, label: str, path: Path, units: list[Unit], pst_hash: str | None = None
    ) -> list[Unit]:
        """``units`` are the full scan's; returns what to judge (maybe fewer)."""
        info = path.stat()
        head, tail = edge_hashes(path, info.st_size)
        record = Record(label, "mbox", {"size": info.st_size, "mtime_ns": info.st_mtime_ns,
                                        "offset": info.st_size, "head": head, "tail": tail,
                                        "pst": pst_hash})  # fmt: skip
        old = self._old(label, "mbox")
        if old is None:
            return self._full(record, old, "", units)
        size, offset = info.st_size, int(old.meta["offset"])
        if pst_hash is not None or old.meta.get("pst") is not None:
            if pst_hash != old.meta.get("pst"):
                return self._full(record, old, "the PST file changed since the last scan", units)
            offset = size  # the same PST unpacks to the same folders: nothing new
        elif size < offset:
            why = f"the mbox is shorter than the {offset:,} bytes read last time (truncated)"
            return self._full(record, old, why, units)
        elif edge_hashes(path, offset) != (old.meta["head"], old.meta["tail"]) or (
            size > offset and not from_line_at(path, offset)
        ):
            why = (
                f"the mbox was rewritten (its first {offset:,} bytes are not those read last time)"
            )
            return self._full(record, old, why, units)
        unit_label = units[0].label if units else ""
        new = mbox_units(path, self.jobs, offset, unit_label) if size > offset else []
        again, stored = self._split(old)
        offsets = sorted({offset_of(p) for p in again})
        again_units = [
            Unit("mbox", path=str(path), offsets=tuple(offsets[i : i + BATCH]), label=unit_label)
            for i in range(0, len(offsets), BATCH)
        ]
        return self._carry(
            record,
            old,
            new,
            again_units,
            stored,
            MboxHeaders(path, unit_label, self.config.limits.max_message_bytes),
        )

    def plan_files(self, label: str, root: Path, units: list[Unit], maildir: bool) -> list[Unit]:
        files = [Path(f) for u in units for f in u.files]
        maildir_of = functools.cache(is_maildir)  # one look per folder, not per message
        key_of = {str(f): _file_key(root, f, maildir_of) for f in files}
        by_key = {k: Path(p) for p, k in key_of.items()}
        record = Record(label, "files", {"maildir": maildir}, seen=set(by_key))
        old = self._old(label, "files")
        gone = old.seen - by_key.keys() if old is not None else set()
        twice = int(old.meta.get(TWICE, 0)) if old is not None else 0
        if old is None or gone or twice:
            why = f"{len(gone):,} file(s) read last time are gone or were renamed"
            if twice and not gone:
                why = (f"{twice:,} message(s) were read twice by the last scan, under two "
                       "names (an older mailguard's Maildir names)")  # fmt: skip
            planned = self._full(record, old, why, units)
        else:
            new = file_units([by_key[k] for k in sorted(by_key.keys() - old.seen)])
            again, stored = self._split(old)
            max_bytes = self.config.limits.max_message_bytes

            def reader(position: str, whole: bool) -> Input | None:
                if position not in by_key:
                    return None
                read = read_file if whole else read_head  # a rebuild needs the header block
                # A Maildir's message renamed since the listing is read under its new name.
                return next(iter(read_files([str(by_key[position])], max_bytes, read)))

            # A position that is no file now (a path stored by an older version for a
            # tree) is not found again, and said so, rather than a KeyError.
            again_units = file_units([by_key[k] for k in again if k in by_key])
            planned = self._carry(record, old, new, again_units, stored, reader)
        self._sources[label].key_of = key_of
        self._sources[label].key = lambda path: _file_key(root, Path(path), maildir_of)
        return planned

    def _split(self, old: Record) -> tuple[list[str], list[tuple[str, str]]]:
        """Positions to judge again, and incidents to rebuild from their stored records."""
        if self.addresses:
            return [p for p, _ in old.found], []
        return [p for p, r in old.found if r is None], [(p, r) for p, r in old.found if r]

    def _carry(
        self, record: Record, old: Record, new: list[Unit], again: list[Unit],
        stored: list[tuple[str, str]], reader: Reader,
    ) -> list[Unit]:  # fmt: skip
        add_counts(record.counts, old.counts)
        add_counts(self.carried, old.counts)
        self._reread.update((id(u), u) for u in again)
        self._sources[record.label] = _Source(
            record, "incremental", expected=len(old.found), carried=old.counts.messages,
            stored=stored, reader=reader,
        )  # fmt: skip
        return again + new

    def plan_imap(self, label: str) -> ImapResume:
        """Where the folder's scan resumes; it decides once the folder is open."""
        old = self._old(label, "imap")
        resume = ImapResume()
        if old is not None:
            resume.uidvalidity = old.meta["uidvalidity"]
            resume.last_uid, resume.count = int(old.meta["last_uid"]), int(old.meta["count"])
            resume.again = tuple(int(p) for p, _ in old.found)
        self._sources[label] = _Source(Record(label, "imap"), "", imap=resume, old=old)
        return resume

    def mark_reread(self, unit: Unit) -> None:
        """``unit`` holds messages of stored positions (an IMAP folder's first batches)."""
        self._reread[id(unit)] = unit

    def _imap_outcome(self, s: _Source, register: Register) -> bool:
        """Settle an IMAP folder's note and counts; False if it was never opened."""
        r = s.imap
        if r is None or r.full is None:
            return r is None
        s.record.meta = {"uidvalidity": r.seen_uidvalidity, "last_uid": r.highest,
                         "count": r.seen_count}  # fmt: skip
        if r.full or s.old is None:
            first = s.old is None and self.changed is None
            s.note = "first scan" if first else f"full re-scan: {self.changed or r.reason}"
            return True
        s.note, s.expected, s.carried = "incremental", len(s.old.found), s.old.counts.messages
        add_counts(s.record.counts, s.old.counts)
        register.merge(Tally(messages=s.old.counts.messages, verdicts=s.old.counts.verdicts,
                             first=s.old.counts.first, last=s.old.counts.last,
                             bytes=s.old.counts.bytes))  # fmt: skip
        return True

    # ------------------------------------------------------------------ scanning

    def alias(self, old: Unit, new: Unit) -> None:
        """``new`` carries part of ``old``'s messages (read here for a cluster's workers)."""
        if id(old) in self._reread:
            self._reread[id(new)] = new

    def on_tally(self, label: str, unit: Unit, tally: Tally) -> Tally:
        """Record a unit's findings; a unit judging stored positions again gives records
        only (its messages were counted by the scan that first read them)."""
        source = self._sources.get(label)
        if source is None:
            return tally
        for incident in tally.incidents:
            position = source.position(incident.source)
            source.record.found.append((position, self._record(incident)))
        for error in tally.errors:
            if error.kind == MESSAGE:
                source.record.found.append((source.position(error.source), None))
        if id(unit) in self._reread:
            source.got += len(tally.incidents) + sum(e.kind == MESSAGE for e in tally.errors)
            records = Tally(incidents=tally.incidents)
            records.errors = [e for e in tally.errors if e.kind == MESSAGE]
            return records
        source.new += tally.messages
        add_counts(source.record.counts, tally)
        return tally

    def _record(self, incident: Incident) -> str | None:
        """The stored form of an incident: no address, subject or Message-ID; the address
        lists as keyed hashes (which also replace the lists unless addresses are shown)."""
        if incident.people is None or incident.where is None or incident.public is None:
            hashed = self._hashed(incident.exposed)  # made by hand: only the addresses
            where, public = list(map(domain_of, incident.exposed)), self._hashed(incident.personal)
        elif self.tokens.keeps_addresses:
            hashed, where = self._hashed(incident.people), incident.where
            public = self._hashed(incident.public)
        else:  # the workers sent the store's own hashes
            hashed, where, public = incident.people, incident.where, incident.public
        grouped: dict[str, list[Person]] = {}
        for domain, person in zip(where, hashed, strict=True):
            grouped.setdefault(domain, []).append(person)
        if not self.addresses:
            incident.exposed, incident.personal = [], []
            incident.people, incident.where, incident.public = hashed, list(where), list(public)
        findings = json.dumps(incident.findings, sort_keys=True, default=str)
        if "@" in findings:
            return None  # a finding quoting an address: judged again on the next run
        return json.dumps({
            "date": incident.date.isoformat() if incident.date else None,
            "verdict": incident.verdict, "score": incident.score,
            "findings": json.loads(findings), "recipients": incident.recipients,
            "people": grouped, "public": public, "domains": incident.domains,
            "sensitive": incident.sensitive, "exposed_count": incident.exposed_count,
            "personal_count": incident.personal_count,
            "check": self._check(incident.message_id, incident.sender, incident.subject),
        }, sort_keys=True)  # fmt: skip

    def tokens_for(self, forked: bool) -> Tokens:
        """The scan's tokens: the store's hashes, made by the workers, when they are forked
        from this process (the key goes nowhere else) and no address is to be shown."""
        if not self.addresses and forked:
            self.tokens = Tokens("stored", self.store.key)
        return self.tokens

    def _hashed(self, addresses: list[str] | list[Person]) -> list[Person]:
        """The store's keyed hashes of addresses. Incidents reach here with addresses or
        with the store's own hashes (:meth:`tokens_for`): a scan token here would be a bug,
        not a person, and is refused rather than stored."""
        if not all(isinstance(a, str) for a in addresses):
            raise TypeError("the incremental store needs addresses, not scan tokens")
        return [self.store.hash(str(a)) for a in addresses]

    def _check(self, message_id: str | None, sender: str | None, subject: str | None) -> str:
        return self.store.hash(json.dumps([message_id, sender, subject]))

    def _rebuild(self, item: Input, stored: str) -> Incident | None:
        """The incident from its stored record and the header block of its message now."""
        if item.data is None:
            return None
        try:
            message = parse_message(header_fields(item.data), self.config.limits)
        except InputError:
            return None
        message_id = report_message_id(message.get("message-id"))
        subject = report_subject(message.get("subject"))
        found = sender_of(message, None)
        sender = found.addr if found is not None else None
        r: dict[str, Any] = json.loads(stored)
        if r["check"] != self._check(message_id, sender, subject) or "people" not in r:
            return None  # changed, or stored by a version that kept no domain per person
        grouped: dict[str, list[Person]] = r["people"]
        return Incident(
            source=item.source, message_id=message_id,
            date=datetime.fromisoformat(r["date"]) if r["date"] else None, sender=sender,
            subject=subject, verdict=r["verdict"], score=r["score"], findings=r["findings"],
            recipients=r["recipients"], exposed=[], personal=[],
            people=[p for who in grouped.values() for p in who],
            where=[d for d, who in grouped.items() for _ in who],
            public=r["public"], domains=r["domains"], sensitive=r["sensitive"],
            exposed_count=r["exposed_count"], personal_count=r["personal_count"],
        )  # fmt: skip

    def _judge(self, item: Input) -> Incident | None:
        """A stored incident whose message changed: judged again, here."""
        if item.data is None:
            return None
        self._engine = self._engine or Engine(self.config)
        report = self._engine.check(
            item.data, source=item.source, mode="archived", incomplete=item.incomplete
        )
        if report.verdict not in INCIDENT_VERDICTS:
            return None
        tally = Tally()
        tally.add_report(report, len(item.data), tokens=self.tokens)
        return tally.incidents[0]

    def finish(
        self, register: Register, say: Callable[[str], None],
        shown: Callable[[str], str] = str,
    ) -> None:  # fmt: skip
        """Rebuild the stored incidents, merge the carried counts, say per source what
        happened, and get the store's update ready for :meth:`save` (none when the scan was
        interrupted or nothing changed). ``shown``: a source's
        label as the register prints it (hashed under ``--redact``: a Maildir's path or an
        IMAP user name can be an address)."""
        register.merge(self.carried)
        keep: list[Record] = []
        dropped: list[str] = []
        for label, s in self._sources.items():
            if not self._imap_outcome(s, register):
                continue  # a folder never opened (login refused): its record stays
            rebuilt = Tally()
            try:
                for position, stored in s.stored:
                    item = s.reader(position, False) if s.reader is not None else None
                    incident = self._rebuild(item, stored) if item is not None else None
                    record: str | None = stored
                    if incident is None and item is not None and s.reader is not None:
                        incident = self._judge(s.reader(position, True) or item)
                        record = self._record(incident) if incident is not None else None
                    if incident is not None:
                        s.got += 1
                        rebuilt.incidents.append(incident)
                        s.record.found.append((position, record))
            finally:
                if isinstance(s.reader, MboxHeaders):
                    s.reader.close()  # its file, now rather than at garbage collection
            register.merge(rebuilt)
            where = shown(label)
            if s.note == "incremental":
                say(f"mailguard: state: {where}: incremental: {s.new:,} new message(s) read, "
                    f"{s.carried:,} carried over from the last scan")  # fmt: skip
            else:
                say(f"mailguard: state: {where}: {s.note}: {s.new:,} message(s) read")
            if s.got == s.expected:
                keep.append(s.record)
                continue
            lost = Tally()
            lost.add_error(
                label,
                f"{s.expected - s.got:,} incident(s) or unreadable message(s) recorded by the "
                "last scan were not found again: the source changed in place; its next scan "
                "with this state is a full one",
                SOURCE,
            )
            register.merge(lost)
            dropped.append(label)
        if register.interrupted:
            say("mailguard: state: not updated, the scan was interrupted")
            return
        if not dropped and all(
            s.note == "incremental" and not s.new for s in self._sources.values()
        ):
            return  # nothing new anywhere: the store already says all of it
        self._update = (keep, dropped)

    def save(self) -> None:
        """Write to the store what :meth:`finish` got ready. Called once the register is
        written, so that a store that cannot be written (disk full, an I/O error) costs no
        finding; raises :class:`~mailguard.archive.state.StateError` then, the store left
        as it was (its next scan reads again what this one read)."""
        if self._update is not None:
            keep, dropped = self._update
            self._update = None
            self.store.save(self.fingerprint, keep, dropped)


def _file_key(root: Path, path: Path, maildir_of: Callable[[Path], bool]) -> str:
    """A Maildir message by its unique name (the info after ``:``, ``!`` or ``;`` and
    ``new/``/``cur/`` vary: :func:`~mailguard.archive.maildir.unique_name`), after its
    Maildir's path below the source and ``//`` when that Maildir is not the source itself
    (a Maildir++ folder, a user's Maildir in a server's tree): a flag change anywhere is
    then no "file gone". Any other file by its path below the source; no such path holds
    ``//``, so the two kinds never meet."""
    folder = path.parent
    if path != root and folder.name in SUBDIRS and maildir_of(folder.parent):
        if folder.parent == root:
            return unique_name(path.name)
        return f"{_below(root, folder.parent)}//{unique_name(path.name)}"
    return _below(root, path)


def _below(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root)) if path != root else path.name
    except ValueError:
        return os.fspath(path)
