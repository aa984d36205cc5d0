"""The milter's log, cheap enough for one line per message.

The decision line was measured at ~118 µs per message through ``logging`` as configured by
``basicConfig`` (issue 10): ``findCaller`` walks the stack to fill in a file and line no
format prints, ``asctime`` runs ``strftime`` for every record, and the stream handler
flushes (a ``write`` system call) after every line. Here the line is formatted by the
caller and handed over as a finished record (:func:`emit`: no caller lookup, no ``%``
arguments), the time stamp is formatted once per second (:class:`SecondFormatter`, same
text as ``logging``'s), and :class:`BufferedHandler` writes into a buffer that is flushed at
once for warnings and errors, after every line with ``[milter] log_flush = true``, and
otherwise by the server about once a second and at exit. The line keeps going through
``logging``: filters, other handlers and log capture in tests see it as before.
"""

from __future__ import annotations

import asyncio
import io
import logging
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
        second = int(record.created)
        if second != self._second:  # called under the handler's lock
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"  # logging's default_msec_format


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
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, "", 0, line, (), None))
