"""What runs a work unit, wherever it runs: a thread, a local process, another machine.

A unit arrives with a :class:`WorkSpec` and nothing else: the worker builds its engine from
the spec on the first unit of a scan and keeps it in a cache keyed by the spec, so no state
is set up by a pool initialiser or kept in module globals, and any
:class:`concurrent.futures.Executor` can run :func:`judge_unit`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any, TypeVar

from mailguard.archive.maildir import read_files
from mailguard.archive.mbox import iter_mbox, messages_of
from mailguard.archive.people import Tokens
from mailguard.archive.register import ADDRESSES, Tally, parse_date
from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.resolver import DnsService, DnsSettings
from mailguard.services import Services
from mailguard.sources import Input

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
    label: str = ""
    """What an mbox's messages are reported as instead of ``path`` (a PST folder unpacked
    into a temporary file is ``file.pst:Sent Items``)."""
    offsets: tuple[int, ...] = ()
    """For ``mbox``: read only the messages at these offsets (an incremental re-scan
    re-reads the incidents of the last one); ``start``/``end`` are then unused."""


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
        self._original = True
        """This very object, in the process that made it: its attribute is the truth."""
        self._set = False
        self._next_look = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_owner": self._owner}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _original=False, _set=False, _next_look=0.0)

    def set(self) -> None:
        self._set = True
        with contextlib.suppress(OSError):  # e.g. a full /tmp: local threads still stop
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))

    def is_set(self) -> bool:
        if self._set or (self._original and os.getpid() == self._owner):
            return self._set
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + self.CHECK_EVERY
            self._set = os.path.exists(self.path)  # noqa: PTH110
        return self._set

    def remove(self) -> None:
        """Delete the file, if the stop was requested; call once the workers are done."""
        if self._set and self._original and os.getpid() == self._owner:
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
    dns: DnsSettings | None = None
    """``scan --dns``: each worker builds its own resolver service (none crosses a fork)."""
    tokens: Tokens = ADDRESSES
    """What stands for each exposed person in the incidents a worker sends back."""

    @classmethod
    def build(
        cls,
        config: Config,
        window: Window,
        stop: StopFlag,
        dns: DnsSettings | None = None,
        tokens: Tokens = ADDRESSES,
    ) -> WorkSpec:
        blob = pickle.dumps(config, pickle.HIGHEST_PROTOCOL)
        return cls(blob, window, stop, dns=dns, tokens=tokens)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkSpec) and other.key == self.key


class Worker:
    """What one process judges a scan's units with: its engine, built once."""

    def __init__(self, spec: WorkSpec) -> None:
        config: Config = pickle.loads(spec.config_blob)  # our own bytes, from WorkSpec.build
        dns = DnsService.from_settings(spec.dns) if spec.dns else None
        self.engine = Engine(config, services=Services(dns=dns))
        self.window = spec.window
        self.tokens = spec.tokens

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
            report = engine.check(
                item.data, source=item.source, mode="archived", incomplete=item.incomplete
            )
            when = parse_date(report.date)
            if self.window.admits(when):
                tally.add_report(report, len(item.data), when, self.tokens)
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
        if unit.offsets:
            for at in unit.offsets:
                yield from iter_mbox(Path(unit.path), at, at + 1, max_bytes, unit.label)
        else:
            yield from iter_mbox(Path(unit.path), unit.start, unit.end, max_bytes, unit.label)
    elif unit.kind == "files":
        for item in read_files(unit.files, max_bytes):
            yield from messages_of(item, max_bytes)
    else:
        yield from unit.inputs


class InlineExecutor(Executor):
    """Runs each unit at once in the calling thread: ``--jobs 1`` without a pool."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future
