"""The incremental-scan store (``scan --state PATH``): what was scanned, in SQLite.

Per source it keeps where the last scan stopped and what it counted:

* mbox: size, mtime, the byte offset reached, and SHA-256 hashes of the 64 KB before that
  offset and of the first 64 KB (an mbox that is only appended to keeps both);
* Maildir and folders of .eml files: the file names read (a Maildir message by the unique
  part of its name, so a flag change or the move from ``new/`` to ``cur/`` is no new mail);
* PST folders: the SHA-256 of the PST file;
* the counts of the messages read (messages, verdicts, bytes, first and last date);
* where each incident and each unreadable message is (``archive.mbox@1234``, a file name),
  and for an incident what judging it found: verdict, score, date, findings, recipient
  counts, exposed domains, and the exposed addresses **as keyed hashes** only (HMAC-SHA256
  under a key kept in a separate file, ``PATH.key``), for the count of distinct people;

plus a fingerprint of everything that decides a verdict (mailguard version, rule files and
options, thresholds, internal domains, date window, file pattern).

No address, subject or Message-ID is stored. A re-run reads those back from the header
block at each incident's position (cheap: no re-judging), checked against a keyed hash of
the message's first 64 KB, so the register is the one a full scan writes. A finding whose
text holds an ``@`` is not stored either; that incident is judged again. With
``--show-addresses`` or ``--redact`` the addresses themselves are needed: every stored
incident is then judged again from the mail, so what is printed was read in this run,
never reconstructed from a hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailguard import keyfile
from mailguard.archive.maildir import unique_name
from mailguard.archive.people import stored_hash
from mailguard.archive.register import Register, Tally, isoformat_utc

SCHEMA = 1
EDGE = 64 * 1024
LOCK_WAIT = 2.0
"""Seconds a scan waits for another one to release the store before it gives up."""
TWICE = "read_twice"
"""In a Maildir record's ``meta`` once loaded: how many messages the last scan read under
two names (:func:`_migrated`); its counts are too high, so its next scan is a full one."""


@dataclass(slots=True)
class Record:
    """One source's entry: ``meta`` says where the last scan stopped (by kind)."""

    label: str
    kind: str
    """``mbox`` (also a PST folder) or ``files``."""
    meta: dict[str, Any] = field(default_factory=dict)
    counts: Tally = field(default_factory=Tally)
    seen: set[str] = field(default_factory=set)
    found: list[tuple[str, str | None]] = field(default_factory=list)
    """(position, record): incidents and unreadable messages by position (``x.mbox@12``, a
    file key), with an incident's stored record (JSON) when it could be stored."""


class StateError(Exception):
    """The state file cannot be opened or is not one of ours, or cannot be saved."""


class StateBusy(StateError):
    """Another scan holds the store. The message names no path (it may hold an address)."""


_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS sources (
        label TEXT PRIMARY KEY, kind TEXT NOT NULL, meta TEXT NOT NULL, counts TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS seen (label TEXT NOT NULL, name TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS seen_label ON seen (label)",
    "CREATE TABLE IF NOT EXISTS found (label TEXT NOT NULL, position TEXT NOT NULL, record TEXT)",
    "CREATE INDEX IF NOT EXISTS found_label ON found (label)",
)


class StateStore:
    """The SQLite file, held by one scan from open to close.

    Two scans with the same state would both read it, both scan, and the later save would
    overwrite the earlier one's. So the store is locked for the whole run: SQLite's
    exclusive locking mode keeps the lock a connection takes until it is closed, commits
    included, and ``BEGIN EXCLUSIVE`` at open takes the strongest one (no other connection
    can even read). A second scan waits :data:`LOCK_WAIT` seconds, then gets
    :class:`StateBusy`, before it has read or scanned anything.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if not path.exists():
                # Created private: file names and counts are the organisation's business.
                with contextlib.suppress(FileExistsError):  # another scan made it first
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            # Autocommit (isolation_level None): the transactions are the ones written here,
            # sqlite3 adds none and commits none behind our back.
            self.db = sqlite3.connect(path, timeout=LOCK_WAIT, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot use {path} as the scan state: {exc}") from None
        try:
            self.db.execute("PRAGMA locking_mode = EXCLUSIVE")
            self.db.execute("BEGIN EXCLUSIVE")  # the lock, kept after this commit
            for statement in _TABLES:
                self.db.execute(statement)
            schema = self._meta("schema")
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.close()
            if _busy(exc):
                raise StateBusy(
                    "another scan is using this state file; try again when it ends"
                ) from None
            raise StateError(f"cannot use {path} as the scan state: {exc}") from None
        try:
            if schema is not None and schema != str(SCHEMA):
                raise StateError(f"{path} was written by another mailguard (schema {schema})")
            self._file = _identity(path)
            self.key = _key(keyfile.beside(path))
        except StateError:
            self.close()
            raise
        self.key_check = self.hash("mailguard state key check")
        self.key_changed = self._meta("key_check") not in (None, self.key_check)

    def hash(self, text: str) -> str:
        """The keyed hash an address is stored as (128 bits, hex)."""
        return self.hash_bytes(text.encode("utf-8", "surrogateescape"))

    def hash_bytes(self, data: bytes) -> str:
        return stored_hash(self.key, data)

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def fingerprint(self) -> str | None:
        return self._meta("fingerprint")

    def load(self, label: str) -> Record | None:
        key = _bind(label)
        row = self.db.execute(
            "SELECT kind, meta, counts FROM sources WHERE label = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        seen = {
            _back(r[0]) for r in self.db.execute("SELECT name FROM seen WHERE label = ?", (key,))
        }
        query = "SELECT position, record FROM found WHERE label = ?"
        found = [(_back(r[0]), r[1]) for r in self.db.execute(query, (key,))]
        record = Record(label, row[0], json.loads(row[1]), _tally(json.loads(row[2])), seen, found)
        return _migrated(record)

    def save(self, fingerprint: str, records: list[Record], dropped: list[str]) -> None:
        """Replace these sources' entries in one transaction; forget ``dropped`` ones (their
        next scan is a full one). A different fingerprint forgets every source first.

        A save that fails (disk full, an I/O error) leaves the store as it was and raises
        :class:`StateError`, whose message names no path."""
        try:
            if _identity(self.path) != self._file:
                # Removed or replaced while this scan ran (another scan may have made a new
                # one there): what would be written here is in no file anyone will read.
                raise StateError("the state file was removed or replaced during the scan")
            self.db.execute("BEGIN IMMEDIATE")  # the lock is ours already: no wait
            self._write(fingerprint, records, dropped)
            self.db.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            with contextlib.suppress(sqlite3.Error):
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StateError(reason or type(exc).__name__) from None

    def _write(self, fingerprint: str, records: list[Record], dropped: list[str]) -> None:
        if self.fingerprint != fingerprint:
            for table in ("sources", "seen", "found"):
                self.db.execute(f"DELETE FROM {table}")
        meta = (("schema", str(SCHEMA)), ("fingerprint", fingerprint),
                ("key_check", self.key_check))  # fmt: skip
        for key, value in meta:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        for label in [*dropped, *(r.label for r in records)]:
            for table in ("sources", "seen", "found"):
                self.db.execute(f"DELETE FROM {table} WHERE label = ?", (_bind(label),))
        for r in records:
            bound = _bind(r.label)
            self.db.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?)",
                (bound, r.kind, json.dumps(r.meta), json.dumps(_counts(r.counts))),
            )
            self.db.executemany(
                "INSERT INTO seen VALUES (?, ?)", ((bound, _bind(n)) for n in r.seen)
            )
            self.db.executemany(
                "INSERT INTO found VALUES (?, ?, ?)",
                ((bound, _bind(p), rec) for p, rec in r.found),
            )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file is at ``path`` (device, inode); None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _migrated(record: Record) -> Record:
    """A Maildir record with every name and position as its message's unique name now.

    Older versions kept a name with info after ``!`` or ``;`` (``uniq!2,S``) whole, and
    stored the full path of a message renamed during the scan (``.../cur/uniq:2,S``);
    mapped here, an existing store's next scan still matches its messages and incidents.
    Two old names of one message (read twice: listed in ``new/`` and, renamed, in ``cur/``)
    are counted in :data:`TWICE`.
    """
    if record.kind != "files" or not record.meta.get("maildir"):
        return record

    def key(name: str) -> str:
        maildir, cut, tail = name.rpartition("//")  # a Maildir++ folder's message
        if cut:
            return f"{maildir}//{unique_name(tail)}"
        return unique_name(Path(name).name)

    seen = {key(n) for n in record.seen}
    if len(seen) < len(record.seen):
        record.meta[TWICE] = len(record.seen) - len(seen)
    record.seen = seen
    record.found = [(key(p), r) for p, r in record.found]
    return record


def _bind(name: str) -> str | bytes:
    """A file name or source label as SQLite can hold it. A name that is not UTF-8 reaches
    Python as lone surrogates, which sqlite3 refuses to encode: such a name is stored as
    its bytes (a BLOB; SQLite keeps the type per value), every other one as text, so old
    stores still match and the two kinds can never be taken for each other."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape")
    return name


def _back(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _key(path: Path) -> bytes:
    """The hashing key, in its own private file: the store alone cannot be used to test
    whether a guessed address was exposed. Made on first use; with another key the stored
    hashes mean nothing, and the next scan is a full one."""
    try:
        return keyfile.read_or_create(path, "the state's key file")
    except keyfile.KeyFileError as exc:
        raise StateError(str(exc)) from None


def _counts(t: Tally) -> dict[str, Any]:
    return {
        "messages": t.messages,
        "verdicts": dict(t.verdicts),
        "bytes": t.bytes,
        "first": isoformat_utc(t.first),
        "last": isoformat_utc(t.last),
    }


def _tally(data: dict[str, Any]) -> Tally:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    return Tally(
        messages=int(data["messages"]),
        verdicts=Counter({k: int(v) for k, v in data["verdicts"].items()}),
        first=when(data["first"]),
        last=when(data["last"]),
        bytes=int(data["bytes"]),
    )


def add_counts(into: Tally, tally: Tally) -> None:
    """``tally``'s counts (not its incidents or errors) added to ``into``, the way the
    register adds them up (its own merge, on a register whose total is ``into``)."""
    register = Register()
    register.total = into
    register.merge(
        Tally(tally.messages, tally.verdicts, tally.first, tally.last, bytes=tally.bytes)
    )


def edge_hashes(path: Path, offset: int) -> tuple[str, str]:
    """SHA-256 of the first 64 KB and of the 64 KB before ``offset``."""
    with path.open("rb") as f:
        head = f.read(min(EDGE, offset))
        f.seek(max(0, offset - EDGE))
        tail = f.read(offset - max(0, offset - EDGE))
    return hashlib.sha256(head).hexdigest(), hashlib.sha256(tail).hexdigest()


def fingerprint(provenance: dict[str, Any], pattern: str) -> str:
    """Of everything that decides which messages are read and how they are judged."""
    blob = json.dumps({"provenance": provenance, "pattern": pattern}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
