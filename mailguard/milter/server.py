"""The milter daemon: asyncio sockets around :class:`~mailguard.milter.session.Session`.

One event loop serves every MTA connection. An everyday message (header block up to
``inline_header_bytes``) is decided right there: that takes well under a millisecond, less
than handing it to a thread would cost. It may hold the loop for ``inline_time_limit`` at
most: a decision that takes longer is stopped (:mod:`mailguard.deadline`) and started again
on a small thread pool, like a big message. There it neither stalls other connections nor
escapes its time budget: the MTA gets a progress frame every ``progress_interval`` seconds,
and past ``decision_timeout`` (counted from the end of the message, for every decision) the
message gets ``on_error`` (tempfail by default) and a log line, and the worker stops at its
next checkpoint rather than burning a CPU for a reply nobody waits for (a check that never
reaches one gives its slot to a spare thread: :mod:`mailguard.milter.workers`).

Connections are bounded too: at most ``max_connections`` at once (one more is closed with a
log line, so the MTA applies ``milter_default_action``), the open-file limit is raised to fit
them, and a connection the MTA left silent for ``idle_timeout`` is closed.

TCP listeners set ``TCP_NODELAY`` and re-arm ``TCP_QUICKACK`` after every read: Postfix
writes a command in more than one segment, and Nagle on its side meeting delayed ACK on
ours costs ~40 ms per message (``../shared/notes/postfix-milter.md``, pitfall 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import grp
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from mailguard.attachments import might_attach
from mailguard.config import Config
from mailguard.engine import Engine, ran_out_of_time
from mailguard.milter import logline, rewrite
from mailguard.milter import protocol as p
from mailguard.milter.decision import Outcome, failure_outcome, log_fields, outcome_for
from mailguard.milter.early import decide_at_headers, header_decisions
from mailguard.milter.listen import FD_RESERVE as FD_RESERVE  # re-exported
from mailguard.milter.listen import ListenSpec, fd_budget, remove_stale_socket
from mailguard.milter.session import NOTHING, Session, Step, Transaction
from mailguard.milter.settings import MilterSettings, off_the_loop
from mailguard.milter.workers import Workers, decide_on_worker, over_budget
from mailguard.recipients import Envelope
from mailguard.report import Report
from mailguard.resolver import no_waiting
from mailguard.rules import BODY_PARTS
from mailguard.services import Services

log = logging.getLogger("mailguard.milter")

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_RELOAD_AT = (p.MAIL, p.OPTNEG)  # frames before which a reloaded configuration is taken up
REFUSAL_LOG_INTERVAL = 10.0
"""At most one log line per this many seconds about refused connections (with a count)."""
_WARM_UP = (
    b"From: a@warm-up.example\r\nTo: b@warm-up.test, c@gmail.com\r\nSubject: warm-up\r\n\r\n"
    b"Appointment at the clinic.\r\n"
)

LEARNED = ("pass", "warn")
"""Verdicts of the accepted mail the milter records when ``[history] learn = true``."""


class MilterServer:
    """Listens, hands each connection a :class:`MilterConnection`, owns the engine."""

    def __init__(
        self,
        config: Config,
        listen: ListenSpec,
        *,
        socket_mode: int = 0o660,
        socket_group: str | None = None,
        settings: MilterSettings | None = None,
        reload: Callable[[], tuple[Config, MilterSettings, Services]] | None = None,
        workers: int = 4,
        services: Services | None = None,
    ) -> None:
        self.listen = listen
        self.socket_mode = socket_mode
        self.socket_group = socket_group
        self._reload = reload
        self.workers = Workers(workers)
        self.pool = self.workers.pool
        self.connections: set[MilterConnection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._refused = 0
        """Connections refused since the last log line about it."""
        self._refusal_logged = -REFUSAL_LOG_INTERVAL
        self.max_connections = 0
        self.services = services or Services()
        self.apply(config, settings or MilterSettings())

    def apply(
        self, config: Config, settings: MilterSettings, services: Services | None = None
    ) -> None:
        """New configuration: later messages use it, decisions under way keep theirs.

        ``config`` decides (as in ``mailguard check``); ``settings`` (the ``[milter]``
        table) says what the mail server does with the decision. ``services`` (the DNS
        resolver): ``None`` keeps the current ones, and their cache.
        """
        if services is not None:
            self.services = services
        # Load what the engine loads lazily (suffix list, vocabulary) now rather than in the
        # first sender's decision, then move it out of the garbage collector's way: those
        # long-lived objects would otherwise be re-scanned at every full collection. Warmed
        # without services: a made-up domain must not go out to DNS.
        warm = Envelope("<a@warm-up.example>", ("<b@warm-up.test>",))
        Engine(config).check(_WARM_UP, envelope=warm)
        engine = Engine(config, services=self.services)
        gc.collect()
        gc.freeze()
        wanted = settings.max_connections
        cap = fd_budget(wanted)
        if cap < wanted:
            log.warning(
                "max_connections lowered from %d to %d: the open-file limit allows no more "
                "(raise LimitNOFILE / ulimit -n)", wanted, cap,
            )  # fmt: skip
        settings = off_the_loop(settings, engine.foreign_rules("outgoing"))
        settings = header_decisions(settings, engine)
        self.config, self.settings, self.engine = config, settings, engine
        self.keep_body = bool(engine.reads("outgoing") & BODY_PARTS)
        self.reads_files = "attachments" in engine.reads("outgoing")
        logline.set_flush_each(settings.log_flush)
        self.max_connections = cap

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.listen.family == "unix":
            path = Path(self.listen.path)
            remove_stale_socket(path)
            self._server = await loop.create_unix_server(
                lambda: MilterConnection(self), str(path), backlog=256
            )
            path.chmod(self.socket_mode)
            if self.socket_group:
                os.chown(path, -1, grp.getgrnam(self.socket_group).gr_gid)
        else:
            self._server = await loop.create_server(
                lambda: MilterConnection(self),
                self.listen.host,
                self.listen.port,
                backlog=256,
                reuse_address=True,
            )
        self._sweeper = loop.create_task(self._close_idle())
        self._flusher = loop.create_task(logline.flush_every(1.0))
        log.info(
            "listening on %s (mode=%s, on_block=%s, on_error=%s, scope=%s, max_connections=%d)",
            self.bound, self.settings.mode, self.settings.on_block, self.settings.on_error,
            self.settings.scope, self.max_connections,
        )  # fmt: skip

    @property
    def bound(self) -> str:
        """The listening address, with the real port when port 0 was asked for."""
        if self._server is None:
            return str(self.listen)
        if self.listen.family == "unix":
            return f"unix:{self.listen.path}"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"inet:{host}:{port}"

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (SIGTERM/SIGINT), reloading config on SIGHUP."""
        loop = asyncio.get_running_loop()
        if self._reload is not None:
            # Before the socket listens: a reload sent as soon as the milter answers (a
            # service manager, a script) must find the handler, not SIGHUP's default
            # action, which ends the process.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if self._server is None:
            await self.start()
        await stop.wait()
        await self.close()

    def _on_sighup(self) -> None:
        assert self._reload is not None
        try:
            self.apply(*self._reload())
        except Exception as exc:  # a bad edit must not kill a running gate
            log.error("reload failed, keeping the previous configuration: %s", exc)
            return
        log.info("configuration reloaded")

    def admit(self) -> bool:
        """Whether one more connection fits under the cap; a refusal is logged (rate-limited)."""
        if len(self.connections) < self.max_connections:
            return True
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            log.warning(
                "refused %d connection(s): %d open is max_connections; the MTA applies its "
                "milter_default_action to those sessions", self._refused, len(self.connections),
            )  # fmt: skip
            self._refused, self._refusal_logged = 0, now
        return False

    async def _close_idle(self) -> None:
        """Close connections the MTA left silent for ``idle_timeout`` (never mid-decision)."""
        while True:
            timeout = self.settings.idle_timeout
            await asyncio.sleep(min(max(timeout / 4, 0.02), 5.0))
            cutoff = time.monotonic() - timeout  # the clock of MilterConnection.last_seen
            idle = [c for c in self.connections if c.deciding is None and c.last_seen < cutoff]
            if idle:
                log.warning(
                    "closing %d connection(s) silent for more than %g s (idle_timeout)",
                    len(idle), timeout,
                )  # fmt: skip
            for conn in idle:
                conn.close()

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening; let decisions under way finish (up to ``grace`` s), then close."""
        if self._server is not None:
            self._server.close()
        for task in (self._sweeper, self._flusher):
            if task is not None:
                task.cancel()
        deadline = time.monotonic() + grace
        while any(c.deciding for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
        if self.listen.family == "unix":
            with contextlib.suppress(OSError):
                Path(self.listen.path).unlink()
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("stopped")
        logline.flush()

    def judge(
        self, txn: Transaction, leading_space: bool, queue_id: str, deadline: float
    ) -> Report:
        """The same engine and config as ``mailguard check``, stopped at ``deadline``; a
        ``rewrite`` action is planned and re-checked there too (:mod:`.rewrite`)."""
        return rewrite.judge(self.engine, txn, leading_space, f"queue {queue_id}", deadline)


class MilterConnection(asyncio.Protocol):
    """One MTA connection. Frames are handled in order; none while a decision runs."""

    def __init__(self, server: MilterServer) -> None:
        self.server = server
        self.session = Session(server.settings, server.keep_body)
        self.decoder = p.FrameDecoder()
        self.backlog: deque[tuple[bytes, bytes]] = deque()
        self.transport: asyncio.Transport | None = None
        self.deciding: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._clock = time.monotonic
        self.last_seen = self._clock()
        """When the MTA last sent something or we last answered (for ``idle_timeout``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.server.admit():
            transport.close()  # before a byte is read: the MTA sees EOF at negotiation
            return
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        self.server.connections.add(self)
        if self.server.listen.family == "unix":
            return  # no Nagle, no delayed ACK: the socket needs nothing set
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if _QUICKACK is not None:
                self._sock = sock

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.deciding is not None:
            self.deciding.cancel()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # refused at connection_made
        self.last_seen = self._clock()
        if self._sock is not None and _QUICKACK is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        try:
            frames = self.decoder.feed(data)
        except p.ProtocolError as exc:
            self._protocol_error(exc)
            return
        if self.backlog or self.deciding is not None:
            self.backlog.extend(frames)  # behind frames still waiting for a decision
            self._drain()
        else:
            self._run(frames)  # nearly always: no queue to pass through

    def _drain(self) -> None:
        if self.backlog and self.deciding is None and self.transport is not None:
            frames, self.backlog = list(self.backlog), deque()
            self._run(frames)

    def _run(self, frames: list[tuple[bytes, bytes]]) -> None:
        """Handle frames in order; those after a decision that went to a worker (or after
        the connection went away) wait in the backlog for :meth:`_drain`."""
        handle = self.session.handle
        for i, (command, payload) in enumerate(frames):
            if command in _RELOAD_AT:
                self.session.reload(self.server.settings, self.server.keep_body)
            try:
                step = handle(command, payload)
            except p.ProtocolError as exc:
                self._protocol_error(exc)
                return
            if step is not NOTHING:
                self._act(step)
                if self.deciding is not None or self.transport is None:
                    self.backlog.extend(frames[i + 1 :])
                    return

    def _act(self, step: Step) -> None:
        if step.replies:
            self._write(b"".join(step.replies))
        txn = step.decide
        if txn is not None and step.at_headers:
            decide_at_headers(self, txn)
        elif txn is not None:
            started = time.monotonic()
            settings = txn.settings
            inline = txn.header_bytes <= settings.inline_header_bytes and settings.inline_time_limit
            # Attached files take milliseconds to read, not microseconds: always a worker's.
            if inline and not (self.server.reads_files and might_attach(txn.content_type())):
                self._decide_inline(txn, started)
            else:
                self._offload(txn, started)
        if step.close:
            self.close()

    def _decide_inline(self, txn: Transaction, started: float) -> None:
        """Small headers: a decision takes well under a millisecond, cheaper than a hand-off.

        Every other connection waits while this runs, so it is stopped after
        ``inline_time_limit`` and done again on a worker (the time spent counts against
        ``decision_timeout``): a message that is slow to judge costs the others that much
        at most.
        """
        settings = txn.settings
        queue_id = txn.macros.get("i", "") or "-"
        limit = min(settings.inline_time_limit, settings.decision_timeout)
        report: Report | None = None
        failure = ""
        try:
            # A DNS answer not cached yet is not waited for here: the lookups start and
            # the decision moves to a worker, as a slow one does (resolver.WouldBlock).
            with no_waiting():
                report = self.server.judge(
                    txn, self.session.caps.leading_space, queue_id, started + limit
                )
        except Exception as exc:  # Engine.check does not raise; this guards our own glue
            failure = f"internal error ({type(exc).__name__})"
        # Late though complete (a step reached no checkpoint): the budget holds, as on a worker.
        late = (now := time.monotonic()) > started + settings.decision_timeout
        if report is not None and (late or ran_out_of_time(report)):  # or waits for DNS
            if not late and (limit < settings.decision_timeout or now < started + limit):
                log.debug("queue_id=%s: over %g s inline, moved to a worker", queue_id, limit)
                self._offload(txn, started)
                return
            report, failure = None, over_budget(settings.decision_timeout)
        self._conclude(txn, queue_id, report, started, failure)

    def _offload(self, txn: Transaction, started: float) -> None:
        # The MTA waits for our reply; anything else it sends meanwhile stays in the kernel's
        # socket buffer instead of our memory.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.deciding = asyncio.ensure_future(decide_on_worker(self, txn, started))

    def _conclude(
        self, txn: Transaction, queue_id: str, report: Report | None, started: float, failure: str
    ) -> None:
        settings = txn.settings
        outcome = failure_outcome(settings)
        if report is not None:
            try:
                outcome = outcome_for(report, settings, self.session.caps, txn)
            except Exception as exc:
                report, failure = None, f"internal error ({type(exc).__name__})"
            else:
                if (txn.dropped_fields or txn.body_missing) and report.verdict != "block":
                    # Recipients may sit in the fields not kept: that is "cannot decide".
                    outcome, failure = failure_outcome(settings), txn.incomplete
        # Logged before the MTA hears of it: every action taken has its line in the log.
        self._log(queue_id, txn, report, outcome, started, failure)
        self._write(b"".join(self.session.conclude(outcome.frames)))
        self.last_seen = self._clock()
        if report is not None and outcome.action == "accept" and report.verdict in LEARNED:
            self._learn(txn)

    def _learn(self, txn: Transaction) -> None:
        """Record accepted mail in the history store (``[history] learn = true``), in a
        worker thread: a write must not hold up the event loop. Headers only, with the
        envelope recipients as Bcc so that Bcc'd recipients are learned too."""
        history = self.server.services.history
        if history is None or not getattr(getattr(history, "settings", None), "learn", False):
            return
        head = b"".join(name + b": " + value.strip() + b"\r\n" for name, value in txn.headers)
        if txn.rcpt_to:
            head += b"Bcc: " + ", ".join(txn.rcpt_to).encode("utf-8", "replace") + b"\r\n"
        self.server.pool.submit(history.learn, head + b"\r\n")

    def _log(
        self,
        queue_id: str,
        txn: Transaction,
        report: Report | None,
        outcome: Outcome,
        started: float,
        failure: str,
        stage: str = "",
    ) -> None:
        """One line per decision, counts and codes only (:mod:`mailguard.milter.logline`)."""
        fields: dict[str, object] = {"queue_id": queue_id, "mode": txn.settings.mode}
        fields.update(log_fields(report, outcome))
        fields["ms"] = f"{(time.monotonic() - started) * 1000:.2f}{stage}"
        history = self.server.services.history
        if history is not None and getattr(history, "state", "ok") != "ok":
            fields["history"] = history.state  # deciding without the history rules
        if txn.settings.log_addresses:
            fields["from"] = txn.mail_from or "<>"
        line = "decision " + " ".join([f"{k}={v}" for k, v in fields.items()])
        if failure:
            logline.emit(log, logging.ERROR, f"{line} error={failure!r}")
        else:
            logline.emit(log, logging.INFO, line)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    write = _write  # for mailguard.milter.early and .workers
    conclude = _conclude
    drain = _drain
    log_decision = _log

    def _protocol_error(self, exc: p.ProtocolError) -> None:
        # Closing makes the MTA apply milter_default_action (tempfail by default): explicit,
        # and never a silent accept of a message we could not follow.
        log.error("protocol error, closing the connection: %s", exc)
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
