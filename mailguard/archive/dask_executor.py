"""Scans on a Dask cluster: the scanner's work units run on ``dask.distributed`` workers.

The user starts ``dask scheduler`` and ``dask worker tcp://HOST:8786`` on their machines
and names the scheduler with ``scan --scheduler``. Nothing about judging changes: the
scanner submits the same :func:`~mailguard.archive.workers.judge_unit` calls to
:class:`DaskExecutor`, a :class:`concurrent.futures.Executor`, and each returns a small
:class:`~mailguard.archive.register.Tally` (counts and incidents, never one record per
message), merged in the scanning process exactly as a local pool's are.

* The scan's :class:`~mailguard.archive.workers.WorkSpec` (the pickled configuration) is
  sent to every worker once (``scatter(broadcast=True)``), not once per unit.
* Workers read the sources themselves, so the paths must be the same on every worker (a
  shared filesystem): :func:`missing_on_workers` asks each worker before the scan starts.
* A worker that dies mid-unit is Dask's to handle: the scheduler hands its units to
  another worker. A unit that kills workers again and again (``KilledWorker``) becomes
  :class:`~mailguard.archive.scanner.UnitLost`, an error entry, and the scan goes on.
* Ctrl-C: the scanner hands out nothing new and waits for the units in flight, which stop
  early where they can see the stop file (workers on the scanning machine); a second
  Ctrl-C cancels the futures at once.

``distributed`` is an optional dependency (``pip install 'mailguard-dlp[dask]'``); it is
imported only here, only for ``--scheduler``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, InvalidStateError
from typing import Any, TypeVar

from mailguard.archive.scanner import UnitLost
from mailguard.archive.workers import WorkSpec

T = TypeVar("T")

INSTALL = "pip install 'mailguard-dlp[dask]'"
CONNECT_TIMEOUT = 10.0
WORKERS_TIMEOUT = 30.0


class ClusterError(Exception):
    """The cluster cannot be used: the extra is missing, the scheduler cannot be reached,
    no worker is connected, or a source is not visible to the workers."""


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "--scheduler needs Dask's distributed scheduler, which is an optional extra: "
            f"install it with `{INSTALL}`"
        ) from None
    return distributed


def connect(address: str, *, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A client of the scheduler at ``address`` with at least one worker connected."""
    distributed = _distributed()
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise ClusterError(
            f"no Dask worker connected to the scheduler at {address} within "
            f"{WORKERS_TIMEOUT:g} s: start one with `dask worker {address}` ({exc})"
        ) from None
    return client


def worker_threads(client: Any) -> int:
    """How many units the cluster runs at once: the scanner keeps two per thread queued."""
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def _missing(paths: list[str]) -> list[str]:
    """Run on each worker: the paths it cannot see."""
    return [p for p in paths if not os.path.exists(p)]  # noqa: PTH110 - plain str paths


def missing_on_workers(client: Any, paths: Iterable[str]) -> dict[str, list[str]]:
    """Source path -> the workers (addresses) that cannot see it; empty when all can."""
    wanted = list(paths)
    if not wanted:
        return {}
    found: dict[str, list[str]] = {}
    for worker, missing in sorted(client.run(_missing, wanted).items()):
        for path in missing:
            found.setdefault(path, []).append(worker)
    return found


class DaskExecutor(Executor):
    """The scanner's executor on a cluster: ``concurrent.futures`` futures over Dask's.

    The client is the caller's (``shutdown`` does not close it).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._killed = _distributed().KilledWorker
        self._specs: dict[str, Any] = {}

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        args = tuple(self._scattered(a) if isinstance(a, WorkSpec) else a for a in args)
        inner = self._client.submit(fn, *args, pure=False, **kwargs)
        outer: Future[T] = Future()
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        inner.add_done_callback(lambda f: self._transfer(f, outer))
        return outer

    def _scattered(self, spec: WorkSpec) -> Any:
        """The spec as a future held by every worker: sent once per scan, not per unit."""
        if spec.key not in self._specs:
            self._specs = {spec.key: self._client.scatter(spec, broadcast=True, hash=False)}
        return self._specs[spec.key]

    def _transfer(self, inner: Any, outer: Future[Any]) -> None:
        try:
            if inner.status == "cancelled":
                if outer.cancel():
                    outer.set_running_or_notify_cancel()
                return
            exc = inner.exception()
            if exc is None:
                outer.set_result(inner.result())
            elif isinstance(exc, self._killed):
                outer.set_exception(UnitLost(f"Dask workers died running it ({exc})"))
            else:
                outer.set_exception(exc)
        except InvalidStateError:
            pass  # cancelled here meanwhile (Ctrl-C): nobody waits for it any more

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._specs.clear()
