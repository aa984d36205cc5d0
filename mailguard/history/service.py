"""The history as the rules see it (``Services(history=...)``): thread-safe, and never the
reason a decision fails.

Commands open the store at start, so a missing, corrupt, locked or foreign store stops
them there (exit status 2). Later, while a milter runs for weeks, the file can still go
bad (a disk error, someone replacing it); then every question raises
:class:`HistoryUnavailable`, which the checks turn into a ``skipped`` note, the decision is
made without the history rules, and :attr:`HistoryService.state` says ``unavailable`` for
the milter's log line. Nothing here logs an address: the store holds none, and the
addresses asked about are hashed before any query.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mailguard.history import near
from mailguard.history.extract import observe
from mailguard.history.keys import Hasher, HistoryError
from mailguard.history.learner import Learner
from mailguard.history.schema import short
from mailguard.history.settings import HistorySettings
from mailguard.history.store import HistoryStore, Thread

log = logging.getLogger("mailguard.history")

T = TypeVar("T")

COMPACT_EVERY = 10_000
"""The milter applies expiry and caps after this many learned messages (each time a scan
of the store, so not per message)."""


class HistoryUnavailable(Exception):
    """The store could not answer; the rules that need it do not run for this message."""


@dataclass(frozen=True, slots=True)
class NearMiss:
    kind: str
    """One of :data:`mailguard.history.near.KINDS`."""
    target: int
    """The hash of the familiar address it is near."""
    own: bool
    """Familiar to the sender (else only to the organisation)."""


class HistoryService:
    def __init__(self, store: HistoryStore, settings: HistorySettings | None = None) -> None:
        self.store = store
        self.settings = settings or HistorySettings()
        self.hash: Hasher = store.hash
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._learner: Learner | None = None
        self._learned = 0

    @classmethod
    def open(cls, settings: HistorySettings, path: str | Path | None = None) -> HistoryService:
        """Open the store of ``settings`` (or ``path``), writable only when ``learn``."""
        where = path or settings.store
        if where is None:
            raise HistoryError("no history store given (--history PATH or [history] store)")
        store = HistoryStore.open(where, write=settings.learn, busy_timeout=settings.busy_timeout)
        return cls(store, settings)

    @property
    def state(self) -> str:
        """``ok``, or ``unavailable`` once the store failed (for the milter's log line)."""
        return "ok" if self._failure is None else "unavailable"

    def close(self) -> None:
        with self._lock:
            if self._learner is not None:
                self._finish_learning()
            self.store.close()

    def _ask(self, question: Callable[..., T], *args: Any) -> T:
        with self._lock:
            try:
                return question(*args)
            except (sqlite3.Error, HistoryError) as exc:
                if self._failure is None:
                    log.error("history store %s is unreadable; deciding without the history "
                              "rules until it is fixed: %s", self.store.path, exc)  # fmt: skip
                self._failure = str(exc)
                raise HistoryUnavailable(str(exc)) from None

    # ------------------------------------------------------------------ questions

    def address(self, addr: str) -> int:
        return self.hash(Hasher.ADDRESS, addr)

    def sender_messages(self, sender: str) -> int:
        return int(self._ask(self.store.sender_messages, self.address(sender)))

    def familiar(self, sender: str, rcpts: Sequence[str]) -> tuple[set[str], set[str]]:
        """Which of ``rcpts`` the sender has written to, and which the organisation has."""
        by_hash = {self.address(r): r for r in rcpts}
        mine, org = self._ask(self.store.familiar, self.address(sender), list(by_hash))
        return {by_hash[h] for h in mine}, {by_hash[h] for h in org}

    def near_miss(self, typed: str, sender: str, org_wide: bool) -> NearMiss | None:
        """A familiar address ``typed`` is a near miss of (the sender's own first)."""
        local, domain = near.split_address(typed)
        if not local or not domain:
            return None
        variants = near.variants(self.hash, local, domain)
        own_hash = self.address(typed)

        def lookup() -> NearMiss | None:
            found: dict[int, str] = {}
            for variant, rcpt in self.store.near(list(variants)):
                if rcpt != own_hash:
                    found.setdefault(rcpt, variants[variant])
            if near.personal_local(local):
                for rcpt in self.store.same_local(self.hash(Hasher.LOCAL, local)):
                    if rcpt != own_hash:
                        found.setdefault(rcpt, near.SAME_LOCAL)
            if not found:
                return None
            mine, org = self.store.familiar(self.address(sender), list(found))
            for rcpt in sorted(found, key=lambda r: _KIND_ORDER[found[r]]):
                # The same name at another domain is a near miss only of the sender's own
                # contacts: common names recur across the organisation's address book.
                if rcpt in mine or (org_wide and rcpt in org and found[rcpt] != near.SAME_LOCAL):
                    return NearMiss(found[rcpt], rcpt, rcpt in mine)
            return None

        result: NearMiss | None = self._ask(lookup)
        return result

    def suggest(self, typed: str, miss: NearMiss, known_domains: Iterable[str]) -> str | None:
        """The familiar address in clear, rebuilt from ``typed`` (see :func:`near.suggest`)."""
        return near.suggest(self.hash, miss.target, typed, miss.kind, known_domains)

    def thread(self, ids: Sequence[str]) -> Thread | None:
        hashed = [self.hash(Hasher.MESSAGE_ID, i) for i in ids]
        result: Thread | None = self._ask(self.store.thread, hashed)
        return result

    def on_thread(self, thread: Thread, addr: str) -> bool:
        return short(self.address(addr)) in thread.members

    def co_recipients(self, rcpt: str, others: Sequence[str]) -> int:
        return int(
            self._ask(
                self.store.co_recipients, self.address(rcpt), [self.address(o) for o in others]
            )
        )

    # ------------------------------------------------------------------ learning

    def learn(self, raw: bytes) -> None:
        """Record one accepted outgoing message (the milter's ``learn = true``).

        A failure is logged and marks the store unavailable; it never reaches the mail.
        """
        if not self.store.writable:
            return
        with self._lock:
            try:
                if self._learner is None:
                    self._learner = Learner(self.store, self.settings)
                self._learner.add(observe(raw))
                self._learner.flush()
                self._learned += 1
                if self._learned % COMPACT_EVERY == 0:
                    self._finish_learning()
            except (sqlite3.Error, HistoryError) as exc:
                if self._failure is None:
                    log.error("cannot record in the history store %s: %s", self.store.path, exc)
                self._failure = str(exc)

    def _finish_learning(self) -> None:
        learner, self._learner = self._learner, None
        if learner is not None:
            learner.finish()


_KIND_ORDER = {near.LOCAL_EDIT: 0, near.DOMAIN_EDIT: 1, near.HOMOGLYPH: 2, near.SAME_LOCAL: 3}
