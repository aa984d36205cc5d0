"""Approval keys: the secret files an ops team signs approvals with, and the ``[approval]``
section that names the keys the gate accepts.

A key is 32 random bytes and a key id, in a small TOML file written with mode 0600 that is
never overwritten. Whoever can read a key can approve any message, so a key file that its
group or others may read (or write) is refused when it is loaded, as ``ssh`` refuses a
private key. Several keys may be configured at once: that is how a key is rotated (add the
new one, sign with it, remove the old one once its approvals have expired).

Nothing here ever puts key material into an exception, a ``repr`` or a log line: errors
name the file and what is wrong with it, never its content. (Tests grep for that.)
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailguard import configfile
from mailguard.configfile import ConfigFile
from mailguard.errors import ConfigError

KEY_BYTES = 32
MAX_KEY_FILE_BYTES = 4096
"""A key file is a few lines; anything larger is not one (and is not read whole)."""
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a key id may be: it appears in approval fields, reports and log lines."""
_FORMAT = "mailguard-approval-key-1"


class KeyFileError(ConfigError):
    """A key file cannot be written or used. The message names the file, never its content."""


@dataclass(frozen=True, slots=True, repr=False)
class Key:
    """One approval key. ``repr`` and ``str`` show the id only."""

    id: str
    secret: bytes = field(compare=False)
    path: Path | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"Key(id={self.id!r}, path={str(self.path) if self.path else None!r})"

    __str__ = __repr__


def check_key_id(key_id: str) -> str:
    if not KEY_ID.fullmatch(key_id):
        raise KeyFileError(
            f"key id {key_id!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return key_id


def new_key(key_id: str | None = None, now: float | None = None) -> Key:
    """A fresh random key; the default id tells its creation day (useful when rotating)."""
    if key_id is None:
        day = time.strftime("%Y%m%d", time.gmtime(time.time() if now is None else now))
        key_id = f"{day}-{secrets.token_hex(4)}"
    return Key(check_key_id(key_id), secrets.token_bytes(KEY_BYTES))


def write_key(path: Path, key: Key, now: float | None = None) -> None:
    """Create ``path`` holding ``key``, mode 0600; an existing file is never overwritten.

    ``O_EXCL`` makes the refusal atomic (no window in which another process's file is
    replaced) and ``O_NOFOLLOW`` refuses a symlink planted where the key should go.
    """
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    text = (
        "# mailguard approval key: whoever can read this file can approve any message.\n"
        "# Keep it mode 0600, owned by the account that signs or checks approvals.\n"
        f'format = "{_FORMAT}"\n'
        f'id = "{key.id}"\n'
        f'created = "{created}"\n'
        f'secret = "{base64.b64encode(key.secret).decode("ascii")}"\n'
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists: refusing to overwrite a key (an approval signed with it "
            "would stop verifying); choose another file name, or delete it first"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask made of it
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)


def read_key(path: Path) -> Key:
    """The key in ``path``; refused when group or others may read or write the file."""
    data = _read_private(path)
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        # The parser's message may quote the line it stopped at: the secret's line.
        raise KeyFileError(f"{path}: not a mailguard approval key file") from None
    if doc.get("format") != _FORMAT:
        raise KeyFileError(f"{path}: not a mailguard approval key file (no format = {_FORMAT})")
    key_id, encoded = doc.get("id"), doc.get("secret")
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise KeyFileError(f"{path}: the key id is missing or not a valid key id")
    try:
        secret = base64.b64decode(encoded if isinstance(encoded, str) else "", validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != KEY_BYTES:
        raise KeyFileError(f"{path}: the secret is missing or not {KEY_BYTES} bytes of base64")
    return Key(key_id, secret, path)


def _read_private(path: Path) -> bytes:
    """The bytes of a regular file that only its owner may read, bounded in size.

    The mode is checked on the opened file (``fstat``), not the name: no swap between the
    check and the read. Non-blocking, so a FIFO named as a key cannot hang a start-up.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise KeyFileError(f"cannot read approval key {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"approval key {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"approval key {path} has mode {mode:04o}: group or others may read or change "
                f"it, so it is refused; run `chmod 600 {path}` (and keep it owned by the "
                "account that uses it)"
            )
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: not a mailguard approval key file (too large)")
        return os.read(fd, MAX_KEY_FILE_BYTES + 1)[:MAX_KEY_FILE_BYTES]
    except OSError as exc:
        raise KeyFileError(f"cannot read approval key {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


class Keyring:
    """The keys approvals are accepted from, by id. Shows ids only, never secrets."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self._keys: dict[str, Key] = {}
        for key in keys:
            other = self._keys.get(key.id)
            if other is not None:
                raise KeyFileError(
                    f"two approval keys have the id {key.id!r} ({other.path} and {key.path}): "
                    "an approval must name exactly one key"
                )
            self._keys[key.id] = key

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> Keyring:
        return cls(read_key(path) for path in paths)

    def get(self, key_id: str) -> Key | None:
        return self._keys.get(key_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self._keys)!r})"


@dataclass(frozen=True, slots=True)
class ApprovalSettings:
    """The ``[approval]`` table."""

    keys: tuple[str, ...] = ()
    """Key files whose approvals are accepted (relative paths: from the config file's
    folder). Several at once while a key is being rotated."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], where: str = "config") -> ApprovalSettings:
        table = configfile.fields_table(cls, data, f"{where}: approval")
        keys = table.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError(f"{where}: approval.keys must be a list of key file paths")
        return cls(tuple(keys))

    def paths(self, base: Path | None) -> list[Path]:
        expanded = [Path(k).expanduser() for k in self.keys]
        return [base / k if base is not None else k for k in expanded]

    def keyring(self, base: Path | None = None) -> Keyring:
        """The keys, read now: a file that is missing or open to others is a ConfigError."""
        return Keyring.from_files(self.paths(base))


def from_file(file: ConfigFile) -> tuple[ApprovalSettings, Keyring]:
    """``[approval]`` validated and its keys read (every load: a reload rotates keys)."""
    settings = ApprovalSettings.from_mapping(file.section("approval"), file.where)
    base = file.path.parent if file.path is not None else None
    return settings, settings.keyring(base)
