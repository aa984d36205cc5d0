"""The local process pool that ``scan`` and ``check --jobs`` judge mail in.

One place for it, outside the archive scanner, so that ``check`` gets it without loading
the scanner (its start-up is part of every check: tests/test_fixed_costs.py).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

from mailguard.engine import tune_gc_for_batch

FORKS = os.name == "posix"
"""Whether :func:`process_pool` forks its workers: they then share this process's memory
as it was, the string-hash secret too (:mod:`mailguard.archive.people` relies on it)."""


def cores() -> int:
    """The CPUs this process may run on (a container's or ``taskset``'s limit included,
    which ``os.cpu_count()`` ignores)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_pool(jobs: int) -> ProcessPoolExecutor | None:
    """:func:`process_pool`, or None where no pool can start (no POSIX semaphores, as in a
    container without ``/dev/shm``): the caller then works in its own process, slower but
    not wrong."""
    try:
        return process_pool(jobs)
    except (OSError, ImportError, NotImplementedError):
        return None


def process_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` worker processes that leave Ctrl-C to the process that started them.

    Forked where possible: a worker then starts in milliseconds with the rules loaded (and
    ``check``'s workers find their job in memory). A caller who brings a process pool of
    its own to a scan should ignore SIGINT in its workers the same way, or Ctrl-C kills the
    units in progress instead of letting them finish early.
    """
    ctx = multiprocessing.get_context("fork" if FORKS else "spawn")
    return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_ignore_sigint)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    tune_gc_for_batch()  # a worker process of ours only judges batches
