"""The proxy daemon: one event loop, aiosmtpd protocols, the relay pool, the journal.

Started by ``mailguard proxy`` (or by tests and the benchmark in a thread of their own).
Everything that can be wrong about its settings (a missing upstream, a certificate that
does not load, an open relay on a public address) is a :class:`ConfigError` before the
socket opens, never a traceback later.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.errors import ConfigError
from mailguard.milter import logline
from mailguard.milter.serving import serve_until_signalled
from mailguard.proxy.auth import Users
from mailguard.proxy.handler import Gateway, ProxySMTP, quiet_aiosmtpd
from mailguard.proxy.journal import Journal
from mailguard.proxy.relay import Relay
from mailguard.proxy.settings import (
    ProxySettings,
    default_journal,
    is_loopback,
    parse_hostport,
    validate_for_run,
)  # fmt: skip
from mailguard.services import Services

log = logging.getLogger("mailguard.proxy")
STOP_GRACE = 5.0
"""Seconds a message being judged or relayed at shutdown has to get its answer before its
client is told ``421`` (as every other client is at once) and its upstream dropped."""
_WARM_UP = b"From: a@warm-up.example\r\nTo: b@warm-up.test\r\nSubject: warm-up\r\n\r\nhi\r\n"


def server_tls(settings: ProxySettings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"proxy: cannot load --tls-cert/--tls-key: {exc}") from None
    return context


class ProxyServer:
    def __init__(
        self, config: Config, settings: ProxySettings, *, services: Services | None = None
    ) -> None:
        validate_for_run(settings)
        host, self.port = parse_hostport(settings.listen, "--listen")
        self.host = host
        if not is_loopback(host) and not settings.users_file:
            raise ConfigError(
                f"proxy: listening on {host} without [proxy] users_file would be an open "
                "relay for anyone who can reach it; set users_file or listen on loopback"
            )
        if not is_loopback(host) and settings.users_file and not settings.tls_cert:
            raise ConfigError(
                f"proxy: clients on {host} could only log in without encryption; "
                "give --tls-cert/--tls-key (or listen on loopback)"
            )
        self.settings = settings
        self.tls = server_tls(settings)
        self.users = Users.load(Path(settings.users_file)) if settings.users_file else None
        self.journal = Journal(Path(settings.journal or default_journal()), settings.journal_days)
        self.engine = Engine(config, services=services)
        self.engine.check(_WARM_UP)  # load the suffix list and vocabulary before the first client
        self.config = config
        self.relay: Relay | None = None
        self.gateway: Gateway | None = None
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        quiet_aiosmtpd()
        loop = asyncio.get_running_loop()
        settings = self.settings
        self.relay = relay = Relay(settings)
        gateway = Gateway(
            self.engine, self.config.scoring, settings, relay, self.journal, self.users
        )
        self.gateway = gateway
        hostname = socket.gethostname() or "localhost"

        def protocol() -> ProxySMTP:
            return ProxySMTP(
                gateway, data_size_limit=settings.max_message_bytes, enable_SMTPUTF8=True,
                hostname=hostname, ident="mailguard proxy", tls_context=self.tls,
                timeout=settings.idle_timeout, auth_required=self.users is not None,
                auth_require_tls=True, loop=loop,
                authenticator=gateway.authenticate if self.users is not None else None,
            )  # fmt: skip

        try:
            self._server = await loop.create_server(
                protocol, self.host, self.port, backlog=256, reuse_port=settings.workers > 1
            )
        except OSError as exc:
            raise ConfigError(
                f"proxy: cannot listen on {settings.listen}: {exc.strerror}"
            ) from None
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self._sweeper = asyncio.ensure_future(self._sweep())
        # The per-message line goes to a buffered handler (mailguard.milter.logline), when
        # the command set one up: written out within a second, warnings at once.
        self._flusher = asyncio.ensure_future(logline.flush_every(1.0))
        log.info("listening on %s:%d, relaying to %s (%s)", self.host, self.port,
                 settings.relay, settings.relay_security)  # fmt: skip

    async def _sweep(self) -> None:
        assert self.relay is not None
        while True:
            await asyncio.sleep(max(1.0, self.settings.relay_idle / 2))
            await self.relay.sweep()

    async def close(self) -> None:
        for task in (self._sweeper, self._flusher):
            if task is not None:
                task.cancel()
        if self._server is not None:
            self._server.close()
        if self.gateway is not None:
            await self.gateway.stop_serving(STOP_GRACE)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self.relay is not None:
            await self.relay.close()
        if self.gateway is not None:
            self.gateway.decide_pool.shutdown(wait=False, cancel_futures=True)
        self.journal.close()
        log.info("stopped")
        flush_logs()

    async def serve(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()


def flush_logs() -> None:
    """Write out buffered log lines; a closed or broken stream is not a reason to fail."""
    with contextlib.suppress(ValueError, OSError):
        logline.flush()


def run_workers(make: Callable[[], ProxyServer], workers: int) -> int:
    """``workers`` processes on one port (SO_REUSEPORT), each with its own event loop, relay
    pool and engine; SIGTERM/SIGINT to this parent stops them all. Each is forked before
    it builds anything (no threads, sockets or SQLite handles cross a fork)."""
    children: list[int] = []
    for _ in range(workers):
        flush_logs()  # nothing buffered is inherited (and written twice)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                run(make())
            except BaseException as exc:  # a worker's failure is its exit status, logged
                log.error("worker failed: %s", exc if isinstance(exc, ConfigError) else
                          type(exc).__name__)  # fmt: skip
                code = 2
            flush_logs()
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


def run(server: ProxyServer) -> None:
    """Serve until SIGTERM or SIGINT, on asyncio's own event loop. Not uvloop, unlike the
    milter: aiosmtpd is developed on asyncio's loop (its STARTTLS swaps asyncio's SSL
    protocol onto the transport), and uvloop's gain here was within the benchmark's noise
    on the shared development VM (measured again after the CPU cuts of the asyncio upstream
    client and the block-wise DATA: 0.76 to 0.79 ms per message either way; and after the
    command lane, three alternating pairs: 0.53 to 0.55 ms either way). The tests run the
    proxy on the same loop.

    What start-up built (the engine's tables, the modules) lives as long as the daemon: frozen
    out of the garbage collector's sight, a full collection no longer walks it (~10 us per
    message with one client per message, where each connection leaves a few dozen objects
    in reference cycles, so collections keep coming). Only here, in the daemon's own
    process: a program that embeds :class:`ProxyServer` keeps its collector as it is."""
    gc.collect()
    gc.freeze()
    asyncio.run(serve_until_signalled(server))
