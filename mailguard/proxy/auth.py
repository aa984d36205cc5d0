"""Client logins for the proxy: a users file of ``user:hash`` lines, never clear text.

The hash is scrypt (stdlib ``hashlib.scrypt``, memory-hard) with a random salt, written as
``scrypt$N$r$p$salt$hash`` (base64): a stolen users file does not give the passwords away,
and every parameter travels with the hash so it can be raised later without breaking old
lines. ``mailguard proxy --hash-password`` prints such a line.

One check costs about 50 ms of CPU by design, and aiosmtpd asks for it on the event loop;
so a login that succeeded is remembered for ten minutes under a keyed hash of user and
password (a process-random key, memory only), and a script that logs in for every message
pays the cost once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stat
import time
from pathlib import Path

from mailguard.errors import ConfigError

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MAX_USERS_BYTES = 4 * 1024 * 1024
_REMEMBER = 600.0


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT, dklen=32)
    params = f"{SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}"
    return f"scrypt${params}${_b64(salt)}${_b64(digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def verify_password(password: bytes, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(
            password, salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r), p=int(p),
            dklen=len(want), maxmem=256 * 1024 * 1024,
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


class Users:
    """The users file, read once at start (restart the proxy after editing it)."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = entries
        self._key = secrets.token_bytes(32)
        self._recent: dict[bytes, float] = {}

    @classmethod
    def load(cls, path: Path) -> Users:
        try:
            info = path.stat()
            if info.st_size > MAX_USERS_BYTES or not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{path}: not a regular users file (or over 4 MiB)")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the users file {path}: {exc}") from None
        entries: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, stored = line.partition(":")
            if not sep or not stored.startswith("scrypt$") or stored.count("$") != 5:
                raise ConfigError(
                    f"{path}, line {number}: expected user:scrypt$... "
                    "(make one with `mailguard proxy --hash-password`)"
                )
            entries[user] = stored
        if not entries:
            raise ConfigError(f"{path}: no users")
        return cls(entries)

    def check(self, login: bytes, password: bytes) -> bool:
        user = login.decode("utf-8", "replace")
        stored = self.entries.get(user)
        if stored is None:
            return False
        token = hmac.new(self._key, login + b"\0" + password, hashlib.sha256).digest()
        now = time.monotonic()
        if now - self._recent.get(token, -_REMEMBER) < _REMEMBER:
            return True
        if not verify_password(password, stored):
            return False
        if len(self._recent) > 10_000:
            self._recent.clear()
        self._recent[token] = now
        return True
