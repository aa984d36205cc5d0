"""The config file: find ``mailguard.toml`` (or ``[tool.mailguard]`` in ``pyproject.toml``),
read it safely, and hand each section to the part of mailguard that owns it.

This module knows how a file is found and read, not what its settings mean: the decision
settings (``internal_domains``, ``rules``, ``scoring``, ``limits``, ...) are validated by
:mod:`mailguard.config`, ``[milter]`` by :mod:`mailguard.milter.settings`, and later
sections by their own owners. It only knows the *names* of the sections owned outside the
decision config (:data:`SECTIONS`), so that a misspelt top-level key is refused by every
command, not just by the one that would have used it.

Every defect of a file (missing, unreadable, not UTF-8, not TOML, a FIFO, too big) is a
:class:`ConfigError` naming the file, never a traceback and never a silent fall-back to the
defaults.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mailguard.errors import ConfigError

CONFIG_FILE = "mailguard.toml"

SECTIONS = ("milter", "dns", "approval", "proxy", "history")
"""Top-level tables owned outside the decision config: what the mail server does with a
verdict, ``[dns]`` (:mod:`mailguard.resolver`), ``[approval]``, ``[proxy]``
(:mod:`mailguard.proxy.settings`) and ``[history]`` (:mod:`mailguard.history.settings`)."""

MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""A config file larger than this is refused (a list of many domains stays far below)."""

# One logger for everything about configuration, whichever module does the reading.
log = logging.getLogger("mailguard.config")

# Whether a pyproject.toml that is not valid TOML meant to configure mailguard: any table
# header or dotted key naming tool.mailguard, however spaced or quoted.
_MAILGUARD_TABLE = re.compile(r"""\btool\s*\.\s*(?:mailguard|"mailguard"|'mailguard')(?![\w-])""")


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The mailguard table of one file (or none: the defaults), before any owner saw it."""

    data: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def where(self) -> str:
        """How error messages name this configuration."""
        return str(self.path) if self.path else "config"

    def check_keys(self, known: Iterable[str]) -> None:
        """Refuse top-level keys that no owner claims: a typo must not be a silent no-op."""
        allowed = set(known)
        unknown = set(self.data) - allowed
        if unknown:
            raise ConfigError(
                f"{self.where}: unknown key(s) {sorted(unknown)}; known: {sorted(allowed)}"
            )

    def section(self, name: str) -> Mapping[str, Any]:
        """The table ``name`` (empty if absent), for its owner to validate."""
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.where}: {name} must be a table")
        return value


def fields_table(cls: type[Any], data: Any, where: str) -> Mapping[str, Any]:
    """``data`` if it is a table whose keys are all fields of the dataclass ``cls``: what
    every section's owner checks first, so a typo fails with the keys it could have been."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    return data


def integers(cls: type[Any], data: Any, where: str) -> dict[str, int]:
    """A table of non-negative integers whose keys are the fields of ``cls`` (``[limits]``,
    ``[scoring]``), checked so that its owner can build ``cls(**table)``."""
    data = fields_table(cls, data, where)
    for key, value in data.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return dict(data)


def read(path: Path) -> ConfigFile:
    """Read ``mailguard.toml`` or the ``[tool.mailguard]`` table of a ``pyproject.toml``."""
    data: Any = _parse(path, _read(path))
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        if not isinstance(tool, Mapping):
            raise ConfigError(f"{path}: tool must be a table")
        if "mailguard" not in tool:
            raise ConfigError(f"{path}: no [tool.mailguard] table")
        data = tool["mailguard"]
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: tool.mailguard must be a table")
    return ConfigFile(data, path)


def locate(
    path: str | os.PathLike[str] | None = None,
    *,
    search_from: str | os.PathLike[str] | None = None,
) -> Path | None:
    """The file named, else the nearest one from ``search_from`` upwards, else ``None``."""
    if path is not None:
        return Path(path)
    return discover(None if search_from is None else Path(search_from))


def _read(path: Path) -> bytes:
    """The file's bytes: a regular file only, at most :data:`MAX_CONFIG_BYTES`.

    Opened non-blocking so that a FIFO named as the config cannot hang a start-up or a
    milter's reload, and checked with ``fstat`` so that ``/dev/zero`` is not read forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"cannot read config {path}: Is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"cannot read config {path}: not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # grew while being read
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB")
    return data


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    """TOML from UTF-8 bytes (TOML requires UTF-8); any defect names the file and line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 (line {line}, byte {data[exc.start]:#04x}); "
            "TOML files must be saved as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def discover(start: Path | None = None) -> Path | None:
    """Find the nearest ``mailguard.toml`` or ``pyproject.toml`` with ``[tool.mailguard]``.

    A file that cannot be examined (a directory that may not be searched, an unreadable
    ``pyproject.toml``) is a :class:`ConfigError`: it may hold the settings, and falling
    back to the defaults would silently weaken the gate.
    """
    try:
        here = (start or Path.cwd()).resolve()
    except OSError as exc:
        raise ConfigError(f"cannot search for {CONFIG_FILE}: {exc.strerror or exc}") from None
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILE
        pyproject = directory / "pyproject.toml"
        try:
            if candidate.is_file():
                return candidate
            if pyproject.is_file() and _has_tool_table(pyproject):
                return pyproject
        except OSError as exc:
            where = exc.filename or directory
            raise ConfigError(
                f"cannot search for {CONFIG_FILE} in {where}: {exc.strerror or exc} "
                "(name a file with --config, or use --no-config)"
            ) from None
    return None


def _has_tool_table(path: Path) -> bool:
    """Whether ``path`` configures mailguard; a broken file counts if it names our table.

    A broken ``pyproject.toml`` that never mentions ``tool.mailguard`` belongs to some other
    tool and is skipped (logged at debug level); one that does is loaded, so that its error
    is reported rather than the defaults used.
    """
    data = _read(path)
    try:
        parsed = _parse(path, data)
    except ConfigError as exc:
        if _MAILGUARD_TABLE.search(data.decode("utf-8", errors="replace")):
            return True
        log.debug("ignoring %s: %s; it has no [tool.mailguard] table", path, exc)
        return False
    tool = parsed.get("tool", {})
    return isinstance(tool, Mapping) and "mailguard" in tool
