"""The scanner's executor seam: any ``concurrent.futures.Executor`` runs the work units.

A distributed executor (a cluster client) is added later without touching the scan logic;
these tests hold that promise now: a thread pool and an executor that runs every unit in a
fresh interpreter (no state inherited from the scanning process) give exactly the register
of the default process pool, and Ctrl-C's stop request reaches workers through the seam.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailguard import pools
from mailguard.archive import scanner, workers
from mailguard.archive.mbox import split_ranges
from mailguard.archive.register import Register
from mailguard.archive.scanner import Scanner, StopFlag, Unit, Window, WorkSpec, judge_unit
from mailguard.config import Config
from tests.scan_archive import MESSAGES, write_mbox

T = TypeVar("T")
COPIES = 40
UNITS = 6


class FreshProcessExecutor(Executor):
    """A minimal third-party executor: every unit in a new spawned interpreter, nothing
    inherited from the scanner's process, and a record of what was in flight."""

    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(2, mp_context=spawn, max_tasks_per_child=1)
        self.submitted = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            self.submitted += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self.in_flight -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait, cancel_futures=cancel_futures)


def archive(tmp_path: Path, copies: int = COPIES) -> tuple[Path, list[Unit]]:
    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    path = tmp_path / "archive.mbox"
    path.write_bytes(one * copies)
    units = [
        Unit("mbox", path=str(path), start=s, end=e, size=e - s)
        for s, e in split_ranges(path, UNITS)
    ]
    return path, units


def fingerprint(register: Register) -> tuple[object, ...]:
    """Everything a register says, independent of the order units finished in."""
    summary = {k: v for k, v in register.summary().items() if k != "seconds"}
    incidents = sorted(repr(i) for i in register.incidents)
    errors = sorted((e.source, e.message) for e in register.errors)
    return summary, incidents, errors, sorted(register.exposed), register.interrupted


def test_thread_pool_and_a_fresh_process_executor_give_the_default_register(
    tmp_path: Path,
) -> None:
    path, units = archive(tmp_path)
    window = Window()
    default = Scanner(Config(), jobs=2, window=window).scan([(str(path), units)])
    assert default.total.messages == COPIES * len(MESSAGES)
    assert not default.interrupted

    with ThreadPoolExecutor(2) as threads:
        threaded = Scanner(Config(), jobs=2, executor=threads).scan([(str(path), units)])
        # The caller owns its executor: the scan leaves it usable.
        assert threads.submit(sum, [1, 2]).result() == 3
    assert fingerprint(threaded) == fingerprint(default)

    fresh = FreshProcessExecutor()
    try:
        spawned = Scanner(Config(), jobs=2, executor=fresh).scan([(str(path), units)])
    finally:
        fresh.shutdown()
    assert fingerprint(spawned) == fingerprint(default)
    assert fresh.submitted == len(units)
    # Units are handed out as workers free up (two per job at most), not all at once.
    assert 1 <= fresh.most_in_flight <= 2 * 2


def test_same_register_with_one_job_inline(tmp_path: Path) -> None:
    path, units = archive(tmp_path)
    inline = Scanner(Config(), jobs=1).scan([(str(path), units)])
    pooled = Scanner(Config(), jobs=2).scan([(str(path), units)])
    assert fingerprint(inline) == fingerprint(pooled)


def test_no_process_pool_means_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no pool can start (no POSIX semaphores: a container without /dev/shm), the scan
    runs in the scanning process and finds the same, instead of failing."""
    path, units = archive(tmp_path)
    inline = Scanner(Config(), jobs=1).scan([(str(path), units)])

    def no_semaphores(_jobs: int) -> ProcessPoolExecutor:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(pools, "process_pool", no_semaphores)
    assert fingerprint(Scanner(Config(), jobs=2).scan([(str(path), units)])) == fingerprint(inline)


def test_the_scanner_module_keeps_no_worker_state(tmp_path: Path) -> None:
    """After an in-process scan (which used to leave its engine, window and stop flag in
    module globals for the next unit), the module holds none of them."""
    from mailguard.engine import Engine

    path, units = archive(tmp_path, copies=1)
    Scanner(Config(), jobs=1, window=Window()).scan([(str(path), units)])
    kinds = (Engine, Config, Window, StopFlag, WorkSpec, workers.Worker)
    for module in (scanner, workers):
        held = [name for name, value in vars(module).items() if isinstance(value, kinds)]
        assert held == [], module.__name__


def test_stop_request_reaches_a_fresh_interpreter(tmp_path: Path) -> None:
    """The stop flag travels pickled with the unit: a spawned worker, which inherits
    nothing, still sees it and returns what it judged (here: nothing) at once."""
    path, _ = archive(tmp_path)
    size = path.stat().st_size
    unit = Unit("mbox", path=str(path), start=0, end=size, size=size)
    stop = StopFlag()
    spec = WorkSpec.build(Config(), Window(), stop)
    spawn = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            whole = pool.submit(judge_unit, spec, unit).result()
            stop.set()
            stopped = pool.submit(judge_unit, spec, unit).result()
    finally:
        stop.remove()
    assert whole.messages == COPIES * len(MESSAGES)
    assert stopped.messages == 0
    assert not os.path.exists(stop.path)  # noqa: PTH110


def test_ctrl_c_through_a_thread_pool_keeps_partial_work(tmp_path: Path) -> None:
    """Ctrl-C with a caller's thread pool: the units in progress stop early and what they
    judged is in the register, as with the default process pool."""
    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    big = tmp_path / "big.mbox"
    big.write_bytes(one * 3000)
    units = [
        Unit("mbox", path=str(big), start=s, end=e, size=e - s) for s, e in split_ranges(big, 2)
    ]
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    with ThreadPoolExecutor(2) as threads:
        timer.start()
        try:
            register = Scanner(Config(), jobs=2, executor=threads).scan([(str(big), units)])
        finally:
            timer.cancel()
    assert register.interrupted
    assert 0 < register.total.messages < 3000 * len(MESSAGES)
    assert register.total.incidents


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_unit_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A worker that raises ends the scan with that error, and the default pool is gone."""
    path, units = archive(tmp_path, copies=2)

    def broken(self: workers.Worker, unit: Unit, stop: StopFlag | None) -> object:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(workers.Worker, "judge", broken)
    with pytest.raises(RuntimeError, match="engine bug"):
        Scanner(Config(), jobs=jobs).scan([(str(path), units)])


def test_a_worker_that_dies_makes_the_register_incomplete_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process killed mid-unit (the OOM killer, a crash in C code): the scan ends
    at once with an error entry naming the lost part, instead of waiting forever for it
    (multiprocessing.Pool did) or a traceback."""
    path, units = archive(tmp_path, copies=2)
    parent = os.getpid()
    real = workers.Worker.judge

    def dies(self: workers.Worker, unit: Unit, stop: StopFlag | None) -> object:
        if os.getpid() != parent and unit.start > 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, unit, stop)

    monkeypatch.setattr(workers.Worker, "judge", dies)
    started = time.monotonic()
    register = Scanner(Config(), jobs=2).scan([(str(path), units)])
    assert time.monotonic() - started < 60
    assert register.incomplete and not register.interrupted
    [lost] = register.failed_sources
    assert lost.source == str(path) and "worker process ended unexpectedly" in lost.message
    assert register.total.messages < 2 * len(MESSAGES)


def test_stop_flag_copies_see_the_request_and_nothing_is_left_behind() -> None:
    """A pickled copy (what every executor but a thread pool hands a worker) learns of the
    stop from the file, even in the scanning process itself; no file exists before the
    request or after the scan."""
    import pickle

    stop = StopFlag()
    copy = pickle.loads(pickle.dumps(stop))
    assert not stop.is_set() and not copy.is_set()
    assert not os.path.exists(stop.path)  # noqa: PTH110
    stop.set()
    assert stop.is_set()
    later = pickle.loads(pickle.dumps(stop))
    assert later.is_set()
    copy._next_look = 0.0  # its last look was before the request
    assert copy.is_set()
    stop.remove()
    assert not os.path.exists(stop.path)  # noqa: PTH110
