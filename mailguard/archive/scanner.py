"""Scanning sources in parallel: plan work units, judge them on an executor, merge.

Work is planned as small picklable :class:`Unit` descriptions (a byte range of an mbox, a
batch of file paths, a batch of messages already fetched from IMAP), never as message
bytes read by the parent: each worker reads its own range or files, so the parent's
memory and the pipes between processes carry only results. A worker returns a
:class:`~mailguard.archive.register.Tally` per unit; tallies add up in any order.

Units run on any :class:`concurrent.futures.Executor`. Each carries a :class:`WorkSpec`
(the configuration, the date window, the stop flag), from which a worker builds its engine
once and caches it: no worker state lives in module globals, so a thread pool, a process
pool or a cluster's executor (e.g. Dask's ``Client.get_executor()``) runs the same units
and gives the same register. The default is a pool of processes, because judging is pure
Python: two cores judge twice as many messages only in two interpreters.

Ctrl-C: the scanner hands out no more units and sets the :class:`StopFlag`; each worker
returns what it judged of its unit so far, and those tallies are merged too: the register
marked ``interrupted`` holds everything judged before the key was pressed, not only the
units that completed. The default pool's workers ignore SIGINT for that; a caller's
process pool should too (see :func:`process_pool`).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import pickle
import secrets
import signal
import stat
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from mailguard.archive.maildir import is_maildir, maildir_files
from mailguard.archive.mbox import iter_mbox, looks_like_mbox, split_ranges
from mailguard.archive.register import PATH, SOURCE, ErrorEntry, Register, Tally, parse_date
from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.sources import Input, find_files, not_regular, read_file

FILES_PER_UNIT = 256
MBOX_BYTES_PER_UNIT = 8 * 1024 * 1024
MBOX_MIN_UNIT = 256 * 1024

T = TypeVar("T")


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


class StopFlag:
    """Ctrl-C's "finish your unit now" request, readable by any worker on this machine.

    In the scanning process (``--jobs 1``, thread pools) it is an attribute. In another
    process it is the existence of a file with a random name, created only when the stop
    is requested: unlike a shared-memory value it can be pickled and sent with a unit, so
    it reaches workers of any executor, including processes started after the scan began.
    A worker on another machine never sees the file: its units run to their end (the scan
    still hands out nothing new and keeps what comes back).
    """

    CHECK_EVERY = 0.02
    """Seconds between two looks at the file: a stat per message would cost ~2 %."""

    def __init__(self) -> None:
        name = f"mailguard-stop-{os.getpid()}-{secrets.token_hex(8)}"
        self.path = os.path.join(tempfile.gettempdir(), name)  # noqa: PTH118 - pickled as str
        self._owner = os.getpid()
        self._set = False
        self._next_look = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_owner": self._owner}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _set=False, _next_look=0.0)

    def set(self) -> None:
        self._set = True
        with contextlib.suppress(OSError):  # e.g. a full /tmp: local threads still stop
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))

    def is_set(self) -> bool:
        if self._set or os.getpid() == self._owner:
            return self._set
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + self.CHECK_EVERY
            self._set = os.path.exists(self.path)  # noqa: PTH110
        return self._set

    def remove(self) -> None:
        """Delete the file, if the stop was requested; call once the workers are done."""
        if os.getpid() == self._owner:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # noqa: PTH108


@dataclass(frozen=True, eq=False)
class WorkSpec:
    """How every unit of one scan is judged: sent with each unit, so workers hold no state
    of their own and any executor (threads, processes, another machine) can run a unit.

    The configuration travels pickled once, as bytes: a worker unpickles it and builds its
    engine on the first unit of a scan only (see :func:`_worker`), not per unit.
    """

    config_blob: bytes
    window: Window
    stop: StopFlag
    key: str = field(default_factory=lambda: secrets.token_hex(16))
    """Identifies the scan: equal keys, same spec (the worker cache's key)."""

    @classmethod
    def build(cls, config: Config, window: Window, stop: StopFlag) -> WorkSpec:
        return cls(pickle.dumps(config, pickle.HIGHEST_PROTOCOL), window, stop)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkSpec) and other.key == self.key


class Worker:
    """What one process judges a scan's units with: its engine, built once."""

    def __init__(self, spec: WorkSpec) -> None:
        config: Config = pickle.loads(spec.config_blob)  # our own bytes, from WorkSpec.build
        self.engine = Engine(config)
        self.window = spec.window

    def judge(self, unit: Unit, stop: StopFlag | None) -> Tally:
        """Read the unit's messages, judge each, count and keep incidents.

        Stops early, with what it has, once ``stop`` is set; messages already fetched
        (``inputs``, from IMAP) are judged all the same: they cost no reading.
        """
        engine = self.engine
        stop = stop if unit.kind != "inputs" else None
        tally = Tally()
        for item in _messages(unit, engine.config.limits.max_message_bytes):
            if stop is not None and stop.is_set():
                break
            if item.data is None:
                error = item.error or "unreadable"
                tally.add_error(item.source, f"cannot read: {error}" if item.unreadable else error)
                continue
            report = engine.check(item.data, source=item.source, mode="archived")
            when = parse_date(report.date)
            if self.window.admits(when):
                tally.add_report(report, len(item.data), when)
        return tally


@functools.lru_cache(maxsize=4)
def _worker(spec: WorkSpec) -> Worker:
    """This process's worker for a scan: built on its first unit, reused for the rest.

    A cache, not a global set by a pool initialiser: it works the same in the scanning
    process, in a thread or process pool and in a worker that serves several scans.
    """
    return Worker(spec)


def judge_unit(spec: WorkSpec, unit: Unit) -> Tally:
    """The work function handed to the executor (module level, so it pickles by name)."""
    return _worker(spec).judge(unit, spec.stop)


def _messages(unit: Unit, max_bytes: int) -> Iterator[Input]:
    if unit.kind == "mbox":
        yield from iter_mbox(Path(unit.path), unit.start, unit.end, max_bytes)
    elif unit.kind == "files":
        for name in unit.files:
            yield read_file(Path(name), max_bytes)
    else:
        yield from unit.inputs


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the scanning process handles Ctrl-C


class InlineExecutor(Executor):
    """Runs each unit at once in the calling thread: ``--jobs 1`` without a pool."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def process_pool(jobs: int) -> ProcessPoolExecutor:
    """The default executor: ``jobs`` worker processes that leave Ctrl-C to the scanner.

    Forked where possible: a worker then starts in milliseconds with the rules loaded. A
    caller who brings a process pool of its own should ignore SIGINT in its workers the
    same way, or Ctrl-C kills the units in progress instead of letting them finish early.
    """
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_ignore_sigint)


def _terminate(executor: Executor) -> None:
    """Stop an executor we own at once (a second Ctrl-C, an error): running units too."""
    if isinstance(executor, ProcessPoolExecutor):
        for process in list((executor._processes or {}).values()):
            process.terminate()
    executor.shutdown(wait=isinstance(executor, ProcessPoolExecutor), cancel_futures=True)


# ---------------------------------------------------------------------------- the scan


class Scanner:
    """Judge every message of the given sources and return the register.

    ``executor`` runs the units: anything shaped like :class:`concurrent.futures.Executor`
    (a thread pool, a process pool, a cluster client). The caller owns it: the scanner
    neither shuts it down nor kills its workers. Without one, the scanner makes and owns
    a pool of ``jobs`` processes (none for ``jobs=1``). ``jobs`` also sets how many units
    are in flight at once (two per worker) and how finely an mbox is split.
    """

    def __init__(
        self,
        config: Config,
        *,
        jobs: int | None = None,
        window: Window | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.window = window or Window()
        self.executor = executor

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
        state = _Interrupt()
        spec = WorkSpec.build(self.config, self.window, state.stop)
        try:
            with state.handling():
                self._run(spec, reg, units, progress, state)
        except KeyboardInterrupt:
            reg.interrupted = True
        finally:
            state.stop.remove()
            reg.elapsed = time.perf_counter() - started
        if state.requested:
            reg.interrupted = True
        return reg

    def _run(
        self,
        spec: WorkSpec,
        reg: Register,
        units: Iterator[Unit],
        progress: Progress | None,
        state: _Interrupt,
    ) -> None:
        """Keep every worker busy with at most two units queued each, merging as they finish.

        Units are taken from ``units`` only as workers free up, so a lazy source (IMAP) is
        not read ahead into memory, and on Ctrl-C nothing new is handed out while the units
        in progress finish early and are still merged.
        """
        owned = self.executor is None
        executor = self.executor or (
            InlineExecutor() if self.jobs == 1 else process_pool(self.jobs)
        )
        pending: deque[Future[Tally]] = deque()
        feed = state.guard(units)
        try:
            while True:
                while not state.requested and len(pending) < 2 * self.jobs:
                    unit = next(feed, None)
                    if unit is None:
                        break
                    pending.append(executor.submit(judge_unit, spec, unit))
                if not pending:
                    break
                done, _ = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
                for future in [f for f in pending if f in done]:
                    pending.remove(future)
                    self._merge(reg, future.result(), progress)
        except BaseException:
            for future in pending:
                future.cancel()
            if owned:
                _terminate(executor)
            raise
        if owned:
            executor.shutdown(wait=True)

    @staticmethod
    def _merge(reg: Register, tally: Tally, progress: Progress | None) -> None:
        reg.merge(tally)
        if progress is not None:
            progress(reg.total.messages, reg.total.bytes)


class _Interrupt:
    """Ctrl-C during a scan: the first one asks the workers to stop and keep their results,
    a second one (or one while a source is being read, e.g. waiting on an IMAP server)
    raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.stop = StopFlag()
        self.requested = False
        self._reading = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        again = self.requested or self._reading
        self.requested = True
        self.stop.set()
        if again:
            raise KeyboardInterrupt

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
