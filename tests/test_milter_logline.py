"""The milter's cheap decision log (mailguard.milter.logline): same text, fewer costs."""

from __future__ import annotations

import io
import logging

from mailguard.milter import logline


def _logger(stream: io.StringIO, *, flush_each: bool = False) -> tuple[logging.Logger, object]:
    buffered = io.TextIOWrapper(io.BufferedWriter(_Sink(stream), 64 * 1024), encoding="utf-8")
    handler = logline.BufferedHandler(buffered, flush_each=flush_each)  # type: ignore[arg-type]
    handler.setFormatter(logline.SecondFormatter())
    logger = logging.getLogger(f"test.logline.{id(stream)}.{flush_each}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler


class _Sink(io.RawIOBase):
    """What reached the "file" (a write system call each time)."""

    def __init__(self, into: io.StringIO) -> None:
        self.into = into
        self.writes = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def,override]
        self.writes += 1
        self.into.write(bytes(b).decode())
        return len(b)


def test_the_line_reads_as_the_logging_module_would_write_it() -> None:
    record = logging.LogRecord("mailguard.milter", logging.INFO, "", 0, "decision x=1", (), None)
    ours = logline.SecondFormatter().format(record)
    assert ours == logging.Formatter(logline.LOG_FORMAT).format(record)


def test_lines_are_buffered_until_flushed_but_warnings_go_out_at_once() -> None:
    out = io.StringIO()
    logger, handler = _logger(out)
    logline.emit(logger, logging.INFO, "decision queue_id=A action=accept 100%")
    assert out.getvalue() == ""  # no write per line
    logger.warning("refused 1 connection(s)")
    text = out.getvalue()
    assert "decision queue_id=A action=accept 100%" in text and "WARNING refused" in text
    logline.emit(logger, logging.INFO, "decision queue_id=B")
    handler.flush()  # type: ignore[attr-defined]
    assert "queue_id=B" in out.getvalue()


def test_flush_each_writes_every_line_out() -> None:
    out = io.StringIO()
    logger, _ = _logger(out, flush_each=True)
    logline.emit(logger, logging.INFO, "decision queue_id=C")
    assert "INFO decision queue_id=C" in out.getvalue()


def test_emit_skips_the_caller_lookup_and_respects_the_level() -> None:
    out = io.StringIO()
    logger, _ = _logger(out, flush_each=True)
    seen: list[logging.LogRecord] = []
    logger.addFilter(lambda r: seen.append(r) or True)
    logline.emit(logger, logging.DEBUG, "not logged at INFO")
    logline.emit(logger, logging.INFO, "decision %s is not a format")
    assert [r.getMessage() for r in seen] == ["decision %s is not a format"]
    assert seen[0].funcName is None and seen[0].lineno == 0  # findCaller was not run
