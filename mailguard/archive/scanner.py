"""Scanning sources in parallel: plan work units, judge them in worker processes, merge.

Work is planned as small picklable :class:`Unit` descriptions (a byte range of an mbox, a
batch of file paths, a batch of messages already fetched from IMAP), never as message
bytes read by the parent: each worker reads its own range or files, so the parent's
memory and the pipes between processes carry only results. A worker returns a
:class:`~mailguard.archive.register.Tally` per unit; tallies add up in any order.

Processes rather than threads because judging is pure Python: two cores judge twice as
many messages only in two interpreters. Workers ignore SIGINT; the parent catches Ctrl-C,
stops the pool and still returns what was found, marked ``interrupted``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path

from mailguard.archive.maildir import is_maildir, maildir_files
from mailguard.archive.mbox import iter_mbox, looks_like_mbox, split_ranges
from mailguard.archive.register import Register, Tally, parse_date
from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.sources import Input, read_file

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


def plan(source: str, jobs: int, pattern: str = "*.eml") -> tuple[list[Unit], str | None]:
    """Work units for a local source, or an error message when it cannot be read at all."""
    path = Path(source)
    if not path.exists():
        return [], "no such file or directory"
    if path.is_file():
        if looks_like_mbox(path):
            return _mbox_units(path, jobs), None
        return [Unit("files", files=(str(path),), size=_size(path))], None
    if is_maildir(path):
        files = maildir_files(path)
        if not files:
            return [], None
        return _file_units(files), None
    if path.is_dir():
        found = sorted(p for p in path.rglob(pattern) if not p.is_dir())
        if not found:
            return [], f"no files matching {pattern!r} (and not a Maildir: no cur/ and new/)"
        return _file_units(found), None
    return [], "not a regular file or directory"


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


def _init_worker(config: Config, window: Window, in_pool: bool = True) -> None:
    global _engine, _window
    if in_pool:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _engine, _window = Engine(config), window


def _messages(unit: Unit) -> Iterator[Input]:
    if unit.kind == "mbox":
        yield from iter_mbox(Path(unit.path), unit.start, unit.end)
    elif unit.kind == "files":
        for name in unit.files:
            yield read_file(Path(name))
    else:
        yield from unit.inputs


def judge_unit(unit: Unit) -> Tally:
    """Runs in a worker: read the unit's messages, judge each, count and keep incidents."""
    engine = _engine
    assert engine is not None, "worker not initialised"
    tally = Tally()
    for item in _messages(unit):
        if item.data is None:
            tally.add_error(item.source, item.error or "unreadable")
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

        Ctrl-C stops the scan and returns what was merged so far with ``interrupted`` set.
        """
        reg = register or Register(label for label, _ in sources)
        reg.since, reg.until = self.window.since, self.window.until
        units = (unit for _, source_units in sources for unit in source_units)
        started = time.perf_counter()
        try:
            if self.jobs == 1:
                _init_worker(self.config, self.window, in_pool=False)
                for unit in units:
                    self._merge(reg, judge_unit(unit), progress)
            else:
                self._parallel(reg, units, progress)
        except KeyboardInterrupt:
            reg.interrupted = True
        finally:
            reg.elapsed = time.perf_counter() - started
        return reg

    def _parallel(self, reg: Register, units: Iterator[Unit], progress: Progress | None) -> None:
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pool = ctx.Pool(self.jobs, _init_worker, (self.config, self.window))
        try:
            for tally in pool.imap_unordered(judge_unit, units):
                self._merge(reg, tally, progress)
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
