"""Turning sent messages into bounded relationships in the store.

Messages are collected in batches and each batch is folded into counts in memory before
one transaction writes it (``INSERT … ON CONFLICT DO UPDATE``): a Sent folder writes to
the same few hundred people again and again, so a batch of thousands of messages becomes
a few hundred rows. A message already in the store (same hashed Message-ID, or the same
header block when it has none) is not counted twice, which makes relearning a rewritten
mbox or a folder whose UIDVALIDITY changed safe.

Bounds: a message to more than ``learn_max_recipients`` is a mass mailing (counted for the
sender, its thread kept for the reply-all rule, but no relationship learned from it);
co-recipients come only from messages to at most ``co_max_recipients``; each sender keeps at
most ``max_per_sender`` relationships and the store ``max_relationships``, the least
recently used going first; and anything unused for ``expire_days`` before the newest
learned message is forgotten (:meth:`Learner.finish`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailguard.history import near
from mailguard.history.extract import Observation
from mailguard.history.keys import Hasher
from mailguard.history.schema import pack, unpack
from mailguard.history.settings import HistorySettings
from mailguard.history.store import HistoryStore, today

BATCH = 32768
"""Messages folded per transaction. Keys are hashes, so each batch writes pages all over
the tables: large batches write each page once per batch rather than once per few
messages (a million-message run learns 17 % faster than with 4,096)."""


@dataclass
class Tally:
    """What a learning run did, for the command's summary (counts only)."""

    read: int = 0
    learned: int = 0
    duplicates: int = 0
    mass: int = 0
    no_sender: int = 0
    no_recipients: int = 0
    unreadable: int = 0
    skipped: int = 0
    """Messages not read at all because an earlier run had read them (incremental)."""
    expired: int = 0
    capped: int = 0
    notes: list[str] = field(default_factory=list)


class Learner:
    def __init__(
        self, store: HistoryStore, settings: HistorySettings, clock: float | None = None
    ) -> None:
        self.store = store
        self.h = store.hash
        self.settings = settings
        self.today = today(clock)
        self.tally = Tally()
        self.newest = -1
        self._batch: list[Observation] = []
        self._known_addrs: set[int] = set()

    def add(self, obs: Observation) -> None:
        self.tally.read += 1
        if obs.sender is None:
            self.tally.no_sender += 1
            return
        if not obs.recipients:
            self.tally.no_recipients += 1
            return
        self._batch.append(obs)
        if len(self._batch) >= BATCH:
            self.flush()

    def add_all(self, observations: Iterable[Observation]) -> None:
        for obs in observations:
            self.add(obs)

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        h, mid_kind = self.h, Hasher.MESSAGE_ID
        mids = [h(mid_kind, o.message_id) >> 16 for o in batch]  # 48 bits: see the schema
        known = self.store.known_messages(mids)
        # A reply joins the thread its parent was filed under, also when it names only
        # its parent (In-Reply-To without References): parents learned earlier, or
        # earlier in this batch.
        parents = {h(mid_kind, o.parents[0]) >> 16 for o in batch if o.parents}
        roots = self.store.roots_of(parents)
        fold = _Fold(self.settings)
        clear: dict[int, str] = {}
        for obs, mid in zip(batch, mids, strict=True):
            if mid in known:
                self.tally.duplicates += 1
                continue
            known.add(mid)
            day = obs.day if obs.day is not None else self.today
            self.newest = max(self.newest, day)
            sender = h(Hasher.ADDRESS, obs.sender or "")
            root = mid
            if obs.parents:
                parent = h(mid_kind, obs.parents[0]) >> 16
                root = roots.get(parent) or h(mid_kind, obs.root) >> 16
            roots[mid] = root
            mass = len(obs.recipients) > self.settings.learn_max_recipients
            self.tally.mass += mass
            self.tally.learned += 1
            if mass:  # only counted: its recipients are not hashed, let alone kept
                fold.message(sender, [], mid, root, day, True, len(obs.recipients))
                continue
            rcpts = [h(Hasher.ADDRESS, r) for r in obs.recipients]
            clear.update(zip(rcpts, obs.recipients, strict=True))
            fold.message(sender, rcpts, mid, root, day, False, len(rcpts))
        new = {r: a for r, a in clear.items() if r not in self._known_addrs}
        new_addrs = self._missing(new)
        with self.store.transaction() as db:
            fold.write(db)
            rows = []
            near_rows = []
            for rcpt, addr in new_addrs.items():
                local, domain = near.split_address(addr)
                rows.append((rcpt, h(Hasher.LOCAL, local), fold.last_of(rcpt)))
                near_rows += [(v, rcpt) for v in near.variants(h, local, domain)]
            db.executemany("INSERT OR IGNORE INTO addrs VALUES (?, ?, ?)", rows)
            db.executemany("INSERT OR IGNORE INTO near VALUES (?, ?)", near_rows)
            db.executemany(
                "UPDATE addrs SET last = max(last, ?) WHERE rcpt = ?",
                [(fold.last_of(r), r) for r in clear if r not in new_addrs],
            )
        self._known_addrs.update(clear)
        if len(self._known_addrs) > 1_000_000:
            self._known_addrs.clear()

    def _missing(self, candidates: dict[int, str]) -> dict[int, str]:
        """Those of ``candidates`` the store has no near-miss keys for yet."""
        if not candidates:
            return {}
        keys = list(candidates)
        present: set[int] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            present.update(
                r[0]
                for r in self.store.db.execute(
                    f"SELECT rcpt FROM addrs WHERE rcpt IN ({marks})", chunk
                )
            )
        self._known_addrs.update(present)
        return {r: a for r, a in candidates.items() if r not in present}

    def finish(self) -> Tally:
        """Write what is left, then apply expiry and the caps."""
        self.flush()
        newest = self.store.db.execute("SELECT max(last) FROM senders").fetchone()[0]
        reference = min(self.today, newest if newest is not None else self.today)
        cutoff = reference - self.settings.expire_days
        with self.store.transaction() as db:
            self.tally.expired = _expire(db, cutoff)
            self.tally.capped = _cap(db, self.settings)
        return self.tally


class _Fold:
    """One batch folded into the rows it adds to each table."""

    def __init__(self, settings: HistorySettings) -> None:
        self.settings = settings
        self.senders: dict[int, list[int]] = {}
        self.pairs: dict[tuple[int, int], list[int]] = {}
        self.co: dict[tuple[int, int], list[int]] = {}
        self.messages: list[tuple[int, int | None, int]] = []
        self.threads: dict[int, list[int]] = {}
        self.members: dict[int, set[int]] = {}
        self._last: dict[int, int] = {}

    def last_of(self, rcpt: int) -> int:
        return self._last[rcpt]

    def message(
        self, sender: int, rcpts: list[int], mid: int, root: int, day: int, mass: bool, size: int
    ) -> None:
        s = self.senders.get(sender)
        if s is None:
            self.senders[sender] = [1, int(mass), day, day]
        else:
            s[0] += 1
            s[1] += mass
            s[2] = min(s[2], day)
            s[3] = max(s[3], day)
        self.messages.append((mid, None if root == mid else root, day))
        t = self.threads.get(root)
        if t is None:
            self.threads[root] = [sender, 1, size, day]
        else:
            if t[0] != sender:
                t[1] = 2
            t[2] = max(t[2], size)
            t[3] = max(t[3], day)
        if mass:
            return
        # The hot loop of learning: plain comparisons, no calls (days mostly rise).
        pairs, last = self.pairs, self._last
        for r in rcpts:
            for key in ((sender, r), (0, r)):
                p = pairs.get(key)
                if p is None:
                    pairs[key] = [1, day, day]
                else:
                    p[0] += 1
                    if day > p[2]:
                        p[2] = day
                    elif day < p[1]:
                        p[1] = day
            if last.get(r, -1) < day:
                last[r] = day
        members = self.members.get(root)
        if members is None:
            members = self.members[root] = set()
        if len(members) < self.settings.thread_max_members:
            members.add(sender & 0xFFFFFFFF)  # schema.short, inline
            members.update([r & 0xFFFFFFFF for r in rcpts])
        if 1 < len(rcpts) <= self.settings.co_max_recipients:
            co = self.co
            ordered = sorted(rcpts)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    c = co.get((a, b))
                    if c is None:
                        co[(a, b)] = [1, day]
                    else:
                        c[0] += 1
                        if day > c[1]:
                            c[1] = day

    def write(self, db: sqlite3.Connection) -> None:
        execute = db.executemany
        execute(
            "INSERT INTO senders VALUES (?, ?, ?, ?, ?) ON CONFLICT (sender) DO UPDATE SET "
            "messages = messages + excluded.messages, mass = mass + excluded.mass, "
            "first = min(first, excluded.first), last = max(last, excluded.last)",
            [(k, *v) for k, v in sorted(self.senders.items())],
        )
        execute(
            "INSERT INTO pairs VALUES (?, ?, ?, ?, ?) ON CONFLICT (sender, rcpt) DO UPDATE SET "
            "n = n + excluded.n, first = min(first, excluded.first), "
            "last = max(last, excluded.last)",
            [(s, r, *v) for (s, r), v in sorted(self.pairs.items())],
        )
        execute(
            "INSERT INTO co VALUES (?, ?, ?, ?) ON CONFLICT (a, b) DO UPDATE SET "
            "n = n + excluded.n, last = max(last, excluded.last)",
            [(a, b, *v) for (a, b), v in sorted(self.co.items())],
        )
        # In key order: a batch then walks each table's B-tree once, page after page.
        execute("INSERT OR IGNORE INTO messages VALUES (?, ?, ?)", sorted(self.messages))
        self._write_threads(db)

    def _write_threads(self, db: sqlite3.Connection) -> None:
        """Merge this batch's threads with the stored ones (members are packed in a row)."""
        roots = sorted(self.threads)
        stored: dict[int, tuple[int, int, int, int, bytes]] = {}
        for start in range(0, len(roots), 500):
            chunk = roots[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(
                f"SELECT root, first_sender, senders, size, last, members FROM threads "
                f"WHERE root IN ({marks})",
                chunk,
            ):
                stored[row[0]] = row[1:]
        cap = self.settings.thread_max_members
        rows = []
        for root in roots:
            first, senders, size, last = self.threads[root]
            members = self.members.get(root, set())
            old = stored.get(root)
            if old is not None:
                if old[1] == 0 or old[0] != first:
                    senders = 2 if old[1] != 0 else 0
                else:
                    senders = max(senders, old[1])
                first, size, last = old[0], max(size, old[2]), max(last, old[3])
                known = unpack(old[4])
                members = known | set(list(members - known)[: max(0, cap - len(known))])
            rows.append((root, first, senders, size, last, pack(sorted(members))))
        db.executemany("INSERT OR REPLACE INTO threads VALUES (?, ?, ?, ?, ?, ?)", rows)


def _expire(db: sqlite3.Connection, cutoff: int) -> int:
    run = db.execute
    expired = run("DELETE FROM pairs WHERE last < ?", (cutoff,)).rowcount
    run("DELETE FROM co WHERE last < ?", (cutoff,))
    run("DELETE FROM messages WHERE day < ?", (cutoff,))
    run("DELETE FROM threads WHERE last < ?", (cutoff,))
    stale = run("SELECT count(*) FROM addrs WHERE last < ?", (cutoff,)).fetchone()[0]
    if stale:
        run("DELETE FROM near WHERE rcpt IN (SELECT rcpt FROM addrs WHERE last < ?)", (cutoff,))
        run("DELETE FROM addrs WHERE last < ?", (cutoff,))
    return int(expired)


def _cap(db: sqlite3.Connection, settings: HistorySettings) -> int:
    """Drop the least recently used relationships over the per-sender and total caps."""
    run = db.execute
    dropped = 0
    over = run(
        "SELECT sender, count(*) FROM pairs WHERE sender != 0 GROUP BY sender HAVING count(*) > ?",
        (settings.max_per_sender,),
    ).fetchall()
    for sender, n in over:
        dropped += run(
            "DELETE FROM pairs WHERE sender = ? AND rcpt IN (SELECT rcpt FROM pairs "
            "WHERE sender = ? ORDER BY last, n LIMIT ?)",
            (sender, sender, n - settings.max_per_sender),
        ).rowcount
    total = run("SELECT count(*) FROM pairs WHERE sender != 0").fetchone()[0]
    if total > settings.max_relationships:
        dropped += run(
            "DELETE FROM pairs WHERE sender != 0 AND (sender, rcpt) IN (SELECT sender, rcpt "
            "FROM pairs WHERE sender != 0 ORDER BY last, n LIMIT ?)",
            (total - settings.max_relationships,),
        ).rowcount
    return int(dropped)
