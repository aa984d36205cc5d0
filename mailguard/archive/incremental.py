"""Incremental re-scans: plan only the new mail of each source, carry the rest over.

For each source the planner compares what is there now with the :mod:`state
<mailguard.archive.state>` record of the last scan and decides, saying which and why:

* **first scan**: no record (or a new state file);
* **full re-scan**: the rules or the configuration changed (the fingerprint differs); an
  mbox is shorter than the offset reached (truncated), its first or last 64 KB before that
  offset changed, or the offset is no longer at a ``From_`` line (rewritten); a file read
  last time is gone or renamed; a PST file's hash changed;
* **incremental**: the counts of the old mail come from the record; only the mbox bytes
  after the offset, or the files not seen before, are judged; and the messages at the
  stored positions (incidents, unreadable messages) are read again for their records.

A re-read message that is no longer what was recorded (an mbox or file changed in place)
makes the register incomplete, with an error saying so, and the source's record is
dropped: the next run re-scans it in full.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailguard.archive.mbox import is_from_line
from mailguard.archive.register import MESSAGE, SOURCE, Register, Tally
from mailguard.archive.scanner import file_units, mbox_units
from mailguard.archive.state import Record, StateStore, add_counts, edge_hashes
from mailguard.archive.workers import Unit

BATCH = 64


@dataclass(slots=True)
class _Source:
    record: Record
    note: str
    key_of: dict[str, str] = field(default_factory=dict)
    """A file's path -> its key in the record (``files`` sources)."""
    expected: int = 0
    """Positions to re-read; each must come back as an incident or an unreadable message."""
    got: int = 0
    new: int = 0
    carried: int = 0


class Incremental:
    """Plans one scan against the store and records what it found, source by source."""

    def __init__(self, store: StateStore, fingerprint: str, jobs: int) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.jobs = jobs
        self.changed: str | None = None
        if store.fingerprint not in (None, fingerprint):
            self.changed = "the rules or the configuration changed since the last scan"
        self.carried = Tally()
        """Counts of the mail read by earlier scans: merged into the register at the end."""
        self._sources: dict[str, _Source] = {}
        self._reread: dict[int, Unit] = {}
        """Units that re-read stored positions, by id (kept alive here: ids stay unique)."""

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
        size = path.stat().st_size
        head, tail = edge_hashes(path, size)
        record = Record(label, "mbox", {"size": size, "mtime_ns": path.stat().st_mtime_ns,
                                        "offset": size, "head": head, "tail": tail,
                                        "pst": pst_hash})  # fmt: skip
        old = self._old(label, "mbox")
        if old is None:
            return self._full(record, old, "", units)
        offset = int(old.meta["offset"])
        if pst_hash is not None or old.meta.get("pst") is not None:
            if pst_hash != old.meta.get("pst"):
                return self._full(record, old, "the PST file changed since the last scan", units)
            offset = size  # the same PST unpacks to the same folders: nothing new
        elif size < offset:
            why = f"the mbox is shorter than the {offset:,} bytes read last time (truncated)"
            return self._full(record, old, why, units)
        elif edge_hashes(path, offset) != (old.meta["head"], old.meta["tail"]) or (
            size > offset and not _from_line_at(path, offset)
        ):
            why = (
                f"the mbox was rewritten (its first {offset:,} bytes are not those read last time)"
            )
            return self._full(record, old, why, units)
        unit_label = units[0].label if units else ""
        new = mbox_units(path, self.jobs, offset, unit_label) if size > offset else []
        offsets = sorted({int(p.rsplit("@", 1)[1]) for p in old.found if "@" in p})
        again = [
            Unit("mbox", path=str(path), offsets=tuple(offsets[i : i + BATCH]), label=unit_label)
            for i in range(0, len(offsets), BATCH)
        ]
        return self._carry(record, old, len(offsets), new, again)

    def plan_files(self, label: str, root: Path, units: list[Unit], maildir: bool) -> list[Unit]:
        files = [Path(f) for u in units for f in u.files]
        key_of = {str(f): _file_key(root, f, maildir) for f in files}
        by_key = {k: Path(p) for p, k in key_of.items()}
        record = Record(label, "files", {"maildir": maildir}, seen=set(by_key))
        old = self._old(label, "files")
        if old is None:
            self._full(record, old, "", units)
            self._sources[label].key_of = key_of
            return units
        gone = old.seen - by_key.keys()
        if gone:
            why = f"{len(gone):,} file(s) read last time are gone or were renamed"
            self._full(record, old, why, units)
            self._sources[label].key_of = key_of
            return units
        new = file_units([by_key[k] for k in sorted(by_key.keys() - old.seen)])
        positions = [by_key[k] for k in old.found if k in by_key]
        again = file_units(positions)
        planned = self._carry(record, old, len(old.found), new, again)
        self._sources[label].key_of = key_of
        return planned

    def _carry(
        self, record: Record, old: Record, expected: int, new: list[Unit], again: list[Unit]
    ) -> list[Unit]:
        add_counts(record.counts, old.counts)
        add_counts(self.carried, old.counts)
        self._reread.update((id(u), u) for u in again)
        self._sources[record.label] = _Source(
            record, "incremental", expected=expected, carried=old.counts.messages
        )
        return again + new

    # ------------------------------------------------------------------ scanning

    def alias(self, old: Unit, new: Unit) -> None:
        """``new`` carries part of ``old``'s messages (read here for a cluster's workers)."""
        if id(old) in self._reread:
            self._reread[id(new)] = new

    def on_tally(self, label: str, unit: Unit, tally: Tally) -> Tally:
        """Record a unit's findings; a re-read unit gives records only, its counts are old."""
        source = self._sources.get(label)
        if source is None:
            return tally
        found = [i.source for i in tally.incidents]
        found += [e.source for e in tally.errors if e.kind == MESSAGE]
        positions = [source.key_of.get(p, p) for p in found]
        source.record.found += positions
        if id(unit) in self._reread:
            source.got += len(positions)
            records = Tally(incidents=tally.incidents)
            records.errors = [e for e in tally.errors if e.kind == MESSAGE]
            return records
        source.new += tally.messages
        add_counts(source.record.counts, tally)
        return tally

    def finish(self, register: Register, say: Callable[[str], None]) -> None:
        """Merge the carried counts, say per source what happened, update the store."""
        register.merge(self.carried)
        keep: list[Record] = []
        dropped: list[str] = []
        for label, s in self._sources.items():
            if s.note == "incremental":
                say(f"mailguard: state: {label}: incremental: {s.new:,} new message(s) read, "
                    f"{s.carried:,} carried over from the last scan")  # fmt: skip
            else:
                say(f"mailguard: state: {label}: {s.note}: {s.new:,} message(s) read")
            if s.got != s.expected:
                lost = Tally()
                lost.add_error(
                    label,
                    f"{s.expected - s.got:,} incident(s) or unreadable message(s) recorded by "
                    "the last scan were not found again: the source changed in place; its "
                    "next scan with this state is a full one",
                    SOURCE,
                )
                register.merge(lost)
                dropped.append(label)
            else:
                keep.append(s.record)
        if register.interrupted:
            say("mailguard: state: not updated, the scan was interrupted")
            return
        self.store.save(self.fingerprint, keep, dropped)


def _from_line_at(path: Path, offset: int) -> bool:
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        end = mm.find(b"\n", offset, offset + 1000)
        return is_from_line(mm[offset : end if end >= 0 else offset + 1000])


def _file_key(root: Path, path: Path, maildir: bool) -> str:
    """A Maildir message by its unique name (flags after ``:`` and ``new/``/``cur/`` vary);
    a file in a tree by its path below the source."""
    if maildir:
        return path.name.split(":", 1)[0]
    try:
        return str(path.relative_to(root)) if path != root else path.name
    except ValueError:
        return os.fspath(path)
