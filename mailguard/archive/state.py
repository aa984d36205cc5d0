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
from mailguard.archive.people import stored_hash
from mailguard.archive.register import Register, Tally, isoformat_utc

SCHEMA = 1
EDGE = 64 * 1024


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
    """The state file cannot be opened or is not one of ours."""


class StateStore:
    """The SQLite file. One scan at a time: SQLite's lock refuses a second writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if not path.exists():
                # Created private: file names and counts are the organisation's business.
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(path, timeout=5)
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS sources (
                    label TEXT PRIMARY KEY, kind TEXT NOT NULL,
                    meta TEXT NOT NULL, counts TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS seen (label TEXT NOT NULL, name TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS seen_label ON seen (label);
                CREATE TABLE IF NOT EXISTS found (
                    label TEXT NOT NULL, position TEXT NOT NULL, record TEXT);
                CREATE INDEX IF NOT EXISTS found_label ON found (label);
                """
            )
            schema = self._meta("schema")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot use {path} as the scan state: {exc}") from None
        if schema is not None and schema != str(SCHEMA):
            raise StateError(f"{path} was written by another mailguard (schema {schema})")
        self.key = _key(keyfile.beside(path))
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
        row = self.db.execute(
            "SELECT kind, meta, counts FROM sources WHERE label = ?", (label,)
        ).fetchone()
        if row is None:
            return None
        seen = {r[0] for r in self.db.execute("SELECT name FROM seen WHERE label = ?", (label,))}
        query = "SELECT position, record FROM found WHERE label = ?"
        found = [(r[0], r[1]) for r in self.db.execute(query, (label,))]
        return Record(label, row[0], json.loads(row[1]), _tally(json.loads(row[2])), seen, found)

    def save(self, fingerprint: str, records: list[Record], dropped: list[str]) -> None:
        """Replace these sources' entries in one transaction; forget ``dropped`` ones (their
        next scan is a full one). A different fingerprint forgets every source first."""
        with self.db:
            if self.fingerprint != fingerprint:
                for table in ("sources", "seen", "found"):
                    self.db.execute(f"DELETE FROM {table}")
            meta = (("schema", str(SCHEMA)), ("fingerprint", fingerprint),
                    ("key_check", self.key_check))  # fmt: skip
            for key, value in meta:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            for label in [*dropped, *(r.label for r in records)]:
                for table in ("sources", "seen", "found"):
                    self.db.execute(f"DELETE FROM {table} WHERE label = ?", (label,))
            for r in records:
                self.db.execute(
                    "INSERT INTO sources VALUES (?, ?, ?, ?)",
                    (r.label, r.kind, json.dumps(r.meta), json.dumps(_counts(r.counts))),
                )
                self.db.executemany(
                    "INSERT INTO seen VALUES (?, ?)", ((r.label, n) for n in r.seen)
                )
                self.db.executemany(
                    "INSERT INTO found VALUES (?, ?, ?)", ((r.label, p, rec) for p, rec in r.found)
                )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()


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
