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

import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TypeVar

from mailguard.archive.maildir import is_maildir, mail_files
from mailguard.archive.mbox import holds_several_messages, looks_like_mbox, split_at
from mailguard.archive.people import Tokens
from mailguard.archive.register import PATH, SOURCE, ErrorEntry, Register, Tally
from mailguard.archive.workers import (
    InlineExecutor,
    StopFlag,
    Unit,
    Window,
    WorkSpec,
    judge_unit,
)
from mailguard.config import Config
from mailguard.pools import FORKS, cores, local_pool, process_pool
from mailguard.resolver import DnsSettings
from mailguard.sources import not_regular

__all__ = [
    "Progress", "Scanner", "StopFlag", "Unit", "UnitLost", "Window", "WorkSpec", "judge_unit",
    "plan", "process_pool",
]  # fmt: skip

T = TypeVar("T")

FILES_PER_UNIT = 256
MBOX_BYTES_PER_UNIT = 8 * 1024 * 1024
MBOX_MIN_UNIT = 256 * 1024


Progress = Callable[[int, int], None]
"""Called after each unit with (messages so far, bytes so far)."""

OnTally = Callable[[str, Unit, Tally], Tally]
"""Sees each unit's tally with its source's label before it is merged, and returns what to
merge: the incremental store (:mod:`mailguard.archive.state`) keeps per-source counts.
With a hook, incidents carry the exposed addresses even when the register keeps none (the
store hashes them with its own key); without one they carry only tokens."""


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
    loose, in_maildirs, unread = mail_files(path, pattern)
    if not loose and not in_maildirs and not unread and not is_maildir(path):
        message = f"no files matching {pattern!r} and no Maildir (a folder with cur/ and new/)"
        return [], [ErrorEntry(source, message, SOURCE)]
    # An mbox in the tree (found by its content, whatever its name) is a source of its own,
    # labelled with its path: judged as one file it showed its first message only. A file
    # of one message with an envelope line stays a file.
    mboxes = [f for f in loose if holds_several_messages(f)]
    if mboxes:
        seen = set(mboxes)
        loose = [f for f in loose if f not in seen]
    files = loose + in_maildirs
    errors = [
        ErrorEntry(i.source, f"cannot read: {i.error}", SOURCE if i.source == str(path) else PATH)
        for i in unread
    ]
    in_tree = [u for m in mboxes for u in _mbox_units(m, jobs, label=str(m))]
    return _file_units(files) + in_tree, errors


def _mbox_units(path: Path, jobs: int, start: int = 0, label: str = "") -> list[Unit]:
    """Units over ``[start, end of file)``; ``start`` is a ``From_`` line (an incremental
    re-scan starts where the last one stopped)."""
    end = _size(path)
    return [
        Unit("mbox", path=str(path), start=s, end=e, size=e - s, label=label)
        for s, e in split_at(path, unit_cuts(start, end, jobs), start)
    ]


def unit_cuts(begin: int, end: int, jobs: int) -> list[int]:
    """Where to cut ``[begin, end)`` into work units (each cut then moves on to the next
    ``From_`` line).

    Enough units to balance the workers and to stop promptly on Ctrl-C (a unit is the grain
    of both), few enough that each one's start-up cost does not show: ``jobs * 8`` at
    least, at most :data:`MBOX_BYTES_PER_UNIT` each, none under :data:`MBOX_MIN_UNIT`.
    Once little is left the units shrink (a share of what remains per worker, guided
    self-scheduling): the time a message takes varies a hundredfold by kind, so equal
    units let one worker finish while the other is still in a big one; small last units
    make them finish together.
    """
    total = end - begin
    unit = max(MBOX_MIN_UNIT, min(MBOX_BYTES_PER_UNIT, total // (jobs * 8) or 1))
    floor = max(MBOX_MIN_UNIT, unit // 8)
    cuts: list[int] = []
    at = begin
    while True:
        left = end - at
        size = min(unit, max(floor, left // (2 * jobs)))
        if left - size < floor:
            return cuts
        at += size
        cuts.append(at)


def mbox_units(path: Path, jobs: int, start: int = 0, label: str = "") -> list[Unit]:
    """:func:`_mbox_units` for callers that plan sources of their own (state, PST)."""
    return _mbox_units(path, jobs, start, label)


def file_units(files: list[Path]) -> list[Unit]:
    """Batches of files, :data:`FILES_PER_UNIT` each."""
    return _file_units(files)


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


def _terminate(executor: Executor) -> None:
    """Stop an executor we own at once (a second Ctrl-C, an error): running units too."""
    if isinstance(executor, ProcessPoolExecutor):
        for process in list((executor._processes or {}).values()):
            process.terminate()
    executor.shutdown(wait=isinstance(executor, ProcessPoolExecutor), cancel_futures=True)


# ---------------------------------------------------------------------------- the scan


class UnitLost(Exception):
    """An executor's word that one unit could not be run (Dask's ``KilledWorker``: the
    workers died on it too often), unlike an error raised by the work itself, which ends
    the scan: the rest of the scan goes on and the lost unit is an error entry."""


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
        dns: DnsSettings | None = None,
    ) -> None:
        self.config = config
        self.dns = dns
        self.jobs = max(1, jobs or cores())
        self.window = window or Window()
        self.executor = executor

    @property
    def forks(self) -> bool:
        """Whether every unit is judged here or in a worker forked from this process."""
        return self.executor is None and FORKS

    def scan(
        self,
        sources: list[tuple[str, Iterable[Unit]]],
        *,
        progress: Progress | None = None,
        register: Register | None = None,
        on_tally: OnTally | None = None,
        tokens: Tokens | None = None,
    ) -> Register:
        """``sources`` are (label, units); units may be a lazy iterable (IMAP fetches).

        ``tokens``: what the workers send for each exposed person (:mod:`.people`); by
        default the addresses when the register keeps them or ``on_tally`` is given, else
        tokens that only count people.

        Ctrl-C stops the scan and returns what was merged so far with ``interrupted`` set:
        the units in progress stop after their current message and their results are kept.
        A second Ctrl-C stops at once, without waiting for them.
        """
        reg = register or Register(label for label, _ in sources)
        reg.since, reg.until = self.window.since, self.window.until
        units = ((label, unit) for label, source_units in sources for unit in source_units)
        started = time.perf_counter()
        state = _Interrupt()
        tokens = tokens or Tokens.for_scan(
            addresses=reg.keep_addresses or on_tally is not None, forked=self.forks
        )
        spec = WorkSpec.build(self.config, self.window, state.stop, self.dns, tokens)
        try:
            with state.handling():
                self._run(spec, reg, units, progress, state, on_tally)
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
        units: Iterator[tuple[str, Unit]],
        progress: Progress | None,
        state: _Interrupt,
        on_tally: OnTally | None = None,
    ) -> None:
        """Keep every worker busy with at most two units queued each, merging as they finish.

        Units are taken from ``units`` only as workers free up, so a lazy source (IMAP) is
        not read ahead into memory, and on Ctrl-C nothing new is handed out while the units
        in progress finish early and are still merged.
        """
        owned = self.executor is None
        executor = self.executor or _local_executor(self.jobs)
        pending: deque[Future[Tally]] = deque()
        unit_of: dict[Future[Tally], tuple[str, Unit]] = {}
        feed = state.guard(units)
        try:
            while True:
                while not state.requested and len(pending) < 2 * self.jobs:
                    item = next(feed, None)
                    if item is None:
                        break
                    future = executor.submit(judge_unit, spec, item[1])
                    pending.append(future)
                    unit_of[future] = item
                if not pending:
                    break
                done, _ = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
                for future in [f for f in pending if f in done]:
                    pending.remove(future)
                    label, unit = unit_of.pop(future)
                    try:
                        tally = future.result()
                    except BrokenExecutor:
                        # A worker died (killed, out of memory): say so and which part of
                        # which source was lost, rather than a traceback or a hang.
                        self._merge(reg, _lost(unit, len(pending) + 1), progress)
                        raise
                    except CancelledError:
                        continue  # cancelled on a cluster after Ctrl-C: nothing judged
                    except UnitLost as exc:
                        # The executor gave up on this unit only (a cluster whose workers
                        # died on it too often): the rest of the scan goes on.
                        tally = _failed(unit, exc)
                    if on_tally is not None:
                        tally = on_tally(label, unit, tally)
                    self._merge(reg, tally, progress)
        except BrokenExecutor:
            for future in pending:
                future.cancel()
            if owned:
                _terminate(executor)
            return
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


def _local_executor(jobs: int) -> Executor:
    """``jobs`` worker processes, or this process when there is one job or no pool can
    start (see :func:`local_pool`)."""
    return (local_pool(jobs) if jobs > 1 else None) or InlineExecutor()


def _where(unit: Unit) -> tuple[str, str]:
    if unit.kind == "mbox":
        name = unit.label or unit.path
        return name, f"bytes {unit.start:,}-{unit.end:,} of {name}"
    if unit.kind == "files":
        return unit.files[0], f"{unit.files[0]} and {len(unit.files) - 1} more file(s)"
    source = unit.inputs[0].source if unit.inputs else "fetched messages"
    return source, source


def _failed(unit: Unit, exc: UnitLost) -> Tally:
    """The error entry for one unit the executor could not run."""
    source, where = _where(unit)
    tally = Tally()
    tally.add_error(source, f"{where} was not judged: {str(exc)[:300]}", SOURCE)
    return tally


def _lost(unit: Unit, units: int) -> Tally:
    """The error entry for a scan cut short by a dead worker: it makes the register
    incomplete (exit status 2) and names where the lost work began."""
    source, where = _where(unit)
    message = (
        "a worker process ended unexpectedly (killed, or out of memory?) while judging "
        f"{where}; the scan stopped there: {units} work unit(s) in progress and the rest "
        "of the sources were not judged"
    )
    tally = Tally()
    tally.add_error(source, message, SOURCE)
    return tally


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

    def guard(self, units: Iterator[T]) -> Iterator[T]:
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
