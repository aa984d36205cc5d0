"""The store's schema, its version and the path from every older version to this one.

The version lives in SQLite's ``PRAGMA user_version``. A store made by an older mailguard
is upgraded in place, in one transaction, by :func:`migrate` when it is opened for
writing (``mailguard learn``, ``mailguard history migrate``); opened read-only it is
refused with the command that upgrades it, because a reader must not change the file.
A store from a newer mailguard is refused: its meaning is unknown here.

Every value that could name a person is a keyed 64-bit hash (:mod:`mailguard.history.keys`);
days are counted from 1970-01-01. Message-IDs are kept to 48 bits (``>> 16``: 6 bytes
in SQLite, and at a million messages a chance of 1 in 280 million that an unrelated
reply looks like part of a known thread), ``root`` is NULL for a message that starts its
thread. ``sender = 0`` in ``pairs`` is the organisation as a
whole (hashes are never 0).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

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
CREATE TABLE messages (mid INTEGER PRIMARY KEY, root INTEGER, day INTEGER NOT NULL);
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
    size INTEGER NOT NULL, last INTEGER NOT NULL, members BLOB NOT NULL);
"""
"""Version 2 learns co-recipients and per-thread senders (the reply-all rule needs to know
whether a thread had a single sender), and packs a thread's members into one row (4 bytes
each: a third of the space of a row per member). Threads learned by version 1 get
``senders = 0``: unknown, which the rule treats like a thread it has not seen."""


def _v1_to_v2(db: sqlite3.Connection) -> None:
    for statement in _V1_TO_V2.split(";"):
        if statement.strip():
            db.execute(statement)
    # Version 1 kept 64-bit Message-IDs and a root on every message.
    db.execute(
        "UPDATE messages SET mid = mid >> 16, "
        "root = CASE WHEN root = mid THEN NULL ELSE root >> 16 END"
    )
    threads: dict[int, list[int]] = {}
    for root, member in db.execute("SELECT root >> 16, member FROM members"):
        threads.setdefault(root, []).append(member)
    last = dict(
        db.execute("SELECT coalesce(root, mid), max(day) FROM messages GROUP BY 1").fetchall()
    )
    db.executemany(
        "INSERT INTO threads VALUES (?, 0, 0, ?, ?, ?)",
        [(root, len(m), last.get(root, 0), pack(m)) for root, m in threads.items()],
    )
    db.execute("DROP TABLE members")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}
"""``MIGRATIONS[v]`` upgrades a version-``v`` store to ``v + 1``."""


def short(value: int) -> int:
    """A 32-bit form of a hash, where collisions only matter within a small set (a
    thread's members)."""
    return value & 0xFFFFFFFF


def pack(members: Iterable[int]) -> bytes:
    return b"".join(short(m).to_bytes(4, "big") for m in members)


def unpack(blob: bytes) -> set[int]:
    return {int.from_bytes(blob[i : i + 4], "big") for i in range(0, len(blob) - 3, 4)}


def create(db: sqlite3.Connection, key_check: str) -> None:
    """Lay out an empty store of the current version (inside the caller's transaction)."""
    for statement in (*_V1.split(";"), *_V1_TO_V2.split(";")):
        if statement.strip() and "members (" not in statement:
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
            MIGRATIONS[version](db)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
