"""Opening the history store and asking it questions; every failure is a HistoryError.

Read-only is the default (``check``, the milter without ``learn``): the file is opened
with SQLite's ``mode=ro``, so a reader can neither change it nor create it by accident.
Writers (``mailguard learn``, the milter with ``learn = true``) use WAL, so readers keep
reading while they write, and wait up to ``busy_timeout`` seconds for another writer.

Everything that can go wrong at start — no such file, no key, a key that is not the
store's, a file that is not SQLite or not ours, a newer or an older schema, a lock held
too long — is a :class:`HistoryError` with the path and what to do, which the commands
turn into exit status 2. SQLite's own words are passed on: they name no address (the
store holds none) and no key.
"""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailguard.history import schema
from mailguard.history.keys import Hasher, HistoryError, create_key, key_path, read_key

BUSY_TIMEOUT = 5.0
WRITE_CACHE_KIB = 65536
"""Page cache of a writer (``learn``): 64 MiB, most of a million-message store."""
READ_CACHE_KIB = 16384
"""Page cache of a reader (``check``, the milter): the pages its lookups keep touching."""
_KEY_CHECK = "mailguard-history key check"
_CHUNK = 500  # bound parameters per IN (...) query, well under SQLite's limit


@dataclass(frozen=True, slots=True)
class Thread:
    """What the store knows of a thread: hashed members, how many senders wrote in it."""

    root: int
    members: frozenset[int]
    """32-bit forms (:func:`schema.short`) of the hashed addresses on the thread."""
    senders: int
    """1: one sender, 2: more than one; 0 when unknown (learned before version 2)."""
    first_sender: int
    size: int
    """Recipients of the largest message learned in the thread."""


@contextlib.contextmanager
def errors(path: Path, doing: str) -> Iterator[None]:
    """SQLite's exceptions as :class:`HistoryError` naming the store and what to do."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise HistoryError(
                f"history store {path} is locked by another process ({doing}): {text}; "
                "wait for the other `mailguard learn` to finish, or stop it"
            ) from None
        raise HistoryError(f"cannot use history store {path} ({doing}): {text}") from None
    except sqlite3.DatabaseError as exc:
        raise HistoryError(
            f"history store {path} is corrupt or not a mailguard history store ({doing}): "
            f"{exc}; move it aside and build a new one with `mailguard learn`"
        ) from None


class HistoryStore:
    """One open store. Not shared between threads without the caller's lock
    (:class:`~mailguard.history.service.HistoryService` holds one)."""

    def __init__(self, db: sqlite3.Connection, hasher: Hasher, path: Path, writable: bool) -> None:
        self.db = db
        self.hash = hasher
        self.path = path
        self.writable = writable

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        write: bool = False,
        create: bool = False,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> HistoryStore:
        """Open ``path``; ``create`` makes a new store (and its key) when there is none."""
        path = Path(path)
        exists = _exists(path)
        if not exists and not create:
            raise HistoryError(
                f"history store {path} does not exist; build it with "
                f"`mailguard learn SOURCE --store {path}`"
            )
        keyfile = key_path(path)
        fresh = not exists and not _exists(keyfile)
        key = create_key(keyfile) if fresh else read_key(keyfile)
        hasher = Hasher(key)
        mode = "ro" if not (write or create) else ("rw" if exists else "rwc")
        uri = f"{path.resolve().as_uri()}?mode={mode}"
        with errors(path, "opening"):
            db = sqlite3.connect(
                uri, uri=True, timeout=busy_timeout, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        if mode == "rwc":  # hashes only, yet nobody else's business (-wal/-shm follow it)
            path.chmod(0o600)
        store = cls(db, hasher, path, mode != "ro")
        try:
            with errors(path, "opening"):
                db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                store._prepare(exists)
        except BaseException:
            db.close()
            raise
        return store

    def _prepare(self, exists: bool) -> None:
        db, check = self.db, str(self.hash(Hasher.SOURCE, _KEY_CHECK))
        # Keys are hashes, so writes land on random pages: with SQLite's default 2 MB page
        # cache a large store is re-read from disk at every batch. Bounded memory either way.
        db.execute(f"PRAGMA cache_size = -{WRITE_CACHE_KIB if self.writable else READ_CACHE_KIB}")
        if self.writable:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if not exists or (version == 0 and self.writable and _empty(db)):
            with self.transaction():
                schema.create(db, check)
            return
        meta = dict(db.execute("SELECT key, value FROM meta") if _has_meta(db) else [])
        if meta.get("format") != schema.FORMAT:
            raise HistoryError(f"{self.path} is not a mailguard history store")
        if meta.get("key_check") != check:
            raise HistoryError(
                f"the key {key_path(self.path)} does not belong to the history store "
                f"{self.path} (it was replaced or copied from another store)"
            )
        if version > schema.VERSION:
            raise HistoryError(
                f"history store {self.path} has schema version {version}, newer than this "
                f"mailguard understands ({schema.VERSION}); upgrade mailguard"
            )
        if version < schema.VERSION:
            if not self.writable:
                raise HistoryError(
                    f"history store {self.path} has schema version {version}; upgrade it "
                    f"to {schema.VERSION} with `mailguard history migrate --store {self.path}`"
                )
            schema.migrate(db, version)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once, so a second writer waits here)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ questions

    def sender_messages(self, sender: int) -> int:
        row = self.db.execute("SELECT messages FROM senders WHERE sender = ?", (sender,)).fetchone()
        return int(row[0]) if row else 0

    def familiar(self, sender: int, rcpts: Sequence[int]) -> tuple[set[int], set[int]]:
        """Which of ``rcpts`` the sender, and which the organisation, has written to."""
        mine: set[int] = set()
        org: set[int] = set()
        for chunk in _chunks(rcpts):
            marks = ",".join("?" * len(chunk))
            for who, rcpt in self.db.execute(
                f"SELECT sender, rcpt FROM pairs WHERE sender IN (?, 0) AND rcpt IN ({marks})",
                (sender, *chunk),
            ):
                (org if who == 0 else mine).add(rcpt)
        return mine, org

    def near(self, variants: Sequence[int]) -> list[tuple[int, int]]:
        """(variant, rcpt) rows sharing one of ``variants``: near-miss candidates."""
        found: list[tuple[int, int]] = []
        for chunk in _chunks(variants):
            marks = ",".join("?" * len(chunk))
            found += self.db.execute(
                f"SELECT variant, rcpt FROM near WHERE variant IN ({marks})", chunk
            ).fetchall()
        return found

    def same_local(self, local: int, limit: int = 50) -> list[int]:
        rows = self.db.execute("SELECT rcpt FROM addrs WHERE local = ? LIMIT ?", (local, limit))
        return [r[0] for r in rows]

    def thread(self, ids: Sequence[int]) -> Thread | None:
        """The thread one of ``ids`` (hashed Message-IDs) belongs to, if any was learned."""
        root = None
        for chunk in _chunks([i >> 16 for i in ids]):
            marks = ",".join("?" * len(chunk))
            row = self.db.execute(
                f"SELECT coalesce(root, mid) FROM messages WHERE mid IN ({marks}) LIMIT 1", chunk
            ).fetchone()
            if row:
                root = row[0]
                break
        if root is None:
            return None
        row = self.db.execute(
            "SELECT first_sender, senders, size, members FROM threads WHERE root = ?", (root,)
        ).fetchone()
        if row is None:
            return Thread(root, frozenset(), 0, 0, 0)
        return Thread(root, frozenset(schema.unpack(row[3])), row[1], row[0], row[2])

    def co_recipients(self, rcpt: int, others: Sequence[int]) -> int:
        """How many of ``others`` were ever addressed together with ``rcpt``."""
        n = 0
        for chunk in _chunks(others):
            marks = ",".join("?" * len(chunk))
            n += self.db.execute(
                f"SELECT count(*) FROM co WHERE (a = ? AND b IN ({marks})) "
                f"OR (b = ? AND a IN ({marks}))",
                (rcpt, *chunk, rcpt, *chunk),
            ).fetchone()[0]
        return n

    def roots_of(self, mids: Iterable[int]) -> dict[int, int]:
        """The thread root of each of ``mids`` (48-bit forms) that was learned."""
        roots: dict[int, int] = {}
        for chunk in _chunks(list(mids)):
            marks = ",".join("?" * len(chunk))
            roots.update(
                self.db.execute(
                    f"SELECT mid, coalesce(root, mid) FROM messages WHERE mid IN ({marks})", chunk
                ).fetchall()
            )
        return roots

    def known_messages(self, mids: Iterable[int]) -> set[int]:
        known: set[int] = set()
        for chunk in _chunks(list(mids)):  # 48-bit forms (see the schema)
            marks = ",".join("?" * len(chunk))
            known.update(
                r[0]
                for r in self.db.execute(f"SELECT mid FROM messages WHERE mid IN ({marks})", chunk)
            )
        return known

    def stats(self) -> dict[str, int]:
        """Counts and sizes for ``mailguard history stats``: never a hash, never an address."""
        db = self.db
        counts = {
            "senders": "SELECT count(*) FROM senders",
            "relationships": "SELECT count(*) FROM pairs WHERE sender != 0",
            "recipients": "SELECT count(*) FROM pairs WHERE sender = 0",
            "messages": "SELECT count(*) FROM messages",
            "threads": "SELECT count(*) FROM threads",
            "near_miss_keys": "SELECT count(*) FROM near",
            "co_recipient_pairs": "SELECT count(*) FROM co",
            "sources": "SELECT count(*) FROM sources",
            "mass_mailings": "SELECT coalesce(sum(mass), 0) FROM senders",
        }
        out = {name: int(db.execute(sql).fetchone()[0]) for name, sql in counts.items()}
        first_last = db.execute("SELECT min(first), max(last) FROM senders").fetchone()
        out["first_day"], out["last_day"] = (int(v) if v is not None else -1 for v in first_last)
        out["schema_version"] = int(db.execute("PRAGMA user_version").fetchone()[0])
        out["bytes"] = sum(_size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal", "-shm"))
        return out


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _exists(path: Path) -> bool:
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise HistoryError(f"cannot use history store {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise HistoryError(f"history store {path} is not a regular file")
    return True


def _has_meta(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
    return row.fetchone() is not None


def _empty(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def today(clock: float | None = None) -> int:
    """Days since 1970-01-01 (UTC): the unit of first/last use."""
    return int((time.time() if clock is None else clock) // 86400)
