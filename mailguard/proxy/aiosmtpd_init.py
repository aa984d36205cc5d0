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

import asyncio
import inspect
import itertools
import logging
import socket
import ssl
import warnings
from collections.abc import Callable, Iterable
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


# ------------------------------------------------------------------ the tables, per class

_Recipe = list[tuple[str, str]]
_recipes: dict[tuple[type, str], _Recipe] = {}


def _recipe(obj: object, prefix: str) -> _Recipe:
    """(key, attribute) pairs of aiosmtpd's table for ``prefix`` (``smtp_``, ``handle_``),
    in its order, worked out once per class (for an object without such attributes of its
    own: :func:`build_tables` asks)."""
    cls = type(obj)
    found = _recipes.get((cls, prefix))
    if found is None:
        names = [n for n in dir(cls) if n.startswith(prefix)]
        found = _recipes[(cls, prefix)] = [(n.replace(prefix, ""), n) for n in names]
    return found


_auth_recipes: dict[tuple[type, type], list[tuple[str, str, bool]] | None] = {}


def _auth_recipe(smtp: object, handler: object) -> list[tuple[str, str, bool]] | None:
    """(mechanism, attribute, is_builtin) of aiosmtpd's AUTH table, once per pair of
    classes, for objects without ``auth_*`` attributes of their own; None (run aiosmtpd's
    own comprehension) unless every ``auth_*`` member is a plain function of the class,
    whose mechanism name cannot differ between objects."""
    key = (type(smtp), type(handler))
    if key not in _auth_recipes:
        recipe: list[tuple[str, str, bool]] | None = []
        for obj in (smtp, handler):
            for name in dir(type(obj)):
                if not name.startswith("auth_"):
                    continue
                func = inspect.getattr_static(type(obj), name)
                if not inspect.isfunction(func):
                    recipe = None
                    break
                mech = getattr(func, "__auth_mechanism_name__",
                               name.replace("auth_", "").replace("__", "-"))  # fmt: skip
                recipe.append((mech, name, obj is smtp))  # type: ignore[union-attr]
            if recipe is None:
                break
        _auth_recipes[key] = recipe
    return _auth_recipes[key]


def build_tables(smtp: aiosmtpd.smtp.SMTP, handler: Any) -> tuple[dict[str, Any], ...]:
    """aiosmtpd's ``_auth_methods``, ``_handle_hooks`` and ``_smtp_methods`` for ``smtp``,
    equal to what ``SMTP.__init__`` computes (``tests/test_proxy_units.py`` compares them),
    from per-class recipes: one ``getattr`` per entry instead of a scan of every name."""
    attr = aiosmtpd.smtp._AuthMechAttr
    plain = handler is not smtp and not (
        _own(smtp, ("smtp_", "auth_")) or _own(handler, ("handle_", "auth_"))
    )
    auth = _auth_recipe(smtp, handler) if plain else None
    if auth is None:
        auth_methods = {
            getattr(f, "__auth_mechanism_name__", n.replace("auth_", "").replace("__", "-")):
                attr(f, obj is smtp)
            for obj in (smtp, handler)
            for n, f in inspect.getmembers(obj)
            if n.startswith("auth_")
        }  # fmt: skip
    else:
        auth_methods = {m: attr(getattr(smtp if own else handler, n), own) for m, n, own in auth}
    tables: list[dict[str, Any]] = [auth_methods]
    for obj, prefix in ((handler, "handle_"), (smtp, "smtp_")):
        if plain:
            recipe = _recipe(obj, prefix)
        else:  # attributes of its own: aiosmtpd's comprehension as it is
            recipe = [(n.replace(prefix, ""), n) for n in dir(obj) if n.startswith(prefix)]
        tables.append({key: getattr(obj, name) for key, name in recipe})
    return tuple(tables)


def _signature(func: Any) -> inspect.Signature:
    return aiosmtpd.smtp.inspect.signature(func)  # the cached one once installed


class QuickSMTP(aiosmtpd.smtp.SMTP):
    """``SMTP.__init__`` (aiosmtpd 1.4, pinned) step by step, the same attributes, warnings
    and errors, with its three tables from :func:`build_tables`: a third of the 20 us it
    takes per connection. ``tests/test_proxy_units.py`` compares every attribute with
    aiosmtpd's own ``__init__`` over its options."""

    def __init__(
        self, handler: Any, *, data_size_limit: int | None = aiosmtpd.smtp.DATA_SIZE_DEFAULT,
        enable_SMTPUTF8: bool = False, decode_data: bool = False, hostname: str | None = None,
        ident: str | None = None, tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False, timeout: float = 300, auth_required: bool = False,
        auth_require_tls: bool = True, auth_exclude_mechanism: Iterable[str] | None = None,
        auth_callback: Any = None, command_call_limit: int | dict[str, int] | None = None,
        authenticator: Any = None, proxy_protocol_timeout: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:  # fmt: skip
        smtp = aiosmtpd.smtp
        unusual = tls_context, proxy_protocol_timeout, command_call_limit
        if any(x is not None for x in unusual) or (auth_required and not auth_require_tls):
            # their checks and warnings: aiosmtpd's own code
            super().__init__(
                handler, data_size_limit=data_size_limit, enable_SMTPUTF8=enable_SMTPUTF8,
                decode_data=decode_data, hostname=hostname, ident=ident,
                tls_context=tls_context, require_starttls=require_starttls, timeout=timeout,
                auth_required=auth_required, auth_require_tls=auth_require_tls,
                auth_exclude_mechanism=auth_exclude_mechanism, auth_callback=auth_callback,
                command_call_limit=command_call_limit, authenticator=authenticator,
                proxy_protocol_timeout=proxy_protocol_timeout, loop=loop,
            )  # fmt: skip
            return
        self.__ident__ = ident or smtp.__ident__
        self.loop = loop if loop else smtp.make_loop()
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=self.loop,
        )  # fmt: skip
        self.event_handler = handler
        assert data_size_limit is None or isinstance(data_size_limit, int)
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        self.hostname = hostname if hostname else socket.getfqdn()
        self.tls_context = None
        self.require_starttls = None  # type: ignore[assignment]  # "tls_context and ..."
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        if authenticator is not None:
            self._authenticator = authenticator
            self._auth_callback = None
        else:
            self._auth_callback = auth_callback or smtp.login_always_fail
            self._authenticator = None
        self._auth_required = auth_required
        self._auth_methods, self._handle_hooks, self._smtp_methods = build_tables(self, handler)
        for mechanism in auth_exclude_mechanism or []:
            self._auth_methods.pop(mechanism, None)
        if smtp.log.isEnabledFor(logging.INFO):
            names = sorted(self._auth_methods.items())
            shown = " ".join(m + "(builtin)" if impl.is_builtin else m for m, impl in names)
            smtp.log.info("Available AUTH mechanisms: " + shown)
        ehlo_hook = self._handle_hooks.get("EHLO")
        if ehlo_hook is None:
            self._ehlo_hook_ver = None
        else:
            count = len(_signature(ehlo_hook).parameters)
            if count == 4:
                self._ehlo_hook_ver = "old"
                warnings.warn(
                    "Use the 5-argument handle_EHLO() hook instead of the 4-argument "
                    "handle_EHLO() hook; support for the 4-argument handle_EHLO() hook will "
                    "be removed in version 2.0", DeprecationWarning, stacklevel=2,
                )  # fmt: skip
            elif count == 5:
                self._ehlo_hook_ver = "new"
            else:
                raise RuntimeError("Unsupported EHLO Hook")
        self._enforce_call_limit = False
