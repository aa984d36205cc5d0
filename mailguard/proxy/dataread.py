"""The message after DATA in a few large reads, with aiosmtpd's exact outcome.

aiosmtpd's ``smtp_DATA`` awaits ``readuntil(b"\\r\\n")`` for every line and runs its state
machine per line, some 45 rounds of the event loop's machinery for a 2 KB message: after
the check itself, the largest cost of the proxy per message. :func:`read_message` reads up
to the end-of-data line in blocks instead. While the data read so far is within both limits
(no line in it can be too long, the size is allowed) nothing is looked at but the end mark;
past that, :class:`_Lines` replays aiosmtpd's state machine over the line lengths, so that
the same refusal wins (``552`` for too much data or ``500`` for an overlong line, whichever
aiosmtpd meets first) and data that would be refused is not kept.

What counts as a line is aiosmtpd's: text up to ``CRLF`` (a bare LF or CR is part of the
line); the data ends at the first line that is a lone dot; a line's leading dot is
removed. ``tests/test_proxy_dataread.py`` checks the replies and the content against
aiosmtpd's own loop on random streams cut at random places (Hypothesis).
"""

from __future__ import annotations

import asyncio

NOMINAL, TOO_LONG, TOO_MUCH = "nominal", "too long", "too much"
_END = b".\r\n"


class _Lines:
    """aiosmtpd's per-line states, fed with blocks of the stream (lines may span blocks)."""

    def __init__(self, size_limit: int | None, line_limit: int, reader_limit: int) -> None:
        self.size_limit = size_limit
        self.line_limit = line_limit
        self.reader_limit = reader_limit
        self.state = NOMINAL
        self.size = 0
        self.partial = 0
        """Length of the line not yet ended by CRLF."""
        self.cr = False
        """The block before ended with CR (a CRLF may straddle two blocks)."""

    def feed(self, block: bytes) -> None:
        start = 0
        if self.cr and block[:1] == b"\n":
            self._line(self.partial - 1)
            start, self.partial = 1, 0
        while (end := block.find(b"\r\n", start)) >= 0:
            self._line(self.partial + end - start)
            start, self.partial = end + 2, 0
        self.partial += len(block) - start
        self.cr = block[-1:] == b"\r"

    def _line(self, length: int) -> None:
        """One line of ``length`` bytes before its CRLF, as aiosmtpd's loop treats it."""
        if length > self.reader_limit:  # StreamReader's LimitOverrunError: read in pieces
            if self.state == NOMINAL:
                self.state = TOO_LONG
            self.size += length + 2
            return
        self.size += length + 2
        if self.state == NOMINAL and self.size_limit and self.size > self.size_limit:
            self.state = TOO_MUCH
        if self.state == NOMINAL and length + 2 > self.line_limit:
            self.state = TOO_LONG


class Collector:
    """The blocks of one message and what aiosmtpd would make of them."""

    def __init__(self, size_limit: int | None, line_limit: int, reader_limit: int) -> None:
        self._limits = (size_limit, line_limit, reader_limit)
        self._quick = min(line_limit, reader_limit, size_limit or line_limit)
        self.blocks: list[bytes] = []
        self.total = 0
        self._lines: _Lines | None = None

    @property
    def state(self) -> str:
        return NOMINAL if self._lines is None else self._lines.state

    def feed(self, block: bytes) -> None:
        self.total += len(block)
        lines = self._lines
        if lines is None:
            self.blocks.append(block)
            if self.total <= self._quick:  # no line can be too long, the size is allowed
                return
            self._lines = lines = _Lines(*self._limits)
            lines.feed(b"".join(self.blocks))
        else:
            lines.feed(block)
            if lines.state == NOMINAL:
                self.blocks.append(block)
        if lines.state != NOMINAL:
            self.blocks = []  # refused in the end: do not hold it meanwhile

    def content(self) -> bytes:
        """The message with the transparency dots removed (RFC 5321 4.5.2)."""
        data = b"".join(self.blocks)
        if data[:1] == b".":
            data = data[1:]
        return data.replace(b"\r\n.", b"\r\n")


class DataEnd:
    """The end of the data in pieces as they arrive (the command lane's reader): feeds the
    collector exactly the bytes :func:`read_message` would, wherever the pieces are cut.

    The data ends at the first ``CRLF . CRLF`` of the stream with a ``CRLF`` put before it
    (it starts at a line start): that is the first ``.CRLF`` that :func:`read_message` finds
    after a ``CRLF``. The last four bytes seen are held back until the next piece, since
    the end mark may begin in them."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self._pending = b"\r\n"
        """The stream's bytes not fed yet, after the line start put before it."""
        self._virtual = 2
        """How many bytes at the head of ``_pending`` are that line start, not data."""

    def feed(self, piece: bytes) -> int:
        """How much of ``piece`` the data takes, through its end mark; -1: not ended yet."""
        pending = self._pending + piece
        end = pending.find(b"\r\n.\r\n")
        if end < 0:
            keep = len(pending) - 4
            if keep > self._virtual:
                self.collector.feed(pending[self._virtual : keep])
                pending, self._virtual = pending[keep:], 0
            self._pending = pending
            return -1
        if end + 2 > self._virtual:
            self.collector.feed(pending[self._virtual : end + 2])
        return end + 5 - len(self._pending)


async def read_message(reader: asyncio.StreamReader, collector: Collector) -> None:
    """Read through the end-of-data line, feeding ``collector`` everything before it."""
    tail = b"\r\n"  # the data starts at a line start
    while True:
        try:
            block = await reader.readuntil(_END)
        except asyncio.LimitOverrunError as error:
            block = await reader.read(error.consumed)
            ends = False
        else:
            before = block[-5:-3] if len(block) >= 5 else (tail + block)[-5:-3]
            ends = before == b"\r\n"
        if ends:
            if len(block) > 3:
                collector.feed(block[:-3])
            return
        collector.feed(block)
        tail = block[-2:] if len(block) >= 2 else tail[-1:] + block
