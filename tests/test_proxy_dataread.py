"""The proxy's block-wise DATA reader against aiosmtpd's own line-at-a-time loop.

Both run as real aiosmtpd protocol objects on an event loop, fed the same bytes in the same
random pieces; the replies the client would get and the content the handler would see
must be identical. Small limits make the interesting cases (overlong lines, too much data,
both at once, CRLF split between reads, dots at line starts) common.
"""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailguard.proxy.dataread import NOMINAL, TOO_LONG, TOO_MUCH, Collector
from mailguard.proxy.handler import ProxySMTP


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Handler:
    def __init__(self) -> None:
        self.contents: list[tuple[bytes, object]] = []

    async def handle_DATA(self, server: object, session: object, envelope) -> str:  # type: ignore[no-untyped-def]
        self.contents.append((envelope.original_content, envelope.content))
        return "250 stored"


class _Careful(ProxySMTP):
    smtp_DATA = SMTP.smtp_DATA  # aiosmtpd's own loop


def cut_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    """``stream`` in pieces ending at the ``cuts`` that fall inside it."""
    pieces, at = [], 0
    for cut in sorted(set(cuts)):
        if at < cut < len(stream):
            pieces.append(stream[at:cut])
            at = cut
    return [*pieces, stream[at:]]


async def feed(smtp: SMTP, pieces: list[bytes], rounds: int) -> None:
    """Each piece as a read of its own, with ``rounds`` turns of the loop after it."""
    for piece in pieces:
        smtp.data_received(piece)
        for _ in range(rounds):
            await asyncio.sleep(0)


_ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"


def _session(
    cls: type[ProxySMTP],
    size_limit: int,
    pieces: list[bytes],
    line_limit: int | None = None,
    decode: bool = False,
) -> tuple[bytes, list[tuple[bytes, object]]]:
    """Replies and contents for ``pieces`` after an envelope; ``line_limit`` (the reader's
    and aiosmtpd's line limit) is set after the envelope, whose commands are longer."""

    async def run() -> tuple[bytes, list[tuple[bytes, object]]]:
        handler = _Handler()
        loop = asyncio.get_running_loop()
        smtp = cls(handler, data_size_limit=size_limit, hostname="h", ident="i", loop=loop,
                   decode_data=decode)  # fmt: skip
        transport = _Transport()
        smtp.connection_made(transport)
        smtp.data_received(_ENVELOPE)
        for _ in range(20):
            await asyncio.sleep(0)
        assert transport.written.endswith(b"250 OK\r\n")  # the recipient is in
        before = len(transport.written)
        if line_limit is not None:
            smtp.line_length_limit = line_limit
            smtp._reader._limit = line_limit  # type: ignore[attr-defined]
        await feed(smtp, pieces, 5)
        for _ in range(20):
            await asyncio.sleep(0)
        smtp._timeout_handle.cancel()  # type: ignore[union-attr]
        smtp._handler_coroutine.cancel()  # type: ignore[union-attr]
        await asyncio.sleep(0)
        return bytes(transport.written[before:]), handler.contents

    return asyncio.run(run())


_PIECE = st.one_of(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b".\r\n", b"..", b"\xe9"]),
    st.integers(1, 30).map(lambda n: b"x" * n + b"\r\n"),  # lines near the limits
)
_BODY = st.lists(_PIECE, max_size=40).map(b"".join)


@settings(max_examples=400, deadline=None)
@example(body=b"yyyyyy\r\n" * 3 + b"x" * 10, line_limit=10, size_limit=30, cuts=[], decode=False)
@example(body=b"yyyyyy\r\n" * 3 + b"x" * 11, line_limit=10, size_limit=30, cuts=[], decode=False)
@example(body=b"x" * 9 + b"\r", line_limit=10, size_limit=0, cuts=[15], decode=False)
@example(body=b"caf\xe9\r\n", line_limit=20, size_limit=0, cuts=[], decode=True)
@given(
    body=_BODY,
    line_limit=st.integers(5, 24),
    size_limit=st.integers(0, 80),
    cuts=st.lists(st.integers(1, 200), max_size=12),
    decode=st.booleans(),
)
def test_block_reads_give_what_aiosmtpd_gives(body, line_limit, size_limit, cuts, decode):
    stream = b"DATA\r\n" + body + b"\r\n.\r\nNOOP\r\nDATA\r\nRSET\r\n"
    pieces = cut_at(stream, cuts)
    fast = _session(ProxySMTP, size_limit, pieces, line_limit, decode)
    careful = _session(_Careful, size_limit, pieces, line_limit, decode)
    assert fast == careful
    assert fast[0].startswith(b"354 ")  # DATA was taken: the comparison is about its data


def test_a_large_message_in_many_reads_keeps_every_byte():
    lines = [b"." * (i % 7) + b"line %d" % i for i in range(20_000)]
    body = b"\r\n".join(lines) + b"\r\n"
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    stuffed = b"." + stuffed if stuffed.startswith(b".") else stuffed
    pieces = [b"DATA\r\n"] + [stuffed[i : i + 4096] for i in range(0, len(stuffed), 4096)]
    replies, contents = _session(ProxySMTP, 10_000_000, [*pieces, b".\r\n"])
    assert contents == [(body, body)] and replies.endswith(b"250 stored\r\n")


def test_the_collector_decides_as_aiosmtpd_would():
    c = Collector(100, 10, 10)  # lines of at most 10 bytes with their CRLF
    c.feed(b"12345678\r\n")
    assert c.state == NOMINAL
    c.feed(b"123456789")  # not ended yet: 11 with its CRLF
    c.feed(b"\r\n")
    assert c.state == TOO_LONG and c.blocks == []
    c = Collector(20, 100, 100)
    c.feed(b"x" * 30 + b"\r\n")
    assert c.state == TOO_MUCH
    c = Collector(100, 10, 10)  # a CRLF split between two reads still ends the line
    for block in (b"12345678\r", b"\n12345678\r", b"\n", b"123\r\n"):
        c.feed(block)
    assert c.state == NOMINAL and c.content() == b"12345678\r\n" * 2 + b"123\r\n"


class _OneLineAtATime(ProxySMTP):
    smtp_EHLO = SMTP.smtp_EHLO
    push = SMTP.push


def test_the_ehlo_reply_in_one_write_is_aiosmtpds_reply():
    async def written(cls: type[ProxySMTP]) -> list[bytes]:
        smtp = cls(_Handler(), hostname="h", ident="i", enable_SMTPUTF8=True,
                   loop=asyncio.get_running_loop())  # fmt: skip
        writes: list[bytes] = []
        transport = _Transport()
        transport.write = writes.append  # type: ignore[method-assign]
        smtp.connection_made(transport)
        smtp.data_received(b"EHLO client.example\r\nEHLO\r\nHELO x\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        smtp._timeout_handle.cancel()  # type: ignore[union-attr]
        smtp._handler_coroutine.cancel()  # type: ignore[union-attr]
        await asyncio.sleep(0)
        return writes

    one = asyncio.run(written(ProxySMTP))
    each = asyncio.run(written(_OneLineAtATime))
    assert b"".join(one) == b"".join(each) and b"250-SIZE" in b"".join(one)
    assert len(one) == 4 < len(each)  # banner, EHLO reply, 501, HELO reply


def test_reading_data_is_linear_in_its_size():
    """Lines ending in a dot stop each block read early, a long line without one makes
    reads of the limit's size, and a straddling CRLF goes through the line replay."""
    from tests.test_linear_time import assert_linear

    def make(n: int) -> list[bytes]:
        body = (b"Regards.\r\n" + b"x" * 300 + b"\r\n") * n
        return [b"DATA\r\n", *(body[i : i + 65536] for i in range(0, len(body), 65536)), b".\r\n"]

    assert_linear(make, lambda pieces: _session(ProxySMTP, 0, pieces), 4_000, 8_000)
