"""The history key: one secret per store, in a 0600 file beside it, and the keyed hashes.

Why HMAC and not a plain hash: addresses are guessable (a plain SHA-256 of
``bob@example.org`` is reversed by hashing a list of likely addresses), but without the
key nothing in the store can be tested against a guess. The key is therefore treated like
a password: created with mode 0600, refused when others may read it, never printed, never
put in an error message or a log line. Whoever holds both the store and the key can test
guesses — the same as anyone who can read the mail it was learned from.

64 bits of each HMAC are kept (SQLite stores them as one INTEGER, 8 bytes): at a million
distinct values the chance of any collision is about 3 in 100 million.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from mailguard import keyfile
from mailguard.errors import MailguardError


class HistoryError(MailguardError):
    """The history store or its key cannot be used (missing, corrupt, locked, unsafe)."""


def key_path(store: Path) -> Path:
    """Where the key of ``store`` lives: beside it, ``<store>.key``."""
    return keyfile.beside(store)


def create_key(path: Path) -> bytes:
    """Write a new random key with mode 0600 (created exclusively: never overwrites one)."""
    try:
        return keyfile.create(path, "the history key")
    except keyfile.KeyFileError as exc:
        raise HistoryError(str(exc)) from None


def read_key(path: Path) -> bytes:
    """The key in ``path``; refused when missing, malformed or readable by others."""
    missing = (
        " (it is created with the store by `mailguard learn`; a store without its key "
        "cannot be used)"
    )
    try:
        return keyfile.read(path, "the history key", missing)
    except keyfile.KeyFileError as exc:
        raise HistoryError(str(exc)) from None


class Hasher:
    """Keyed 64-bit hashes, one domain-separated family per kind of value.

    The kinds keep an address, a local part and a Message-ID with the same text from
    hashing alike, so one table's values say nothing about another's.
    """

    __slots__ = ("_base", "_caches")

    ADDRESS = b"a"
    LOCAL = b"l"
    DOMAIN = b"d"
    NEAR_LOCAL = b"L"
    NEAR_DOMAIN = b"D"
    SKELETON = b"S"
    MESSAGE_ID = b"m"
    SOURCE = b"s"
    NAME = b"n"

    def __init__(self, key: bytes) -> None:
        # The keyed state is made once and copied per value: a third faster than hmac.digest.
        self._base = hmac.new(key, digestmod=hashlib.sha256)
        self._caches: dict[bytes, dict[str, int]] = {}

    def __repr__(self) -> str:  # never the key, whatever prints this object
        return "Hasher(<key withheld>)"

    def __call__(self, kind: bytes, text: str) -> int:
        """The signed 64-bit hash of ``text`` as ``kind`` (a SQLite INTEGER); never 0."""
        cache = self._caches.get(kind)
        if cache is None:
            cache = self._caches[kind] = {}
        cached = cache.get(text)
        if cached is not None:
            return cached
        value = self.fresh(kind + text.encode("utf-8", "surrogatepass"))
        if len(cache) >= 131072:  # bounded: a long learning run sees millions
            cache.clear()
        cache[text] = value
        return value

    def fresh(self, data: bytes) -> int:
        """The hash of ``kind + text`` bytes, not cached (for thousands of one-off guesses)."""
        mac = self._base.copy()
        mac.update(data)
        return int.from_bytes(mac.digest()[:8], "big", signed=True) or 1
