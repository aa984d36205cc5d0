"""HMAC keys kept in a file beside the store they key: the history store, the scan state,
the proxy's retry journal. Each store holds addresses only as keyed hashes; the key is what
makes those hashes useless to whoever copies the store alone.

One implementation, so every store refuses the same unsafe files: a key is created
exclusively with mode 0600 (never overwritten, whatever the umask), read only from a
regular file (a FIFO or a device in its place never blocks a command) that nobody else may
read, and never printed. (Approval keys carry a key id and live in their own format:
:mod:`mailguard.approval_keys`.)
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from mailguard.errors import MailguardError

KEY_BYTES = 32
SUFFIX = ".key"


class KeyFileError(MailguardError):
    """A key file cannot be created or used (missing, malformed, unsafe)."""


def beside(store: Path) -> Path:
    """Where the key of ``store`` lives: ``<store>.key``."""
    return store.with_name(store.name + SUFFIX)


def create(path: Path, what: str) -> bytes:
    """Write a new random key (hex) with mode 0600; never overwrites one. ``what`` names the
    key in errors ("the history key")."""
    key = secrets.token_bytes(KEY_BYTES)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot create {what} {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        os.write(fd, key.hex().encode("ascii") + b"\n")
    finally:
        os.close(fd)
    return key


def read(path: Path, what: str, missing: str = "") -> bytes:
    """The key in ``path``; refused when missing (``missing`` says what to do then),
    not a regular file, malformed or readable by others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}{missing}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"{what} {path} may be read by others (mode "
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
        raise KeyFileError(f"{what} {path} is malformed (not {KEY_BYTES} hex bytes)")
    return key


def read_or_create(path: Path, what: str) -> bytes:
    """The key in ``path``, made on first use."""
    try:
        return create(path, what)
    except KeyFileError:
        if not os.path.lexists(path):
            raise
    return read(path, what)
