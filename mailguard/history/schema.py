"""The store's schema, its version and the path from every older version to this one.

The version lives in SQLite's ``PRAGMA user_version``. A store made by an older mailguard
is upgraded in place, in one transaction, by :func:`migrate` when it is opened for
writing (``mailguard learn``, ``mailguard history migrate``); opened read-only it is
refused with the command that upgrades it, because a reader must not change the file.
A store from a newer mailguard is refused: its meaning is unknown here.

Every value that could name a person is a keyed 64-bit hash (:mod:`mailguard.history.keys`);
days are counted from 1970-01-01. ``sender = 0`` in ``pairs`` is the organisation as a
whole (hashes are never 0).
"""

from __future__ import annotations

import sqlite3

FORMAT = "mailguard-history"
VERSION = 2

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE senders (
    sender INTEGER PRIMARY KEY, messages INTEGER NOT NULL, mass INTEGER NOT NULL,
    first INTEGER NOT NULL, last INTEGER NOT NULL);
CREATE TABLE pairs (
    sender INTEGER NOT NULL, rcpt INTEGER NOT NULL, n INTEGER NOT NULL,
    first INTEGER NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (sender, rcpt)) WITHOUT ROWID;
CREATE TABLE addrs (
    rcpt INTEGER PRIMARY KEY, local INTEGER NOT NULL, last INTEGER NOT NULL);
CREATE INDEX addrs_local ON addrs (local);
CREATE TABLE near (
    variant INTEGER NOT NULL, rcpt INTEGER NOT NULL,
    PRIMARY KEY (variant, rcpt)) WITHOUT ROWID;
CREATE TABLE messages (mid INTEGER PRIMARY KEY, root INTEGER NOT NULL, day INTEGER NOT NULL);
CREATE TABLE members (
    root INTEGER NOT NULL, member INTEGER NOT NULL,
    PRIMARY KEY (root, member)) WITHOUT ROWID;
CREATE TABLE sources (source INTEGER PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE seen_files (
    source INTEGER NOT NULL, name INTEGER NOT NULL,
    PRIMARY KEY (source, name)) WITHOUT ROWID;
"""

_V1_TO_V2 = """
CREATE TABLE co (
    a INTEGER NOT NULL, b INTEGER NOT NULL, n INTEGER NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE threads (
    root INTEGER PRIMARY KEY, first_sender INTEGER NOT NULL, senders INTEGER NOT NULL,
    size INTEGER NOT NULL, last INTEGER NOT NULL);
INSERT INTO threads (root, first_sender, senders, size, last)
    SELECT root, 0, 0, count(*), max(day) FROM messages GROUP BY root;
"""
"""Version 2 learns co-recipients and per-thread senders (the reply-all rule needs to know
whether a thread had a single sender). Threads learned by version 1 get ``senders = 0``:
unknown, which the rule treats like a thread it has not seen."""

MIGRATIONS: dict[int, str] = {1: _V1_TO_V2}
"""``MIGRATIONS[v]`` upgrades a version-``v`` store to ``v + 1``."""


def create(db: sqlite3.Connection, key_check: str) -> None:
    """Lay out an empty store of the current version (inside the caller's transaction)."""
    for script in (_V1, _V1_TO_V2):
        for statement in script.split(";"):
            if statement.strip() and not statement.lstrip().startswith("INSERT"):
                db.execute(statement)
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("format", FORMAT), ("key_check", key_check)],
    )
    db.execute(f"PRAGMA user_version = {VERSION}")


def create_version_1(db: sqlite3.Connection, key_check: str) -> None:
    """A version-1 store, as the first release wrote it: for the migration test."""
    for statement in _V1.split(";"):
        if statement.strip():
            db.execute(statement)
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("format", FORMAT), ("key_check", key_check)],
    )
    db.execute("PRAGMA user_version = 1")


def migrate(db: sqlite3.Connection, found: int) -> None:
    """Upgrade from version ``found`` to :data:`VERSION`, one step at a time, atomically."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for version in range(found, VERSION):
            for statement in _statements(version):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _statements(version: int) -> list[str]:
    script = MIGRATIONS[version]
    return [s for s in script.split(";") if s.strip()]
