"""The milter's cheap decision log (mailguard.milter.logline): same text, fewer costs."""

from __future__ import annotations

import io
import logging
import os
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

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


def _pair(level: int) -> tuple[logging.Logger, io.StringIO]:
    """A logger whose only handler is ours, with the daemon's formatter, as configure sets."""
    out = io.StringIO()
    handler = logline.BufferedHandler(out, flush_each=True)  # type: ignore[arg-type]
    handler.setFormatter(logline.SecondFormatter())
    logger = logging.getLogger(f"test.logline.pair.{id(out)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(level)
    return logger, out


_LEVELS = st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, 45])


@settings(max_examples=300, deadline=None)
@given(
    line=st.text(max_size=200),
    level=_LEVELS,
    second=st.integers(0, 4_000_000_000),
    ms=st.integers(0, 999),
)
def test_the_record_free_line_is_the_line_logging_writes(
    line: str, level: int, second: int, ms: int
) -> None:
    """emit's direct write (no LogRecord) gives the text logger.handle gives, byte for byte."""
    fast, fast_out = _pair(logging.DEBUG)
    careful, careful_out = _pair(logging.DEBUG)
    assert logline._sole_handler(fast, level) is fast.handlers[0]
    now = second + (ms + 0.5) / 1000  # mid-millisecond: whichever clock logging reads
    with (
        mock.patch("time.time", return_value=now),
        mock.patch("time.time_ns", return_value=second * 10**9 + ms * 10**6 + 500_000),
    ):
        logline.emit(fast, level, line)
        careful.handle(careful.makeRecord(careful.name, level, "", 0, line, (), None))
    assert fast_out.getvalue() == careful_out.getvalue()
    assert f" mailguard-milter[{os.getpid()}] {logging.getLevelName(level)} " in fast_out.getvalue()


def test_anything_else_in_the_way_gets_a_real_record() -> None:
    """A filter, a second handler or another format: the line goes through logging."""
    logger, out = _pair(logging.INFO)
    handler = logger.handlers[0]
    seen: list[logging.LogRecord] = []
    logger.addFilter(lambda r: seen.append(r) or True)
    assert logline._sole_handler(logger, logging.INFO) is None
    logline.emit(logger, logging.INFO, "decision a=1")
    assert [r.getMessage() for r in seen] == ["decision a=1"] and "a=1" in out.getvalue()
    logger.filters.clear()
    other = logging.StreamHandler(io.StringIO())
    logger.addHandler(other)
    assert logline._sole_handler(logger, logging.INFO) is None
    logline.emit(logger, logging.INFO, "decision b=2")
    assert "b=2" in other.stream.getvalue() and "b=2" in out.getvalue()
    logger.removeHandler(other)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(message)s"))
    assert logline._sole_handler(logger, logging.INFO) is None
    logline.emit(logger, logging.INFO, "decision c=3")
    assert out.getvalue().endswith("INFO:decision c=3\n")
    handler.setFormatter(logline.SecondFormatter())
    handler.setLevel(logging.ERROR)
    assert logline._sole_handler(logger, logging.INFO) is None
    logline.emit(logger, logging.INFO, "decision d=4")  # below the handler's level
    assert "d=4" not in out.getvalue()


def test_a_forked_child_logs_its_own_pid() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the pid the line would carry, then leave at once
        os.write(write, str(logline._pid).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as got:
        assert int(got.read()) == pid != os.getpid()
