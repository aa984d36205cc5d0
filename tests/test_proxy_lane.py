"""The command lane (``mailguard.proxy.lane``) against aiosmtpd's own per-line loop.

Both are real ``ProxySMTP`` protocol objects on an event loop, one with the lane and one
without, fed the same random session (good and bad commands, a message, pipelined or cut
anywhere, lines over the limits, commands the lane hands over) in the same pieces. What the
client reads, what the handler sees and whether the connection was closed must be the same.
The handler waits on some hooks, so both the lane's inline path and its task path run.
"""

from __future__ import annotations

import asyncio

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailguard.proxy.dataread import Collector, DataEnd, read_message
from mailguard.proxy.handler import ProxySMTP, quiet_aiosmtpd
from tests.test_proxy_dataread import _Transport, cut_at, feed


class _Stock(ProxySMTP):
    lane = False  # aiosmtpd's loop for every line


class _Handler:
    """Records what a handler sees; waits on RCPT, DATA and QUIT; one address fails."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        self.seen.append(("EHLO", hostname))
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        self.seen.append(("MAIL", address, tuple(options)))
        envelope.mail_from = address
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)  # as the upstream's answer: the command waits
        if address.startswith("boom"):
            raise RuntimeError("broken")
        envelope.rcpt_tos.append(address)
        self.seen.append(("RCPT", address, tuple(options)))
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        self.seen.append(("DATA", envelope.original_content, envelope.content))
        return "250 2.0.0 queued"

    async def handle_QUIT(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        return "221 2.0.0 Bye"

    async def handle_exception(self, error: Exception) -> str:
        self.seen.append(("error", type(error).__name__))
        return "451 4.3.0 internal error"


def _session(
    cls: type[ProxySMTP], pieces: list[bytes], line_limit: int, size_limit: int, utf8: bool,
    auth: bool,
) -> tuple[bytes, list[object], bool]:  # fmt: skip
    async def run() -> tuple[bytes, list[object], bool]:
        handler = _Handler()
        loop = asyncio.get_running_loop()
        smtp = cls(handler, data_size_limit=size_limit, hostname="h", ident="i",
                   enable_SMTPUTF8=utf8, auth_required=auth, loop=loop)  # fmt: skip
        smtp.line_length_limit = line_limit
        transport = _Transport()
        quiet_aiosmtpd()  # as the proxy runs it (its loop's INFO lines would stop the lane)
        smtp.connection_made(transport)
        assert smtp._lane is cls.lane
        smtp._reader._limit = line_limit  # type: ignore[attr-defined]
        await feed(smtp, pieces, 3)
        for _ in range(60):
            await asyncio.sleep(0)
        smtp.eof_received()  # the client hangs up: the loop ends (wherever it waits)
        for _ in range(5):
            await asyncio.sleep(0)
        closed = transport.closed
        smtp._timeout_handle.cancel()  # type: ignore[union-attr]
        smtp._handler_coroutine.cancel()  # type: ignore[union-attr]
        await asyncio.sleep(0)
        return bytes(transport.written), handler.seen, closed

    return asyncio.run(run())


_COMMANDS = [
    b"EHLO c.example\r\n", b"HELO c\r\n", b"EHLO\r\n", b"ehlo x\n", b"HELO\r\n",
    b"MAIL FROM:<a@b.example>\r\n", b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<a@b.example> BODY=9BIT\r\n", b"MAIL FROM:<a@b.example> SIZE=99999999\r\n",
    b"MAIL TO:<x@y.example>\r\n", b"MAIL FROM:<>\r\n", b"MAIL\r\n",
    b"mail from: <a@b.example>\r\n",
    b"MAIL FROM:<caf\xc3\xa9@b.example> SMTPUTF8\r\n", b"MAIL FROM:<\xff@b.example>\r\n",
    b"RCPT TO:<c@d.example>\r\n", b"RCPT TO:<boom@d.example>\r\n",
    b"RCPT TO:<\"q x\"@d.example>\r\n",
    b"RCPT TO:<c@d.example> NOTIFY=NEVER\r\n", b"RCPT\r\n", b"RCPT TO:\r\n",
    b"DATA\r\n", b"DATA x\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n", b"..dot\r\n.\r\n", b".\r\n",
    b"x" * 70 + b"\r\n.\r\n", b"caf\xc3\xa9\r\n.\r\n", b"a\r\n.b\r\n.\r\n",
    b"RSET\r\n", b"RSET x\r\n", b"NOOP\r\n", b"NOOP whatever\r\n", b"QUIT\r\n", b"QUIT now\r\n",
    b"HELP\r\n", b"HELP MAIL\r\n", b"VRFY <a@b.example>\r\n", b"BOGUS\r\n", b"\r\n", b" \r\n",
    b"\xff\xfe\r\n", b"NOOP " + b"x" * 600 + b"\r\n", b"NOOP " + b"y" * 150 + b"\r\n",
    b"AUTH PLAIN\r\n", b"STARTTLS\r\n", b"NOOP\n", b"NOOP\r", b"\tNOOP\r\n", b"EXPN x\r\n",
    b"HELO c \r\n", b"EHLO c \r\n", b"RCPT TO:<c@d.example> \t\r\n",
    b"MAIL FROM:<" + b"a" * 500 + b"@b.example>\r\n",
]  # fmt: skip
_PIECE = st.one_of(st.sampled_from(_COMMANDS), st.sampled_from(_COMMANDS), st.binary(max_size=8))


@settings(max_examples=500, deadline=None)
@example(
    script=[b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<c@d.example>\r\n",
            b"DATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n", b"QUIT\r\n"],
    cuts=[], line_limit=65536, size_limit=0, utf8=True, auth=False,
)  # fmt: skip
@example(
    script=[b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<c@d.example>\r\n",
            b"DATA\r\n", b"x" * 70 + b"\r\n.\r\n", b"NOOP " + b"y" * 150 + b"\r\n", b"NOOP\r\n"],
    cuts=[5, 31, 90], line_limit=60, size_limit=50, utf8=False, auth=False,
)  # fmt: skip
@example(
    script=[b"EHLO c\r\n", b"NOOP " + b"x" * 600 + b"\r\n", b"HELO c \r\n", b"QUIT\r\n",
            b"NOOP\r\n"],
    cuts=[], line_limit=65536, size_limit=0, utf8=True, auth=False,
)  # fmt: skip
@example(
    script=[b"EHLO c \r\n", b"QUIT\r\n", b"BOGUS\r\n", b"NOOP\r\n"],
    cuts=[22], line_limit=65536, size_limit=0, utf8=True, auth=False,
)  # fmt: skip
@given(
    script=st.lists(_PIECE, max_size=14),
    cuts=st.lists(st.integers(1, 400), max_size=10),
    line_limit=st.sampled_from([60, 120, 65536]),
    size_limit=st.sampled_from([0, 50, 1000]),
    utf8=st.booleans(),
    auth=st.booleans(),
)
def test_the_lane_answers_as_aiosmtpds_loop(script, cuts, line_limit, size_limit, utf8, auth):
    stream = b"".join(script)
    pieces = cut_at(stream, cuts)
    lane = _session(ProxySMTP, pieces, line_limit, size_limit, utf8, auth)
    stock = _session(_Stock, pieces, line_limit, size_limit, utf8, auth)
    assert lane == stock
    assert lane[0].startswith(b"220 h i\r\n") and lane[0].count(b"220 h i") == 1


def test_a_plain_session_is_served_by_the_lane_without_a_task_per_command():
    """The fast path is taken (not only equal): no task until a hook waits."""

    async def run() -> tuple[bool, object]:
        smtp = ProxySMTP(_Handler(), hostname="h", ident="i", loop=asyncio.get_running_loop())
        transport = _Transport()
        quiet_aiosmtpd()
        smtp.connection_made(transport)
        smtp.data_received(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
        served_inline = transport.written.endswith(b"250 2.1.0 Ok\r\n")
        smtp.data_received(b"RCPT TO:<c@d.example>\r\n")
        waiting = smtp._lane_task
        for _ in range(5):
            await asyncio.sleep(0)
        smtp._timeout_handle.cancel()  # type: ignore[union-attr]
        smtp._handler_coroutine.cancel()  # type: ignore[union-attr]
        return served_inline and smtp._lane and transport.written.endswith(
            b"250 2.1.5 Ok\r\n"
        ), waiting

    inline, waiting = asyncio.run(run())
    assert inline and isinstance(waiting, asyncio.Task)


_STREAM = st.lists(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b".\r\n", b"..", b"x\r\n"]),
    max_size=30,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(body=_STREAM, after=st.binary(max_size=6), cuts=st.lists(st.integers(1, 80), max_size=8))
def test_the_end_of_data_in_pieces_is_where_read_message_finds_it(body, after, cuts):
    stream = body + b"\r\n.\r\n" + after
    pieces = cut_at(stream, cuts)
    ending = DataEnd(Collector(None, 10**6, 10**6))
    rest = b""
    for i, piece in enumerate(pieces):
        used = ending.feed(piece)
        if used >= 0:
            rest = piece[used:] + b"".join(pieces[i + 1 :])
            break

    async def careful() -> tuple[bytes, bytes]:
        reader = asyncio.StreamReader(limit=10**6)
        reader.feed_data(stream)
        reader.feed_eof()
        collector = Collector(None, 10**6, 10**6)
        await read_message(reader, collector)
        return b"".join(collector.blocks), await reader.read()

    blocks, left = asyncio.run(careful())
    assert (b"".join(ending.collector.blocks), rest) == (blocks, left)


@settings(max_examples=60, deadline=None)
@given(
    line=st.text(max_size=60),
    when=st.floats(1.0e9, 2.0e9, allow_nan=False),
    flush_each=st.booleans(),
)
def test_the_log_line_without_a_record_is_the_handlers_own_text(line, when, flush_each):
    import io
    import logging
    from unittest import mock

    from mailguard.commands.proxy import LOG_FORMAT
    from mailguard.milter import logline

    root, logger = logging.getLogger(), logging.getLogger("mailguard.proxy.test")
    saved = root.handlers[:], root.level
    handler = logline.BufferedHandler(io.StringIO(), flush_each=flush_each)
    handler.setFormatter(logline.SecondFormatter(LOG_FORMAT))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        stream = handler.stream
        with mock.patch("time.time", return_value=when):
            logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, line, (), None))
            through_logging = stream.getvalue()
            assert logline._sole_handler(logger, logging.INFO) is handler  # the direct write
            logline.emit(logger, logging.INFO, line)
            assert stream.getvalue() == through_logging * 2
            other = logging.StreamHandler(io.StringIO())
            root.addHandler(other)  # any other set-up: through logging, reaching both
            assert logline._sole_handler(logger, logging.INFO) is None
            logline.emit(logger, logging.INFO, line)
        assert stream.getvalue() == through_logging * 3 and f"INFO {line}" in through_logging
        assert other.stream.getvalue() == f"{line}\n"
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_a_reply_waits_while_the_client_reads_nothing_as_drain_makes_it_wait():
    async def run() -> list[bool]:
        smtp = ProxySMTP(_Handler(), hostname="h", ident="i", loop=asyncio.get_running_loop())
        transport = _Transport()
        quiet_aiosmtpd()
        smtp.connection_made(transport)
        smtp.pause_writing()  # the transport's buffer is full
        push = asyncio.ensure_future(smtp.push("250 OK"))
        await asyncio.sleep(0)
        waited = not push.done()
        smtp.resume_writing()
        await asyncio.sleep(0)
        smtp._connection_lost = True  # then every reply raises, as drain() raises
        lost = asyncio.ensure_future(smtp.push("250 OK"))
        await asyncio.sleep(0)
        smtp._timeout_handle.cancel()  # type: ignore[union-attr]
        return [waited, push.done(), isinstance(lost.exception(), ConnectionResetError)]

    assert asyncio.run(run()) == [True, True, True]
