"""The proxy's line per message, written into the log's buffer without a ``LogRecord``.

:func:`mailguard.milter.logline.emit` already skips the caller lookup and the argument
formatting; what is left is ``Logger.makeRecord`` (a ``LogRecord`` of some 20 fields) and
the handler machinery around one ``stream.write``: about 5 us a message. When logging is
set up as ``mailguard proxy`` sets it up and nobody has added to it - one
:class:`~mailguard.milter.logline.BufferedHandler` on the root logger with its
:class:`~mailguard.milter.logline.SecondFormatter` and a ``%`` format of the fields below,
no filters, no other handler on the way - :func:`info` writes the very text that handler
would write. In any other set-up (a test's log capture, a handler added by a library) the
line goes through ``logging`` as before. ``tests/test_proxy_lane.py`` compares the two.
"""

from __future__ import annotations

import functools
import logging
import os
import time

from mailguard.milter import logline

_FIELDS = frozenset({"asctime", "process", "levelname", "message", "name"})


class _Stamp:
    """The two fields of a record that ``SecondFormatter.formatTime`` reads."""

    __slots__ = ("created", "msecs")

    def __init__(self, created: float) -> None:
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0  # as LogRecord computes it


def _only_handler(logger: logging.Logger) -> logline.BufferedHandler | None:
    """The one handler a line from ``logger`` reaches, if it is the proxy's own and nothing
    else (a filter, a level, another handler) stands on the way."""
    found: logline.BufferedHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not logline.BufferedHandler:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if found is None or found.filters or found.level > logging.INFO:
        return None
    formatter = found.formatter
    if (
        type(formatter) is not logline.SecondFormatter
        or type(formatter._style) is not logging.PercentStyle
        or formatter.datefmt is not None
        or not _FIELDS.issuperset(_fields(formatter._fmt or ""))
    ):
        return None
    return found


@functools.lru_cache(maxsize=8)
def _fields(fmt: str) -> frozenset[str]:
    return frozenset(part.split(")", 1)[0] for part in fmt.split("%(")[1:])


def info(logger: logging.Logger, line: str) -> None:
    """``logline.emit(logger, INFO, line)``, with the same text in the same place."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _only_handler(logger)
    if handler is None:
        logline.emit(logger, logging.INFO, line)
        return
    formatter = handler.formatter
    assert isinstance(formatter, logline.SecondFormatter)
    values = {"message": line, "levelname": "INFO", "name": logger.name, "process": os.getpid()}
    with handler.lock:  # type: ignore[union-attr]
        values["asctime"] = formatter.formatTime(_Stamp(time.time()))  # type: ignore[arg-type]
        try:
            handler.stream.write(formatter._fmt % values + handler.terminator)  # type: ignore[operator]
            if handler.flush_each:
                handler.stream.flush()
        except RecursionError:
            raise
        except Exception:
            logline.emit(logger, logging.INFO, line)  # the handler reports it, as it would
