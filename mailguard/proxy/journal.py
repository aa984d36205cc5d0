"""The retry journal: which copies of a split message the upstream already accepted.

A split turns one client transaction into one upstream transaction per recipient. SMTP can
answer the client only once, after DATA, for all of them; if the upstream accepts 10 copies
and then drops the connection, the honest reply is a temporary failure, and the client
will send the whole message again. Without a memory the retry would deliver the first 10
copies twice. So each accepted copy is written here, keyed by the message, before the next
one is sent; a retry of the same message skips the recipients found here and delivers only
the missing copies.

- **The message key** is a keyed hash (HMAC-SHA256) of the envelope sender and the exact
  bytes the client sent: the same message sent again (a retry) matches, any change (another
  Date or Message-ID, an edited body) is a new message and is delivered in full. Keying on
  the Message-ID alone would be cheaper but could *lose* copies: scripts that reuse one
  Message-ID for different messages exist, and a lost copy is worse than a duplicate.
- **Recipients** are stored only as keyed hashes of the normalised address, never in
  clear. The key is a random 32 bytes in ``<journal>.key`` (mode 0600, beside the
  database), so whoever copies the database alone cannot test addresses against it.
- **Durability**: SQLite in WAL mode with ``synchronous=NORMAL``; each copy's row is
  committed before the next copy is sent, so a crash of the proxy loses at most the row of
  the copy in flight (that copy may then be sent twice; SMTP cannot do better).
- **Retention**: rows older than ``journal_days`` are deleted (at start and hourly), so the
  file stays small; a retry later than that delivers in full.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from mailguard import keyfile
from mailguard.errors import ConfigError

_SWEEP_INTERVAL = 3600.0


class Journal:
    """Thread-safe: the relay threads write, one lock around one connection."""

    def __init__(self, path: Path, retention_days: float = 5.0) -> None:
        self.path = path
        self.retention = retention_days * 86400.0
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._key = _load_key(keyfile.beside(path))
            # timeout: with --workers, processes take turns writing (WAL: readers never wait).
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=10.0
            )
            with contextlib.suppress(OSError):
                path.chmod(0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS copies (message BLOB NOT NULL, "
                "recipient BLOB NOT NULL, at REAL NOT NULL, PRIMARY KEY (message, recipient)) "
                "WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS copies_at ON copies (at)")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the proxy journal {path}: {exc}") from None
        self._swept = 0.0
        self.sweep()

    def message_key(self, mail_from: str, data: bytes) -> bytes:
        mac = hmac.new(self._key, b"message\0", hashlib.sha256)
        mac.update(mail_from.encode("utf-8", "surrogateescape") + b"\0")
        mac.update(data)
        return mac.digest()

    def _recipient(self, address: str) -> bytes:
        normal = address.strip().strip("<>").lower().encode("utf-8", "surrogateescape")
        return hmac.new(self._key, b"recipient\0" + normal, hashlib.sha256).digest()

    def delivered(self, message: bytes, recipients: Iterable[str]) -> set[str]:
        """The recipients among ``recipients`` whose copy of ``message`` was accepted."""
        wanted = {self._recipient(r): r for r in recipients}
        with self._lock:
            rows = self._db.execute(
                "SELECT recipient FROM copies WHERE message = ?", (message,)
            ).fetchall()
        return {wanted[row[0]] for row in rows if row[0] in wanted}

    def record(self, message: bytes, recipient: str) -> None:
        """One copy accepted by the upstream: committed before the next one is sent."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO copies VALUES (?, ?, ?)",
                (message, self._recipient(recipient), time.time()),
            )
        if time.monotonic() - self._swept > _SWEEP_INTERVAL:
            self.sweep()

    def sweep(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM copies WHERE at < ?", (time.time() - self.retention,))
            self._swept = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _load_key(path: Path) -> bytes:
    """The journal's HMAC key: created once (0600, never overwritten), then read."""
    try:
        return keyfile.read_or_create(path, "the journal key")
    except keyfile.KeyFileError as exc:
        raise ConfigError(str(exc)) from None
