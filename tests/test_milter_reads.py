"""How the MTA's bytes are cut into reads never changes what the milter answers.

The connection handles a read's frames straight from the decoder's list while nothing
waits, and through its backlog after a decision went to a worker (mailguard.milter.server).
These tests replay a Postfix conversation through MilterConnection with an in-memory
transport, cut into reads at random places, and hold the replies equal to those of the
same bytes in one read and of one frame per read.
"""

from __future__ import annotations

import asyncio
import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from mailguard.config import Config, from_mapping
from mailguard.milter import protocol as p
from mailguard.milter.listen import ListenSpec
from mailguard.milter.server import MilterConnection, MilterServer
from mailguard.milter.settings import MilterSettings
from tests.support.memory_transport import MemoryTransport

_QUEUE = b"i\x00QUEUE1\x00"


def _message(sender: bytes, fields: list[bytes], body: bytes) -> list[bytes]:
    """Postfix's frames for one message, as milter8.c sends them (macros before steps)."""
    frames = [
        p.frame(p.MACRO, b"M{auth_authen}\x00\x00"),
        p.frame(p.MAIL, b"<" + sender + b">\x00"),
        p.frame(p.MACRO, b"R" + _QUEUE),
        p.frame(p.RCPT, b"<bob@example.test>\x00"),
    ]
    for field in fields:
        name, _, value = field.partition(b":")
        frames += [p.frame(p.MACRO, b"L" + _QUEUE), p.frame(p.HEADER, name + b"\0" + value + b"\0")]
    frames += [p.frame(p.MACRO, b"N" + _QUEUE), p.frame(p.EOH)]
    frames += [p.frame(p.BODY, body), p.frame(p.MACRO, b"E" + _QUEUE), p.frame(p.BODYEOB)]
    return [*frames, p.frame(p.ABORT)]


CLEAN = [b"From: alice@example.test", b"To: bob@example.test", b"Subject: Minutes"]
EXPOSED = [
    b"From: hr@serviceco.example",
    b"To: colleague@serviceco.example",
    b"Cc: " + b",\r\n ".join(b"person.%d@gmail.com" % i for i in range(40)),
    b"Subject: salary review",
]
MULTIPART = [*CLEAN, b"Content-Type: multipart/mixed; boundary=b"]

CONVERSATION = b"".join(
    [
        p.frame(p.OPTNEG, struct.pack("!III", 6, 0x1FF, 0x1FFFFF)),
        p.frame(p.MACRO, b"C{daemon_name}\x00smtpd\x00{client_addr}\x00127.0.0.1\x00"),
        p.frame(p.CONNECT, b"localhost\x004" + struct.pack("!H", 40000) + b"127.0.0.1\x00"),
        *_message(b"alice@example.test", CLEAN, b"See you.\r\n"),
        *_message(b"hr@serviceco.example", EXPOSED, b"Figures attached.\r\n"),
        *_message(b"alice@example.test", MULTIPART, b"--b\r\n\r\nhi\r\n--b--\r\n"),
        p.frame(p.QUIT),
    ]
)


def _server(config: Config) -> MilterServer:
    return MilterServer(
        config, ListenSpec.parse("unix:/nonexistent/milter.sock"), settings=MilterSettings()
    )


def _replies(server: MilterServer, reads: list[bytes]) -> tuple[list[bytes], bool]:
    """The frames written back (split frame by frame) and whether the connection closed."""

    async def run() -> tuple[list[bytes], bool]:
        conn = MilterConnection(server)
        transport = MemoryTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        for data in reads:
            conn.data_received(data)
        while conn.deciding is not None:  # the multipart message is decided on a worker
            await asyncio.sleep(0.001)
        conn.connection_lost(None)
        return p.FrameDecoder().feed(b"".join(transport.written)), transport.closing

    frames, closed = asyncio.run(run())
    return [command + payload for command, payload in frames], closed


# Default rules: the attachment rules read every body, so nothing is decided at
# end-of-headers (negotiated away) and the MAIL step is answered instead. Without them, a
# message its header block settles is answered at end-of-headers.
_SERVERS = {
    "default": _server(Config()),
    "early": _server(
        from_mapping({"rules": {c: {"enabled": False} for c in ("MG601", "MG602", "MG603")}})
    ),
}
_WHOLE = {name: _replies(server, [CONVERSATION]) for name, server in _SERVERS.items()}


def test_the_conversation_is_decided_as_the_messages_deserve() -> None:
    c, y = p.CONTINUE, p.REPLYCODE
    replies, closed = _WHOLE["default"]
    assert closed
    assert replies[0][:1] == p.OPTNEG
    # Each message: continue at MAIL, then its decision at its end: clean passed, exposed
    # refused with a reply code, multipart passed.
    assert [r[:1] for r in replies[1:]] == [c, c, c, y, c, c]
    assert b"550 5.7.1" in replies[4]

    replies, closed = _WHOLE["early"]
    assert closed
    # clean: accepted at end of headers; exposed: refused there with a reply code (the
    # script sends both bodies anyway: the end of a message no longer open gets a
    # continue); multipart: continue at end of headers (read the body), then its decision.
    assert [r[:1] for r in replies[1:]] == [p.ACCEPT, c, y, c, c, c]
    assert b"550 5.7.1" in replies[3]


def test_one_frame_per_read_answers_as_one_read() -> None:
    frames = p.FrameDecoder().feed(CONVERSATION)
    reads = [p.frame(command, payload) for command, payload in frames]
    for name, server in _SERVERS.items():
        assert _replies(server, reads) == _WHOLE[name], name


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(1, len(CONVERSATION) - 1), max_size=40, unique=True),
    name=st.sampled_from(sorted(_SERVERS)),
)
def test_any_cut_into_reads_answers_as_one_read(cuts: list[int], name: str) -> None:
    edges = [0, *sorted(cuts), len(CONVERSATION)]
    reads = [CONVERSATION[a:b] for a, b in itertools.pairwise(edges)]
    assert _replies(_SERVERS[name], reads) == _WHOLE[name]
