"""The upstream connection's wire: replies read into futures, paths and data as smtplib
writes them. Used by :mod:`mailguard.proxy.relay`, which drives the commands.

``quote_path`` and ``stuffed`` produce exactly what :func:`smtplib.quoteaddr` and
``smtplib.SMTP.data`` send (a Hypothesis test compares them); :class:`Replies` parses replies
as ``smtplib.SMTP.getreply`` does (continuation lines joined with newlines, a code that is
not a number is -1, and so is one ``smtplib`` would take that RFC 5321 does not allow) and
hands them, in order, to the commands waiting for them, which is what lets MAIL and RCPT
go out pipelined; :func:`gateway_failure` sorts the replies that
refuse a message (passed on to the client) from those that only say the upstream failed.
"""

from __future__ import annotations

import asyncio
import collections
import re
import smtplib

Reply = tuple[int, str]
"""An SMTP reply: code and text (the text may span lines, joined with newlines)."""
DISCONNECTED: Reply = (451, "4.4.2 mailguard: the upstream server closed the connection")
MAX_LINE = 8192
"""``smtplib``'s limit for one reply line; a longer one ends the connection."""
MAX_REPLY = 64 * 1024
"""A reply of more lines than any server sends is an upstream gone wrong, not more memory."""
_SIMPLE_PATH = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")  # fmt: skip
_LEADING_DOT = re.compile(rb"(?m)^\.")
_WELL_FORMED = re.compile(rb"[0-9]{3}(?:[ -]|\r?\n\Z)")
"""A reply line as RFC 5321 4.2 has it: three digits, then a space, a hyphen or the end."""
MALFORMED = -1
"""The code of a reply with a line RFC 5321 does not allow: ``smtplib``'s -1 for a code that
is not a number (``abc``), and here also for one it reads (``2500 ok``, `` 25 ok``,
``250ok``): whatever such a reply meant, it is not an answer to rely on."""


def quote_path(address: str) -> str:
    """``<address>`` exactly as :func:`smtplib.quoteaddr` writes it; the common plain
    ``local@domain`` without its RFC 2822 parser (equal by a Hypothesis test)."""
    if _SIMPLE_PATH.match(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def stuffed(message: bytes) -> bytes:
    """The message as ``smtplib.SMTP.data`` sends bytes: dots doubled, then ``CRLF.CRLF``."""
    if b"\n." in message or message.startswith(b"."):
        message = _LEADING_DOT.sub(b"..", message)
    return message + (b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n")


def gateway_failure(code: int, go_on: int) -> Reply | None:
    """What the client hears for a reply that says nothing about its message; None for one
    that does (``go_on``xx, or a 4xx/5xx refusal, passed on as it is).

    Always a 4xx: the message may be fine, and a 5xx would bounce it for good. A 421 is the
    upstream closing (passed on, it would tell the client that the *proxy* closes); a 530
    or 538 refuses the proxy's own session (STARTTLS or AUTH wanted: the settings, not
    the message, are wrong); a 503 says the two are out of step; and a reply outside
    2xx-5xx or of the wrong kind (250 to DATA, 354 to the end of the data) would otherwise
    reach a client as if the message had been taken."""
    kind = code // 100
    if kind == go_on or (kind in (4, 5) and code not in (421, 503, 530, 538)):
        return None
    if code == MALFORMED:
        return 451, "4.5.0 mailguard: upstream failed (malformed reply)"
    if code == 421:
        return 451, "4.4.2 mailguard: the upstream is closing the connection (421)"
    if code in (530, 538):
        return 451, (f"4.7.0 mailguard: the upstream refused the gateway's session ({code}); "
                     "see relay_security and relay_user")  # fmt: skip
    return 451, f"4.5.0 mailguard: upstream failed (unexpected reply {code})"  # RFC 3463 X.5.0


class Failed(Exception):
    """The connection failed under a command: ``why`` in a few words (no addresses)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

    @property
    def reply(self) -> Reply:
        """What the client hears when this happens in a transaction (``smtplib``'s words)."""
        if self.why == "closed":
            return DISCONNECTED
        return 451, f"4.4.2 mailguard: upstream failed ({self.why})"


class Replies(asyncio.Protocol):
    """Reads the upstream's replies, in order, into the futures of the commands sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost: Failed | None = None
        """Why the connection ended (set once, before the futures hear it)."""
        self._buffer = b""
        self._lines: list[bytes] = []
        self._size = 0
        self._malformed = False
        self._code = b""
        self._ready: collections.deque[Reply] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[Reply]] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def unread(self) -> bool:
        """Whether anything arrived beyond the replies already taken: after the ``220`` to
        STARTTLS that is text sent before encryption, posing as later replies."""
        return bool(self._buffer or self._lines or self._ready)

    def connection_lost(self, exc: Exception | None) -> None:
        self._wake(Failed("closed"))

    def fail(self, error: Failed) -> None:
        """Give up on this connection (a timeout, a reply no server sends)."""
        self._wake(error)
        if self.transport is not None:
            self.transport.abort()

    def _wake(self, error: Failed) -> None:
        self.lost = self.lost or error
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(buffer[start : end + 1])
            start = end + 1
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_LINE:
            self.fail(Failed("reply line too long"))

    def _line(self, line: bytes) -> None:
        """As ``smtplib.SMTP.getreply``: ``ddd-`` continues, anything else ends a reply;
        a reply with a line RFC 5321 does not allow is :data:`MALFORMED` (the connection
        is then dropped)."""
        self._size += len(line)
        if len(line) > MAX_LINE + 2 or self._size > MAX_REPLY:
            self.fail(Failed("reply too long"))
            return
        if not self._lines:
            self._code = line[:3]
        elif line[:3] != self._code:  # RFC 5321 4.2.1: every line of a reply has its code
            self._malformed = True
        self._lines.append(line[4:].strip(b" \t\r\n"))
        if _WELL_FORMED.match(line) is None:
            self._malformed = True  # the reply ends where smtplib ends it, as MALFORMED
        try:
            code = int(line[:3])  # as smtplib: int() also takes " 25" or "-0"
        except ValueError:
            code = MALFORMED
        else:
            if line[3:4] == b"-":
                return
        if self._malformed:
            code = MALFORMED
        text = b"\n".join(self._lines).decode("utf-8", "replace")
        self._lines, self._size, self._malformed = [], 0, False
        if self._waiting:
            future = self._waiting.popleft()
            if not future.done():  # a cancelled wait still owns its reply: dropped
                future.set_result((code, text))
        else:
            self._ready.append((code, text))  # unasked (a 421 before closing): the next answer

    def expect(self) -> asyncio.Future[Reply]:
        """The future of the next reply not yet claimed by a command."""
        future = self.loop.create_future()
        if self._ready:
            future.set_result(self._ready.popleft())
        elif self.lost is not None:
            future.set_exception(self.lost)
        else:
            self._waiting.append(future)
        return future
