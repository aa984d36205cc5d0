"""Scanning sources in parallel: plan work units, judge them in worker processes, merge.

Work is planned as small picklable :class:`Unit` descriptions (a byte range of an mbox, a
batch of file paths, a batch of messages already fetched from IMAP), never as message
bytes read by the parent: each worker reads its own range or files, so the parent's
memory and the pipes between processes carry only results. A worker returns a
:class:`~mailguard.archive.register.Tally` per unit; tallies add up in any order.

Processes rather than threads because judging is pure Python: two cores judge twice as
many messages only in two interpreters. Workers ignore SIGINT; on Ctrl-C the parent hands
out no more units and raises a shared stop flag, each worker returns what it judged of its
unit so far, and the parent merges those tallies too: the register marked ``interrupted``
holds everything judged before the key was pressed, not only the units that completed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from multiprocessing.pool import AsyncResult
from pathlib import Path
from types import FrameType
from typing import Any

from mailguard.archive.maildir import is_maildir, maildir_files
from mailguard.archive.mbox import iter_mbox, looks_like_mbox, split_ranges
from mailguard.archive.register import PATH, SOURCE, ErrorEntry, Register, Tally, parse_date
from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.sources import Input, find_files, not_regular, read_file

FILES_PER_UNIT = 256
MBOX_BYTES_PER_UNIT = 8 * 1024 * 1024
MBOX_MIN_UNIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Unit:
    """One piece of work for a worker process."""

    kind: str
    """``mbox`` (a byte range of one file), ``files`` or ``inputs`` (already read)."""
    path: str = ""
    start: int = 0
    end: int = 0
    files: tuple[str, ...] = ()
    inputs: tuple[Input, ...] = ()
    size: int = 0
    """Bytes of mail in the unit, for progress."""


@dataclass(frozen=True, slots=True)
class Window:
    """``--since`` / ``--until``, both inclusive, by the messages' Date headers."""

    since: date | None = None
    until: date | None = None

    def admits(self, when: datetime | None) -> bool:
        # Undated messages stay in: leaving them out could hide an exposure.
        if when is None:
            return True
        if self.since and when < datetime.combine(self.since, dtime.min, UTC):
            return False
        return not (self.until and when > datetime.combine(self.until, dtime.max, UTC))


Progress = Callable[[int, int], None]
"""Called after each unit with (messages so far, bytes so far)."""


# ---------------------------------------------------------------------------- planning


def plan(source: str, jobs: int, pattern: str = "*.eml") -> tuple[list[Unit], list[ErrorEntry]]:
    """Work units for a local source, and what could not be read while planning: the
    source itself (kind ``source``) or folders inside it (kind ``path``)."""
    path = Path(source)
    try:
        info = path.stat()
    except OSError as exc:
        return [], [ErrorEntry(source, f"cannot read: {exc.strerror or exc}", SOURCE)]
    if stat.S_ISREG(info.st_mode):
        if looks_like_mbox(path):
            return _mbox_units(path, jobs), []
        return [Unit("files", files=(str(path),), size=info.st_size)], []
    if not stat.S_ISDIR(info.st_mode):
        return [], [ErrorEntry(source, f"cannot read: {not_regular(info.st_mode)}", SOURCE)]
    if is_maildir(path):
        files, unread = maildir_files(path)
    else:
        files, unread = find_files(path, pattern)
        if not files and not unread:
            message = f"no files matching {pattern!r} (and not a Maildir: no cur/ and new/)"
            return [], [ErrorEntry(source, message, SOURCE)]
    errors = [
        ErrorEntry(i.source, f"cannot read: {i.error}", SOURCE if i.source == str(path) else PATH)
        for i in unread
    ]
    return _file_units(files), errors


def _mbox_units(path: Path, jobs: int) -> list[Unit]:
    size = _size(path)
    # Enough units to balance the workers and to stop promptly on Ctrl-C (a unit is the
    # grain of both), few enough that each one's start-up cost does not show.
    parts = max(jobs * 8, size // MBOX_BYTES_PER_UNIT)
    parts = max(1, min(parts, size // MBOX_MIN_UNIT))
    return [
        Unit("mbox", path=str(path), start=s, end=e, size=e - s)
        for s, e in split_ranges(path, parts)
    ]


def _file_units(files: list[Path]) -> list[Unit]:
    return [
        Unit(
            "files",
            files=tuple(str(f) for f in files[i : i + FILES_PER_UNIT]),
            size=sum(_size(f) for f in files[i : i + FILES_PER_UNIT]),
        )
        for i in range(0, len(files), FILES_PER_UNIT)
    ]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# ---------------------------------------------------------------------------- workers

_engine: Engine | None = None
_window = Window()
_stop: Any = None
"""Set (``.value`` true) by the parent on Ctrl-C: a worker then ends its unit after the
message in hand and returns what it judged, so the interrupted register keeps it."""


class _Flag:
    """The in-process stand-in for the shared stop value (``--jobs 1``)."""

    value = 0


def _init_worker(config: Config, window: Window, in_pool: bool = True, stop: Any = None) -> None:
    global _engine, _window, _stop
    if in_pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _engine, _window, _stop = Engine(config), window, stop


def _messages(unit: Unit, max_bytes: int) -> Iterator[Input]:
    if unit.kind == "mbox":
        yield from iter_mbox(Path(unit.path), unit.start, unit.end, max_bytes)
    elif unit.kind == "files":
        for name in unit.files:
            yield read_file(Path(name), max_bytes)
    else:
        yield from unit.inputs


def judge_unit(unit: Unit) -> Tally:
    """Runs in a worker: read the unit's messages, judge each, count and keep incidents.

    Stops early, with what it has, once the parent asks (see :data:`_stop`); messages
    already fetched (``inputs``, from IMAP) are judged all the same: they cost no reading.
    """
    engine = _engine
    assert engine is not None, "worker not initialised"
    stop = _stop if unit.kind != "inputs" else None
    tally = Tally()
    for item in _messages(unit, engine.config.limits.max_message_bytes):
        if stop is not None and stop.value:
            break
        if item.data is None:
            error = item.error or "unreadable"
            tally.add_error(item.source, f"cannot read: {error}" if item.unreadable else error)
            continue
        report = engine.check(item.data, source=item.source, mode="archived")
        when = parse_date(report.date)
        if _window.admits(when):
            tally.add_report(report, len(item.data), when)
    return tally


# ---------------------------------------------------------------------------- the scan


class Scanner:
    """Judge every message of the given sources and return the register."""

    def __init__(
        self, config: Config, *, jobs: int | None = None, window: Window | None = None
    ) -> None:
        self.config = config
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.window = window or Window()

    def scan(
        self,
        sources: list[tuple[str, Iterable[Unit]]],
        *,
        progress: Progress | None = None,
        register: Register | None = None,
    ) -> Register:
        """``sources`` are (label, units); units may be a lazy iterable (IMAP fetches).

        Ctrl-C stops the scan and returns what was merged so far with ``interrupted`` set:
        the units in progress stop after their current message and their results are kept.
        A second Ctrl-C stops at once, without waiting for them.
        """
        reg = register or Register(label for label, _ in sources)
        reg.since, reg.until = self.window.since, self.window.until
        units = (unit for _, source_units in sources for unit in source_units)
        started = time.perf_counter()
        state = _Interrupt(self.jobs > 1)
        try:
            with state.handling():
                if self.jobs == 1:
                    _init_worker(self.config, self.window, False, state.stop)
                    for unit in state.guard(units):
                        self._merge(reg, judge_unit(unit), progress)
                        if state.requested:
                            break
                else:
                    self._parallel(reg, units, progress, state)
        except KeyboardInterrupt:
            reg.interrupted = True
        finally:
            reg.elapsed = time.perf_counter() - started
        if state.requested:
            reg.interrupted = True
        return reg

    def _parallel(
        self, reg: Register, units: Iterator[Unit], progress: Progress | None, state: _Interrupt
    ) -> None:
        """Keep every worker busy with at most two units queued each, merging as they finish.

        Units are taken from ``units`` only as workers free up, so a lazy source (IMAP) is
        not read ahead into memory, and on Ctrl-C nothing new is handed out while the units
        in progress finish early and are still merged.
        """
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pool = ctx.Pool(self.jobs, _init_worker, (self.config, self.window, True, state.stop))
        pending: deque[AsyncResult[Tally]] = deque()
        feed = state.guard(units)
        try:
            while True:
                while not state.requested and len(pending) < 2 * self.jobs:
                    unit = next(feed, None)
                    if unit is None:
                        break
                    pending.append(pool.apply_async(judge_unit, (unit,)))
                if not pending:
                    break
                pending[0].wait(0.05)
                for result in [r for r in pending if r.ready()]:
                    pending.remove(result)
                    self._merge(reg, result.get(), progress)
        except BaseException:
            pool.terminate()
            raise
        else:
            pool.close()
        finally:
            pool.join()

    @staticmethod
    def _merge(reg: Register, tally: Tally, progress: Progress | None) -> None:
        reg.merge(tally)
        if progress is not None:
            progress(reg.total.messages, reg.total.bytes)


class _Interrupt:
    """Ctrl-C during a scan: the first one asks the workers to stop and keep their results,
    a second one (or one while a source is being read, e.g. waiting on an IMAP server)
    raises KeyboardInterrupt at once."""

    def __init__(self, shared: bool) -> None:
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        self.stop: Any = ctx.RawValue("b", 0) if shared else _Flag()
        self.requested = False
        self._reading = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested or self._reading:
            self.requested = True
            self.stop.value = 1
            raise KeyboardInterrupt
        self.requested = True
        self.stop.value = 1

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Install the handler when possible (main thread, Ctrl-C not otherwise handled)."""
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def guard(self, units: Iterator[Unit]) -> Iterator[Unit]:
        """The units, read with Ctrl-C raising at once; nothing more once it was pressed."""
        while not self.requested:
            try:
                self._reading = True
                unit = next(units, None)
            except KeyboardInterrupt:
                return
            finally:
                self._reading = False
            if unit is None:
                return
            yield unit
