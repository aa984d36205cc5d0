"""``[history]``: where the store is and how learning is bounded (owned and checked here)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from mailguard import configfile
from mailguard.configfile import ConfigFile
from mailguard.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HistorySettings:
    store: str | None = None
    """The store file; ``None``: no history (rules that need it are skipped)."""
    learn: bool = False
    """The milter records accepted outgoing mail in the store (else it only reads it)."""
    learn_max_recipients: int = 50
    """A message to more recipients is a mass mailing: counted, not learned as relationships."""
    max_per_sender: int = 5000
    """Relationships kept per sender; beyond it the least recently used go first."""
    max_relationships: int = 2_000_000
    """Relationships kept in all; beyond it the least recently used go first."""
    expire_days: int = 730
    """Relationships, threads and addresses unused this long (before the newest learned
    message) are forgotten."""
    co_max_recipients: int = 10
    """Co-recipients are learned from messages to at most this many recipients."""
    thread_max_members: int = 100
    """Members kept per thread."""
    busy_timeout: float = 5.0
    """Seconds to wait for another process that is writing the store."""


_INTS = {
    "learn_max_recipients": 1, "max_per_sender": 1, "max_relationships": 1, "expire_days": 1,
    "co_max_recipients": 2, "thread_max_members": 1,
}  # fmt: skip


def from_file(file: ConfigFile) -> HistorySettings:
    where = f"{file.where}: history"
    data = configfile.fields_table(HistorySettings, file.section("history"), where)
    return from_mapping(data, where, file)


def from_mapping(data: Any, where: str, file: ConfigFile | None = None) -> HistorySettings:
    values: dict[str, Any] = {}
    for f in fields(HistorySettings):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "store":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}.store: expected a path, got {value!r}")
            if file is not None and file.path is not None:
                value = str(file.path.parent / value)  # relative to the config file
        elif f.name == "learn":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.learn: expected true or false, got {value!r}")
        elif f.name == "busy_timeout":
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{where}.busy_timeout: expected seconds, got {value!r}")
            value = float(value)
        else:
            low = _INTS[f.name]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{where}.{f.name}: expected an integer >= {low}, got {value!r}")
        values[f.name] = value
    return replace(HistorySettings(), **values)
