"""aiosmtpd's per-connection set-up, at a fraction of its cost, with the same result.

A script sends one message per connection, so ``SMTP.__init__`` runs once per message. It
builds three tables by introspection every time: the AUTH mechanisms from
``inspect.getmembers`` of the protocol and of the handler (which evaluates some 150
attributes), the handler's ``handle_*`` hooks and the protocol's ``smtp_*`` commands from
``dir()`` of each, and reads the ``handle_EHLO`` signature. Those answers depend only on the
classes (and on an object's own attributes, which are looked at each time), so they are
worked out once per class here and handed to aiosmtpd through the names its module looks
up: ``aiosmtpd.smtp.inspect`` and ``aiosmtpd.smtp.dir`` (and ``sanitized_log``, which
does its work before asking whether the line is wanted). aiosmtpd is pinned below 1.5;
``tests/test_proxy_units.py`` checks the tables equal to those of the real introspection.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable
from typing import Any

import aiosmtpd.smtp

_PREFIXES = ("handle_", "smtp_")


def _own(obj: object, prefix: str | tuple[str, ...]) -> list[str]:
    """The object's own attribute names with ``prefix``. The protocol object has some 40
    by then and nearly never one of these: a single search of the names joined tells."""
    names = getattr(obj, "__dict__", None)
    if not names:
        return []
    try:
        joined = "\0" + "\0".join(names)
    except TypeError:  # a key that is not a string (only by writing to __dict__)
        joined = "\0" + "\0".join(map(str, names))
    prefixes = (prefix,) if isinstance(prefix, str) else prefix
    if not any(f"\0{p}" in joined for p in prefixes):
        return []
    keys = [name for name in names if isinstance(name, str)]
    return list(itertools.compress(keys, map(str.startswith, keys, itertools.repeat(prefix))))


class _AuthMembers:
    """:mod:`inspect` for aiosmtpd: ``getmembers`` returns only the ``auth_*`` members
    (all aiosmtpd keeps), bound to the object asked about; ``signature`` is cached."""

    def __init__(self) -> None:
        self._by_class: dict[type, list[str]] = {}
        self._signatures: dict[Any, inspect.Signature] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    def getmembers(self, obj: object) -> list[tuple[str, Any]]:
        cls = type(obj)
        names = self._by_class.get(cls)
        if names is None:
            names = self._by_class[cls] = [n for n in dir(cls) if n.startswith("auth_")]
        own = _own(obj, "auth_")
        return [(n, getattr(obj, n)) for n in (sorted({*names, *own}) if own else names)]

    def signature(self, func: Any) -> inspect.Signature:
        """aiosmtpd reads the handler's ``handle_EHLO`` signature per connection, too."""
        key = getattr(func, "__func__", func)
        found = self._signatures.get(key)
        if found is None:
            found = self._signatures[key] = inspect.signature(func)
        return found


class _HookNames:
    """``dir()`` for aiosmtpd, which filters it at once for ``handle_*`` (of the handler)
    and ``smtp_*`` (of the protocol): those names only, sorted as ``dir`` sorts them."""

    def __init__(self) -> None:
        self._by_class: dict[type, list[str]] = {}

    def __call__(self, obj: object) -> list[str]:
        cls = type(obj)
        names = self._by_class.get(cls)
        if names is None:
            names = self._by_class[cls] = [n for n in dir(cls) if n.startswith(_PREFIXES)]
        own = _own(obj, _PREFIXES)
        return sorted({*names, *own}) if own else names


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_sanitized_log = aiosmtpd.smtp.sanitized_log


def _quiet_sanitized_log(func: Callable[..., None], msg: str, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log`` (several per command) builds its masked argument list
    before the logger decides to drop the line; the proxy keeps ``mail.log`` at WARNING,
    so ask the logger first. A line that would be logged goes through the original."""
    logger = getattr(func, "__self__", None)
    level = _LEVELS.get(getattr(func, "__name__", ""))
    if isinstance(logger, logging.Logger) and level is not None and not logger.isEnabledFor(level):
        return
    _sanitized_log(func, msg, *args, **kwargs)


def install() -> None:
    """Point aiosmtpd's module at the cached introspection (idempotent)."""
    aiosmtpd.smtp.sanitized_log = _quiet_sanitized_log  # type: ignore[assignment]
    if not isinstance(getattr(aiosmtpd.smtp, "inspect", None), _AuthMembers):
        aiosmtpd.smtp.inspect = _AuthMembers()  # type: ignore[assignment]
    if not isinstance(getattr(aiosmtpd.smtp, "dir", None), _HookNames):
        aiosmtpd.smtp.dir = _HookNames()  # type: ignore[attr-defined]
