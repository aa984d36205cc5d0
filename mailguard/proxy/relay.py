"""The upstream side: ``smtplib`` connections, each driven from a worker thread, reused.

Why ``smtplib`` on threads rather than an asyncio SMTP client: ``smtplib`` is the stdlib's
long-tested client for STARTTLS, implicit TLS, AUTH and ESMTP parameters, and adds no
dependency; the price is a thread hand-off per upstream command (tens of microseconds,
measured in ``benchmarks/bench_proxy.py``). It blocks, so it never runs on the event loop
that serves every client: every call below is made through :meth:`Relay.call`, which runs
it on the relay's thread pool. One connection serves one client transaction at a time
(checked out at MAIL, returned after the reply to DATA), so no connection is ever used by
two threads at once; between transactions it waits in the pool for the next one (connection
reuse), up to ``relay_idle`` seconds.

A failure is an :class:`UpstreamError` with an SMTP reply for the client, never a
traceback: a refused or broken upstream becomes ``451 4.4.x`` (try again later) or the
upstream's own reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mailguard.proxy.settings import PASSWORD_ENV, ProxySettings, parse_hostport

T = TypeVar("T")
Reply = tuple[int, str]
"""An SMTP reply: code and text (the text may span lines, joined with newlines)."""

BUSY: Reply = (451, "4.4.5 mailguard: every upstream connection is busy; try again later")
DISCONNECTED: Reply = (451, "4.4.2 mailguard: the upstream server closed the connection")


class UpstreamError(Exception):
    """The upstream cannot be used; ``reply`` is what the client is told."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply[0]} {reply[1]}")
        self.reply = reply


def _text(message: bytes | str) -> str:
    if isinstance(message, bytes):
        return message.decode("utf-8", "replace")
    return message


class Upstream:
    """One connection to the upstream; all methods block (call them through the pool)."""

    def __init__(self, settings: ProxySettings, helo: str) -> None:
        self.settings = settings
        self.helo = helo
        self.smtp: smtplib.SMTP | None = None
        self.idle_since = time.monotonic()
        self.in_transaction = False

    # ----------------------------------------------------------- connecting

    def connect(self) -> None:
        s = self.settings
        host, port = parse_hostport(s.relay, "relay")
        try:
            if s.relay_security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    host, port, local_hostname=self.helo, timeout=s.relay_timeout,
                    context=tls_context(s),
                )  # fmt: skip
            else:
                smtp = smtplib.SMTP(host, port, local_hostname=self.helo, timeout=s.relay_timeout)
            self.smtp = smtp
            code, _ = smtp.ehlo()
            if code != 250:
                smtp.helo()
            if s.relay_security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise UpstreamError((451, "4.7.5 mailguard: the upstream offers no STARTTLS"))
                smtp.starttls(context=tls_context(s))
                smtp.ehlo()
            if s.relay_user:
                if not smtp.has_extn("auth"):
                    raise UpstreamError((451, "4.7.0 mailguard: the upstream offers no AUTH"))
                smtp.login(s.relay_user, os.environ.get(PASSWORD_ENV, ""))
        except UpstreamError:
            self.close()
            raise
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise UpstreamError(
                (451, f"4.7.0 mailguard: upstream refused our login ({exc.smtp_code})")
            ) from None
        except ssl.SSLError as exc:
            self.close()
            reason = getattr(exc, "verify_message", "") or exc.reason or type(exc).__name__
            raise UpstreamError(
                (451, f"4.7.5 mailguard: TLS with the upstream failed ({reason})")
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise UpstreamError(
                (451, f"4.4.1 mailguard: cannot reach the upstream ({_why(exc)})")
            ) from None

    def alive(self) -> bool:
        return self.smtp is not None and self.smtp.sock is not None

    def close(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()
        with contextlib.suppress(OSError):
            smtp.close()

    # ----------------------------------------------------------- commands

    def _command(self, call: Callable[[smtplib.SMTP], tuple[int, bytes]]) -> Reply:
        if self.smtp is None:
            raise UpstreamError(DISCONNECTED)
        try:
            code, message = call(self.smtp)
        except smtplib.SMTPServerDisconnected:
            self.close()
            raise UpstreamError(DISCONNECTED) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise UpstreamError((451, f"4.4.2 mailguard: upstream failed ({_why(exc)})")) from None
        if code == -1 or code == 421:
            self.close()
            raise UpstreamError(DISCONNECTED if code == -1 else (421, _text(message)))
        return code, _text(message)

    def mail(self, sender: str, options: tuple[str, ...], *, reopen: bool = True) -> Reply:
        """Start a transaction. A pooled connection the upstream closed while it sat idle
        is re-opened once (``reopen``); within a split it is not: see actions.split."""
        if self.smtp is None:
            self.connect()
        try:
            reply = self._command(lambda smtp: smtp.mail(sender, _options(smtp, options)))
        except UpstreamError:
            if not reopen:
                raise
            self.connect()
            reply = self._command(lambda smtp: smtp.mail(sender, _options(smtp, options)))
        self.in_transaction = reply[0] == 250
        return reply

    def begin(self, sender: str, options: tuple[str, ...], recipient: str) -> tuple[Reply, Reply]:
        """MAIL and the first RCPT: the answers to both (RCPT gets MAIL's if MAIL failed)."""
        reply = self.mail(sender, options)
        if reply[0] != 250:
            return reply, reply
        return reply, self.rcpt(recipient)

    def rcpt(self, recipient: str) -> Reply:
        return self._command(lambda smtp: smtp.rcpt(recipient))

    def data(self, message: bytes) -> Reply:
        """DATA and the message (``smtplib`` dot-stuffs it); ends the transaction."""
        self.in_transaction = False
        return self._command(lambda smtp: _data(smtp, message))

    def rset(self) -> None:
        if self.in_transaction and self.smtp is not None:
            self.in_transaction = False
            with contextlib.suppress(UpstreamError):
                self._command(lambda smtp: smtp.rset())

    def send_copy(
        self, sender: str, options: tuple[str, ...], recipient: str, data: bytes
    ) -> Reply:
        """One whole transaction for one recipient (a split copy)."""
        reply = self.mail(sender, options, reopen=False)
        if reply[0] != 250:
            return reply
        reply = self.rcpt(recipient)
        if reply[0] not in (250, 251):
            self.rset()
            return reply
        return self.data(data)


def _options(smtp: smtplib.SMTP, options: tuple[str, ...]) -> list[str]:
    """The client's MAIL parameters the upstream understands (SIZE, BODY, SMTPUTF8)."""
    extension = {"SIZE": "size", "BODY": "8bitmime", "SMTPUTF8": "smtputf8"}
    return [
        o for o in options
        if o.split("=")[0] in extension and smtp.has_extn(extension[o.split("=")[0]])
    ]  # fmt: skip


def _data(smtp: smtplib.SMTP, message: bytes) -> tuple[int, bytes]:
    """``smtplib.SMTP.data`` raises for a refused DATA command; a reply is what we need."""
    try:
        return smtp.data(message)
    except smtplib.SMTPDataError as exc:
        error = exc.smtp_error
        return exc.smtp_code, error if isinstance(error, bytes) else str(error).encode()


def _why(exc: BaseException) -> str:
    """A short, address-free reason: the errno name or the exception type."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


@functools.lru_cache(maxsize=8)
def _context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile or None)


def tls_context(settings: ProxySettings) -> ssl.SSLContext:
    """Verified TLS for the upstream: the system's CAs, or only ``relay_ca`` when given."""
    return _context(settings.relay_ca)


class Relay:
    """The pool of upstream connections and the threads that drive them."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.helo = socket.gethostname() or "localhost"
        self.pool = ThreadPoolExecutor(
            max_workers=settings.relay_connections, thread_name_prefix="mailguard-relay"
        )
        self._idle: list[Upstream] = []
        self._slots = asyncio.Semaphore(settings.relay_connections)
        self.opened = 0
        """Upstream connections opened so far (tests and the benchmark read it)."""

    @property
    def idle(self) -> int:
        """Connections waiting in the pool for the next transaction."""
        return len(self._idle)

    async def call(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, func, *args)

    async def acquire(self) -> Upstream:
        """A connection for one transaction: a pooled one if fresh enough, else a new one.

        With every connection busy, a client waits up to ``relay_timeout`` for one, then
        gets a temporary refusal rather than waiting without end."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self.settings.relay_timeout)
        except TimeoutError:
            raise UpstreamError(BUSY) from None
        now = time.monotonic()
        while self._idle:
            upstream = self._idle.pop()
            if upstream.alive() and now - upstream.idle_since < self.settings.relay_idle:
                return upstream
            await self.call(upstream.close)
        self.opened += 1
        return Upstream(self.settings, self.helo)

    async def release(self, upstream: Upstream) -> None:
        """Back to the pool (after RSET if a transaction is open), or closed if broken."""
        try:
            if upstream.in_transaction:
                await self.call(upstream.rset)
            if upstream.alive():
                upstream.idle_since = time.monotonic()
                self._idle.append(upstream)
        finally:
            self._slots.release()

    async def sweep(self) -> None:
        """Close connections idle longer than ``relay_idle`` (called periodically)."""
        now = time.monotonic()
        stale = [u for u in self._idle if now - u.idle_since >= self.settings.relay_idle]
        self._idle = [u for u in self._idle if u not in stale]
        for upstream in stale:
            await self.call(upstream.close)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for upstream in idle:
            await self.call(upstream.close)
        self.pool.shutdown(wait=False, cancel_futures=True)
