"""The milter's log, cheap enough for one line per message.

The decision line was measured at ~118 µs per message through ``logging`` as configured by
``basicConfig`` (issue 10): ``findCaller`` walks the stack to fill in a file and line no
format prints, ``asctime`` runs ``strftime`` for every record, and the stream handler
flushes (a ``write`` system call) after every line. Here the line is formatted by the
caller and handed over as a finished record (:func:`emit`: no caller lookup, no ``%``
arguments), the time stamp is formatted once per second (:class:`SecondFormatter`, same
text as ``logging``'s), and :class:`BufferedHandler` writes into a buffer that is flushed at
once for warnings and errors, after every line with ``[milter] log_flush = true``, and
otherwise by the server about once a second and at exit. When that handler is the only
place a line can go (no filters, no other handlers: the milter's or the proxy's daemon
as configured by :func:`configure`), :func:`emit` writes the finished text into it without
a ``LogRecord`` (~5 µs and a ``getpid`` system call per line); anywhere else the line goes
through ``logging`` as before, so filters, other handlers and log capture in tests see it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import sys
import time
from typing import TextIO

LOG_FORMAT = "%(asctime)s mailguard-milter[%(process)d] %(levelname)s %(message)s"


class SecondFormatter(logging.Formatter):
    """``asctime`` as ``logging`` writes it, with the ``strftime`` done once per second."""

    def __init__(self, fmt: str = LOG_FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.stamp(int(record.created), int(record.msecs))

    def stamp(self, second: int, msecs: int) -> str:
        """``asctime`` for a time given as whole seconds and milliseconds."""
        if second != self._second:  # called under the handler's lock
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._text},{msecs:03d}"  # logging's default_msec_format


class BufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes into a buffer; flushes for warnings and worse, or every line if asked."""

    def __init__(self, stream: TextIO | None = None, *, flush_each: bool = False) -> None:
        super().__init__(stream if stream is not None else _buffered_stderr())
        self.flush_each = flush_each

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if self.flush_each or record.levelno >= logging.WARNING:
                self.stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def emit_line(self, level: int, line: str, formatter: SecondFormatter, name: str) -> None:
        """What :meth:`emit` writes for a record of ``line`` at ``level`` from logger
        ``name`` made now, made without the record (:func:`emit` checks that nothing else
        would see it and that the format reads only :data:`_FIELDS`)."""
        now = time.time()
        second = int(now)
        values = {
            "message": line, "levelname": logging.getLevelName(level), "name": name,
            "process": _pid,
        }  # fmt: skip
        with self.lock:  # type: ignore[union-attr]  # createLock made it
            values["asctime"] = formatter.stamp(second, int((now - second) * 1000))
            text = formatter._fmt % values + self.terminator  # type: ignore[operator]
            try:
                self.stream.write(text)
                if self.flush_each or level >= logging.WARNING:
                    self.stream.flush()
            except RecursionError:
                raise
            except Exception:
                record = logging.LogRecord("mailguard.milter", level, "", 0, line, (), None)
                self.handleError(record)


def _buffered_stderr() -> TextIO:
    """Standard error, block-buffered (``sys.stderr`` writes every line through at once)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stderr  # replaced by something without a descriptor: use it as it is
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw, 64 * 1024), encoding="utf-8", errors="backslashreplace"
    )


def configure(level: int, *, flush_each: bool = False, fmt: str = LOG_FORMAT) -> None:
    """The daemon's logging: one buffered handler on the root logger (as ``basicConfig``)."""
    root = logging.getLogger()
    if not any(isinstance(h, BufferedHandler) for h in root.handlers):
        handler = BufferedHandler(flush_each=flush_each)
        handler.setFormatter(SecondFormatter(fmt))
        root.addHandler(handler)
    root.setLevel(level)


def set_flush_each(flush_each: bool) -> None:
    """Apply ``[milter] log_flush`` (read after logging is set up, and again on reload)."""
    for handler in _buffered():
        handler.flush_each = flush_each


def flush() -> None:
    """Write out what the buffered handlers hold (the server calls this about once a second)."""
    for handler in _buffered():
        handler.flush()


async def flush_every(interval: float) -> None:
    """The server's task: buffered lines are written out within ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        flush()


def _buffered() -> list[BufferedHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, BufferedHandler)]


def emit(logger: logging.Logger, level: int, line: str) -> None:
    """Log a finished line at ``level``: no caller lookup, no formatting of arguments."""
    if not logger.isEnabledFor(level):
        return
    handler = _sole_handler(logger, level)
    if handler is not None:
        handler.emit_line(level, line, handler.formatter, logger.name)  # type: ignore[arg-type]
    else:
        logger.handle(logger.makeRecord(logger.name, level, "", 0, line, (), None))


def _sole_handler(logger: logging.Logger, level: int) -> BufferedHandler | None:
    """The handler a record of ``logger`` at ``level`` would reach, when it is the only one,
    one of ours with a ``%`` format of :data:`_FIELDS` only (the milter's and the proxy's
    daemons), and nothing filters on the way; else ``None`` (the record is then made and
    handled as ``logging`` does)."""
    if not logging.logProcesses:
        return None  # %(process)d would be None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not BufferedHandler:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if found is None or found.filters or level < found.level:
        return None
    formatter = found.formatter
    if (
        type(formatter) is not SecondFormatter
        or type(formatter._style) is not logging.PercentStyle
        or formatter.datefmt is not None
        or not _FIELDS.issuperset(_fields(formatter._fmt or ""))
    ):
        return None
    return found  # type: ignore[return-value]  # its type was checked above


_FIELDS = frozenset({"asctime", "process", "levelname", "message", "name"})
"""What a record-free line can fill in; a format that reads anything else gets a record."""


@functools.lru_cache(maxsize=8)
def _fields(fmt: str) -> frozenset[str]:
    return frozenset(part.split(")", 1)[0] for part in fmt.split("%(")[1:])


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forked)
