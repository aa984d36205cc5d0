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
import os
import secrets
import stat
from pathlib import Path

from mailguard.errors import MailguardError

KEY_BYTES = 32
KEY_SUFFIX = ".key"


class HistoryError(MailguardError):
    """The history store or its key cannot be used (missing, corrupt, locked, unsafe)."""


def key_path(store: Path) -> Path:
    """Where the key of ``store`` lives: beside it, ``<store>.key``."""
    return store.with_name(store.name + KEY_SUFFIX)


def create_key(path: Path) -> bytes:
    """Write a new random key with mode 0600 (created exclusively: never overwrites one)."""
    key = secrets.token_bytes(KEY_BYTES)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise HistoryError(f"cannot create the history key {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        os.write(fd, key.hex().encode("ascii") + b"\n")
    finally:
        os.close(fd)
    return key


def read_key(path: Path) -> bytes:
    """The key in ``path``; refused when missing, malformed or readable by others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise HistoryError(
            f"cannot read the history key {path}: {exc.strerror} (it is created with the "
            "store by `mailguard learn`; a store without its key cannot be used)"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HistoryError(f"the history key {path} is not a regular file")
        if info.st_mode & 0o077:
            raise HistoryError(
                f"the history key {path} may be read by others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}` and try again"
            )
        text = os.read(fd, 4 * KEY_BYTES)
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise HistoryError(f"the history key {path} is malformed (not {KEY_BYTES} hex bytes)")
    return key


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
