"""The upstream side: our own small asyncio SMTP client, its connections pooled and reused.

Why not ``smtplib`` (what this module used first): it blocks, so every upstream command
had to be handed to a worker thread and its answer back to the event loop. Those hand-offs
(a queue, a futex wake-up, the loop's self-pipe, the GIL going back and forth), two per
message, and ``smtplib``'s line-at-a-time reading were about a third of the proxy's CPU per
message in ``benchmarks/bench_proxy.py``. Here a connection is an :class:`asyncio.Protocol`
on the event loop that serves the clients: a command is one ``write``, its reply a future.
MAIL and the first RCPT go out in one write when the upstream offers PIPELINING (RFC 2920);
each still gets its own reply, and a refused recipient is still refused to the client.

What ``smtplib`` did and the proxy relies on is kept, and tested against the real thing:
the MAIL/RCPT path as :func:`smtplib.quoteaddr` writes it (:func:`quote_path`), the
message sent as bytes with leading dots doubled and ``CRLF.CRLF`` after it, replies parsed
as ``getreply`` does (lines joined with newlines), EHLO then HELO, STARTTLS with the
certificate verified and EHLO again, implicit TLS, and AUTH with CRAM-MD5, PLAIN or LOGIN
in ``smtplib``'s order of preference. An upstream that answers STARTTLS with anything but
``220`` is a ``451 4.7.5`` (``smtplib`` raised there too), never clear text.

One connection serves one client transaction at a time (checked out at MAIL, returned after
the reply to DATA); between transactions it waits in the pool for the next one (connection
reuse), up to ``relay_idle`` seconds. A failure is an :class:`UpstreamError` with an SMTP
reply for the client, never a traceback: a refused or broken upstream becomes ``451 4.4.x``
(try again later); the upstream's own refusal of the message or a recipient is passed on,
and :func:`~mailguard.proxy.wire.gateway_failure` tells the two apart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import logging
import os
import re
import socket
import ssl
import time

from mailguard.proxy.settings import PASSWORD_ENV, ProxySettings, parse_hostport
from mailguard.proxy.wire import (
    DISCONNECTED,
    Failed,
    Replies,
    Reply,
    gateway_failure,
    quote_path,
    stuffed,
)

log = logging.getLogger("mailguard.proxy")
BUSY: Reply = (451, "4.4.5 mailguard: every upstream connection is busy; try again later")
CLIENT_ASCII: Reply = (553, "5.6.7 mailguard: a non-ASCII address needs SMTPUTF8 on MAIL FROM")
UPSTREAM_ASCII: Reply = (
    553,
    "5.6.7 mailguard: the upstream does not take non-ASCII addresses (it offers no SMTPUTF8)",
)
INLINE_STUFF_BYTES = 1024 * 1024
"""Dot-stuffing a message up to this size takes well under a millisecond on the loop."""
_FEATURE = re.compile(r"([A-Za-z0-9][A-Za-z0-9\-]*) ?")


class UpstreamError(Exception):
    """The upstream cannot be used; ``reply`` is what the client is told."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply[0]} {reply[1]}")
        self.reply = reply


class Upstream:
    """One connection to the upstream; every method runs on the event loop."""

    def __init__(self, settings: ProxySettings, helo: str) -> None:
        self.settings = settings
        self.helo = helo
        self.idle_since = time.monotonic()
        self.in_transaction = False
        self.features: dict[str, str] = {}
        self._encoding = "ascii"
        self._not_ascii: Reply = CLIENT_ASCII
        self._since: float | None = None
        """When the reply being waited for was asked (loop time); None: not waiting."""
        self._watchdog: asyncio.TimerHandle | None = None
        self._replies: Replies | None = None

    # ----------------------------------------------------------- connecting

    async def connect(self) -> None:
        s = self.settings
        host, port = parse_hostport(s.relay, "relay")
        loop = asyncio.get_running_loop()
        self.close()
        try:
            context = tls_context(s) if s.relay_security == "tls" else None
            _, self._replies = await asyncio.wait_for(loop.create_connection(
                lambda: Replies(loop), host, port, ssl=context,
                server_hostname=host if context else None,
            ), s.relay_timeout)  # fmt: skip
            code, _ = await self._answer()
            if code != 220:
                raise Failed("SMTPConnectError")
            await self._hello()
            if s.relay_security == "starttls":
                if "starttls" not in self.features:
                    raise UpstreamError((451, "4.7.5 mailguard: the upstream offers no STARTTLS"))
                code, _ = await self.command("STARTTLS")
                if code != 220:
                    why = f"4.7.5 mailguard: the upstream refused STARTTLS ({code})"
                    raise UpstreamError((451, why))
                await self._start_tls(loop, host)
                await self._hello()
            if s.relay_user:
                if "auth" not in self.features:
                    raise UpstreamError((451, "4.7.0 mailguard: the upstream offers no AUTH"))
                await self._login(s.relay_user, os.environ.get(PASSWORD_ENV, ""))
        except UpstreamError:
            self.close()
            raise
        except asyncio.CancelledError:
            self.abort()  # half set up: never pooled
            raise
        except ssl.SSLError as exc:
            self.close()
            reason = getattr(exc, "verify_message", "") or exc.reason or type(exc).__name__
            raise UpstreamError(
                (451, f"4.7.5 mailguard: TLS with the upstream failed ({reason})")
            ) from None
        except Failed as exc:
            self.close()
            why = "SMTPServerDisconnected" if exc.why == "closed" else exc.why
            raise UpstreamError(
                (451, f"4.4.1 mailguard: cannot reach the upstream ({why})")
            ) from None
        except OSError as exc:
            self.close()
            raise UpstreamError(
                (451, f"4.4.1 mailguard: cannot reach the upstream ({_why(exc)})")
            ) from None
        except ValueError:  # a CRAM-MD5 challenge that is not base64
            self.close()
            raise UpstreamError(
                (451, "4.4.1 mailguard: cannot reach the upstream (SMTPException)")
            ) from None

    async def _start_tls(self, loop: asyncio.AbstractEventLoop, host: str) -> None:
        replies = self._replies
        assert replies is not None and replies.transport is not None
        if replies.unread():
            # Replies sent in clear text behind the 220 would be read as the encrypted
            # session's (STARTTLS response injection): smtplib drops them with its file
            # object; here the connection is refused.
            raise UpstreamError(
                (451, "4.7.5 mailguard: the upstream sent more than its 220 to STARTTLS")
            )
        transport = await asyncio.wait_for(loop.start_tls(
            replies.transport, replies, tls_context(self.settings), server_hostname=host
        ), self.settings.relay_timeout)  # fmt: skip
        if transport is None:
            raise Failed("closed")
        replies.transport = transport  # type: ignore[assignment]

    async def _hello(self) -> None:
        """EHLO and its extensions, as ``smtplib.SMTP.ehlo`` reads them; HELO if refused."""
        code, text = await self.command(f"EHLO {self.helo}")
        self.features = features = dict[str, str]()
        if code != 250:
            code, _ = await self.command(f"HELO {self.helo}")
            if code != 250:  # as smtplib's SMTPHeloError: MAIL would only be refused (503)
                raise Failed("SMTPHeloError")
            return
        for line in text.split("\n")[1:]:
            if line[:5].lower() == "auth=":
                features["auth"] = f"{features.get('auth', '')} {line[5:]}"
            elif match := _FEATURE.match(line):
                name, params = match.group(1).lower(), line[match.end(1) :].strip()
                features[name] = f"{features.get(name, '')} {params}" if name == "auth" else params

    async def _login(self, user: str, password: str) -> None:
        """``smtplib.SMTP.login``: the first of CRAM-MD5, PLAIN, LOGIN the upstream offers."""
        offered = self.features["auth"].upper().split()
        methods = [m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in offered]
        if not methods:
            raise UpstreamError(
                (451, "4.7.0 mailguard: the upstream offers no AUTH method we have")
            )
        code = 535
        for method in methods:
            if method == "CRAM-MD5":
                code, text = await self.command("AUTH CRAM-MD5")
                if code == 334:
                    digest = hmac.new(password.encode(), base64.b64decode(text), "md5")
                    code, text = await self.command(_b64(f"{user} {digest.hexdigest()}"))
            elif method == "PLAIN":
                code, text = await self.command("AUTH PLAIN " + _b64(f"\0{user}\0{password}"))
            else:
                code, text = await self.command(f"AUTH LOGIN {_b64(user)}")
                if code == 334:
                    code, text = await self.command(_b64(password))
            if code in (235, 503):
                return
        raise UpstreamError((451, f"4.7.0 mailguard: upstream refused our login ({code})"))

    def alive(self) -> bool:
        """Open, and not a reply behind: a reply nobody asked for (an upstream that answers
        twice, a 421 before it closes) would be read as the next command's answer."""
        replies = self._replies
        return (
            replies is not None
            and replies.lost is None
            and not replies.transport.is_closing()  # type: ignore[union-attr]
            and not replies.unread()
        )

    def abort(self) -> None:
        """Drop the connection without a word: nothing more may reach the upstream on it
        (in the middle of DATA a QUIT would be message text; without the end mark the
        upstream discards the message)."""
        replies, self._replies = self._replies, None
        if replies is not None and replies.transport is not None:
            replies.lost = replies.lost or Failed("closed")
            replies.transport.abort()

    def close(self) -> None:
        """QUIT, without waiting for the answer, then close (the write is flushed first)."""
        replies, self._replies = self._replies, None
        if replies is None or replies.transport is None:
            return
        if replies.lost is None and not replies.transport.is_closing():
            replies.transport.write(b"QUIT\r\n")
        replies.lost = replies.lost or Failed("closed")
        replies.transport.close()

    # ----------------------------------------------------------- commands

    async def _answer(self) -> Reply:
        replies = self._replies
        if replies is None:
            raise Failed("closed")
        return await self._within(replies.expect())

    async def _within(self, future: asyncio.Future[Reply]) -> Reply:
        """The reply, or the connection closed after ``relay_timeout`` (as ``smtplib``'s
        socket timeout: ``TimeoutError``). One watchdog timer per connection instead of a
        timer per reply: it notes when the current wait began and, when it fires, either
        gives up on the connection or waits on for the rest (one wait at a time: the
        commands of a transaction are sequential)."""
        if future.done():
            return future.result()
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.settings.relay_timeout, self._watch)
        try:
            return await future
        finally:
            self._since = None

    def _watch(self) -> None:
        self._watchdog = None
        since, replies = self._since, self._replies
        if since is None or replies is None:
            return  # not waiting: the next wait starts a new timer
        waited = asyncio.get_running_loop().time() - since
        if waited >= self.settings.relay_timeout:
            replies.fail(Failed("TimeoutError"))
        else:
            self._watchdog = asyncio.get_running_loop().call_later(
                self.settings.relay_timeout - waited, self._watch
            )

    def _send(self, *commands: bytes) -> list[asyncio.Future[Reply]]:
        replies = self._replies
        if replies is None or replies.lost is not None or replies.transport is None:
            raise replies.lost if replies and replies.lost else Failed("closed")
        futures = [replies.expect() for _ in commands]
        replies.transport.write(b"".join(commands))
        return futures

    async def command(self, line: str) -> Reply:
        """One command while connecting (EHLO, STARTTLS, AUTH): a failure is ``Failed``."""
        return await self._within(self._send(line.encode("utf-8", "surrogateescape") + b"\r\n")[0])

    async def _checked(self, *commands: bytes, go_on: int = 2) -> list[Reply]:
        """Send, read every reply: each is ``go_on``xx (2: done, 3: send the data) or a
        refusal of the message (4xx, 5xx). Anything else closes the connection and is an
        UpstreamError with a 4xx for the client (:func:`~.wire.gateway_failure`)."""
        futures: list[asyncio.Future[Reply]] = []
        try:
            futures = self._send(*commands)
            replies = [await self._within(future) for future in futures]
        except Failed as exc:
            for future in futures:  # the rest of a pipeline failed too: seen, not logged
                if future.done() and not future.cancelled():
                    future.exception()
            self.close()
            raise UpstreamError(exc.reply) from None
        except asyncio.CancelledError:
            self.abort()  # the client went away mid-command: this connection's state is unknown
            raise
        for code, _ in replies:
            failure = gateway_failure(code, go_on)
            if failure is None:
                if code // 100 != go_on:
                    break  # refused: what follows in the pipeline follows from it (503)
                continue
            if code in (530, 538):  # nothing will pass until the settings change
                log.error("the upstream refused the proxy's own session with %d: does it "
                          "need relay_security or relay_user?", code)  # fmt: skip
            if code == 421:
                self.close()
            else:  # out of step with the upstream, or garbage: not a word more (in DATA
                self.abort()  # it is text)
            raise UpstreamError(failure)
        return replies

    def _mail_line(self, sender: str, options: tuple[str, ...]) -> tuple[bytes, str]:
        extension = {"SIZE": "size", "BODY": "8bitmime", "SMTPUTF8": "smtputf8"}
        kept = [o for o in options if extension.get(o.split("=")[0]) in self.features]
        encoding = "utf-8" if "SMTPUTF8" in kept else "ascii"
        # Why an address cannot go as ASCII: the client did not ask for SMTPUTF8, or the
        # upstream does not offer it (then only another relay can take the message).
        self._not_ascii = UPSTREAM_ASCII if "SMTPUTF8" in options else CLIENT_ASCII
        params = "".join(f" {o}" for o in kept)
        return self._encode(f"MAIL FROM:{quote_path(sender)}{params}", encoding), encoding

    async def begin(
        self, sender: str, options: tuple[str, ...], recipient: str, *, reopen: bool = True
    ) -> tuple[Reply, Reply]:
        """MAIL and the first RCPT, pipelined when the upstream allows: the answers to both
        (RCPT gets MAIL's if MAIL failed). A pooled connection the upstream closed while it
        sat idle is re-opened once (``reopen``); within a split it is not: see actions.split."""
        if self._replies is None or not self.alive():
            if not reopen and self._replies is not None:
                raise UpstreamError(DISCONNECTED)
            await self.connect()
            reopen = False
        mail, self._encoding = self._mail_line(sender, options)
        try:
            rcpt: bytes | None = self._encode(f"RCPT TO:{quote_path(recipient)}", self._encoding)
        except UpstreamError as exc:  # this recipient only: MAIL still opens the transaction
            rcpt, refused = None, exc.reply
        try:
            if "pipelining" in self.features and rcpt is not None:
                mail_reply, rcpt_reply = await self._checked(mail, rcpt)
            else:
                mail_reply = (await self._checked(mail))[0]
                if mail_reply[0] // 100 != 2:
                    rcpt_reply = mail_reply
                else:
                    rcpt_reply = refused if rcpt is None else (await self._checked(rcpt))[0]
        except UpstreamError:
            if not reopen:
                raise
            await self.connect()
            return await self.begin(sender, options, recipient, reopen=False)
        self.in_transaction = mail_reply[0] // 100 == 2
        if not self.in_transaction:
            return mail_reply, mail_reply
        return mail_reply, rcpt_reply

    async def rcpt(self, recipient: str) -> Reply:
        line = self._encode(f"RCPT TO:{quote_path(recipient)}", self._encoding)
        return (await self._checked(line))[0]

    def _encode(self, line: str, encoding: str) -> bytes:
        try:
            return line.encode(encoding) + b"\r\n"
        except UnicodeEncodeError:
            raise UpstreamError(self._not_ascii) from None

    async def data(self, message: bytes) -> Reply:
        """DATA and the message; ends the transaction. The message is made ready first, so
        that nothing but the two sends and their replies lies between DATA and its end."""
        if len(message) > INLINE_STUFF_BYTES:  # a regex over megabytes: not on the loop
            payload = await asyncio.get_running_loop().run_in_executor(None, stuffed, message)
        else:
            payload = stuffed(message)
        reply = (await self._checked(b"DATA\r\n", go_on=3))[0]
        if reply[0] // 100 != 3:
            return reply  # still in the transaction: RSET before the connection is reused
        self.in_transaction = False
        return (await self._checked(payload))[0]

    async def rset(self) -> None:
        if self.in_transaction and self._replies is not None:
            self.in_transaction = False
            with contextlib.suppress(UpstreamError):
                await self._checked(b"RSET\r\n")

    async def send_copy(
        self, sender: str, options: tuple[str, ...], recipient: str, data: bytes
    ) -> Reply:
        """One whole transaction for one recipient (a split copy), on this connection only."""
        mail, reply = await self.begin(sender, options, recipient, reopen=False)
        if mail[0] // 100 != 2:
            return mail
        if reply[0] // 100 != 2:
            await self.rset()
            return reply
        reply = await self.data(data)
        await self.rset()  # only if DATA itself was refused: the next copy starts clean
        return reply


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


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
    """The pool of upstream connections."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.helo = socket.gethostname() or "localhost"
        self._idle: list[Upstream] = []
        self._slots = asyncio.Semaphore(settings.relay_connections)
        self.opened = 0
        """Upstream connections opened so far (tests and the benchmark read it)."""

    @property
    def idle(self) -> int:
        """Connections waiting in the pool for the next transaction."""
        return len(self._idle)

    async def acquire(self) -> Upstream:
        """A connection for one transaction: a pooled one if fresh enough, else a new one.

        With every connection busy, a client waits up to ``relay_timeout`` for one, then
        gets a temporary refusal rather than waiting without end."""
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self.settings.relay_timeout)
            except TimeoutError:
                raise UpstreamError(BUSY) from None
        else:
            await self._slots.acquire()  # free: returns at once
        now = time.monotonic()
        while self._idle:
            upstream = self._idle.pop()
            if upstream.alive() and now - upstream.idle_since < self.settings.relay_idle:
                return upstream
            upstream.close()
        self.opened += 1
        return Upstream(self.settings, self.helo)

    async def release(self, upstream: Upstream) -> None:
        """Back to the pool (after RSET if a transaction is open), or closed if broken."""
        try:
            if upstream.in_transaction:
                await upstream.rset()
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
            upstream.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for upstream in idle:
            upstream.close()
