"""``mailguard check`` over many files on every core.

Why: the folder of a bulk mailout, or a tree of exported messages, holds thousands of
files, and judging them is CPU-bound: one process uses one core of the machine. With more
than :data:`PARALLEL_MIN` files to read, ``check`` forks worker processes *after* it has
built its engine (a worker starts in milliseconds with the rules loaded), hands them runs
of consecutive file names, and puts their reports back in order: the output is the same,
byte for byte, whatever ``--jobs`` is.

It stays in one process when that would not help or would not be safe:

- fewer files than :data:`PARALLEL_MIN` (starting the workers costs about what they save
  on a few hundred small messages) or one core;
- a history store or DNS lookups: an open SQLite connection or resolver must not be used
  on both sides of a fork;
- no ``fork`` start method (Windows, macOS): a spawned worker would import everything again.

Nothing is lost when a worker dies (killed for memory, say): the runs it had not returned
are judged again in this process, as ``--jobs 1`` would have judged them.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

from mailguard.pools import cores, local_pool
from mailguard.report import Report
from mailguard.sources import BOM as _BOM
from mailguard.sources import Input, Spooled, read_file

PARALLEL_MIN = 500
"""Files below which ``check`` stays in one process when ``--jobs`` is not given."""
CHUNK = 24
"""File names per task: big enough that pickling a task is noise, small enough that a
2 MB-attachment run does not leave the other worker idle at the end."""
IN_FLIGHT = 4
"""Tasks queued per worker: results are collected in order, so this bounds how much a
fast worker can get ahead of a slow one (and the memory that holds)."""

Outcome = Report | Input
"""A file's report, or the :class:`Input` saying why it could not be read."""
Judge = Callable[[Input], Report]


@dataclass(frozen=True, slots=True)
class _Job:
    judge: Judge
    max_bytes: int


_JOB: _Job | None = None
"""Set in this process just before the pool forks: the workers' copy is how they judge."""


def choose_jobs(requested: int | None, files: int, *, fork_safe: bool) -> int:
    """How many processes judge ``files`` files: ``requested`` (``--jobs``) or, when not
    given, every core once there are enough files to pay for the pool."""
    if not fork_safe or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if requested is not None:
        return max(1, min(requested, files))
    return min(cores(), 8) if files >= PARALLEL_MIN else 1


def judge_all(
    planned: Sequence[Input | str], judge: Judge, max_bytes: int, jobs: int
) -> Iterator[Outcome]:
    """The outcome of every planned item, in order: read and judged here with ``jobs`` 1,
    by ``jobs`` forked workers otherwise (already-read inputs are judged here)."""
    job = _Job(judge, max_bytes)
    if jobs <= 1:
        yield from (out for item in planned for out in _outcomes(item, job))
        return
    yield from _in_pool(planned, job, jobs)


def _outcomes(item: Input | str, job: _Job) -> Iterator[Outcome]:
    """The outcome of each message of a planned item: one, or one per message when the
    file is an mbox (``check outbox.mbox``: judging it as one message would judge only
    the first, and an exposure in any other would pass unseen)."""
    read = _read(item, job)
    label = item.label if isinstance(item, Spooled) else ""
    if label:
        read = replace(read, source=label)  # never the spool file's name
    if not _maybe_mbox(read, item if isinstance(item, str) else None):
        yield _one(read, job.judge)
        return
    from mailguard.archive.mbox import iter_mbox, iter_mbox_bytes  # only for an mbox

    if read.data is None:  # too large to read whole: split on disk
        assert isinstance(item, str)  # _maybe_mbox said so
        messages = iter_mbox(Path(item), max_bytes=job.max_bytes, label=label)
    else:  # read already (a batch piped to ``check -``, a gzipped mbox unpacked)
        messages = iter_mbox_bytes(read.data, read.source, job.max_bytes)
    first, second = next(messages, None), next(messages, None)
    if first is not None and second is None:  # one message: the input's own name, as before
        yield _one(replace(first, source=read.source), job.judge)
        return
    yield from (_one(m, job.judge) for m in (first, second, *messages) if m is not None)


def _maybe_mbox(read: Input, name: str | None) -> bool:
    """An mbox by its first line; one too big to read whole is looked at on disk (the
    test costs nothing for the usual message file, which is read already). The archive
    package is imported only for a file whose first bytes could be a ``From_`` line, so
    ``check`` of ordinary message files does not pay for loading the scanner."""
    if read.data is not None and b"From " not in read.data[: len(_BOM) + len(b"From ")]:
        return False
    if read.data is None and (not read.unreadable or name is None):
        return False
    from mailguard.archive.mbox import looks_like_mbox, starts_like_mbox

    if read.data is not None:
        return starts_like_mbox(read.data)
    assert name is not None
    return looks_like_mbox(Path(name))


def _one(item: Input, judge: Judge) -> Outcome:
    if item.data is None and item.unreadable:
        return item
    return judge(item)


def _in_pool(planned: Sequence[Input | str], job: _Job, jobs: int) -> Iterator[Outcome]:
    global _JOB
    tasks = list(_tasks(planned))
    _JOB = job
    pool = local_pool(jobs)  # forked: the workers inherit _JOB
    if pool is None:
        _JOB = None
        yield from judge_all(planned, job.judge, job.max_bytes, 1)
        return
    broken = False
    pending: list[tuple[tuple[Input | str, ...], Future[list[Outcome]] | None]] = []
    index = 0
    try:
        while index < len(tasks) or pending:
            while index < len(tasks) and len(pending) < jobs * IN_FLIGHT:
                task = tasks[index]
                index += 1
                pending.append((task, None if broken else _submit(pool, task)))
            task, future = pending.pop(0)
            if future is not None:
                try:
                    yield from future.result()
                    continue
                except BrokenProcessPool:
                    # A worker died (the OOM killer, a crash in a native reader): this run
                    # and every later one are judged here, in order; a pool that broke
                    # once is not trusted with the rest.
                    broken = True
                    pool.shutdown(wait=False, cancel_futures=True)
                    pending = [(t, None) for t, _ in pending]
            yield from (out for item in task for out in _outcomes(item, job))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _JOB = None


def _submit(
    pool: ProcessPoolExecutor, task: tuple[Input | str, ...]
) -> Future[list[Outcome]] | None:
    """The task's future, or None when it is judged here: read already (stdin), unreadable,
    or the pool can take no more work."""
    if isinstance(task[0], Input):
        return None
    try:
        return pool.submit(_judge_names, task)
    except (BrokenProcessPool, RuntimeError):
        return None


def _tasks(planned: Sequence[Input | str]) -> Iterator[tuple[Input | str, ...]]:
    """Runs of at most :data:`CHUNK` file names; every :class:`Input` a task of its own."""
    run: list[str] = []
    for item in planned:
        if isinstance(item, str):
            run.append(item)
            if len(run) == CHUNK:
                yield tuple(run)
                run = []
            continue
        if run:
            yield tuple(run)
            run = []
        yield (item,)
    if run:
        yield tuple(run)


def _read(item: Input | str, job: _Job) -> Input:
    return item if isinstance(item, Input) else read_file(item, job.max_bytes)


def _judge_names(names: tuple[Input | str, ...]) -> list[Outcome]:
    """In a worker: read and judge a run of files (module level, so it pickles by name)."""
    job = _JOB
    if job is None:  # only ever run in a worker forked by _in_pool
        raise RuntimeError("check worker started without a job")
    return [out for name in names for out in _outcomes(name, job)]
