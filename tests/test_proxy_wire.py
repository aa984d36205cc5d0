"""The upstream client's wire format against smtplib's, which the proxy used before.

The proxy's asyncio client (mailguard/proxy/wire.py) writes MAIL/RCPT paths and message
data, and reads replies; each is compared here with what smtplib itself does on the same
input (Hypothesis), so a script behind the proxy sees the upstream exactly as before.
"""

from __future__ import annotations

import asyncio
import io
import re
import smtplib

from hypothesis import given, settings
from hypothesis import strategies as st

from mailguard.proxy.wire import Replies, quote_path, stuffed


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.emails(), st.text(max_size=40), st.from_regex(r"[a-z.]{0,8}@[a-z.-]{0,8}")))
def test_paths_are_quoted_as_smtplib_quotes_them(address):
    assert quote_path(address) == smtplib.quoteaddr(address)


class _Capture(smtplib.SMTP):
    """smtplib's own ``data`` with the socket replaced by a list."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.replies = [(354, b"go"), (250, b"ok")]

    def putcmd(self, cmd: str, args: str = "") -> None:
        self.sent.append(f"{cmd}\r\n".encode())

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        self.sent.append(s if isinstance(s, bytes) else s.encode())

    def getreply(self) -> tuple[int, bytes]:
        return self.replies.pop(0)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"a", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n."]), max_size=30))
def test_data_is_sent_as_smtplib_sends_it(parts):
    message = b"".join(parts)
    smtp = _Capture()
    assert smtp.data(message) == (250, b"ok")
    assert smtp.sent == [b"data\r\n", stuffed(message)]


_LINE = st.tuples(
    st.from_regex(r"[0-9]{3}|[0-9a-z]{0,3}", fullmatch=True),
    st.sampled_from(["-", " ", "", "x"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12),
).map(lambda t: f"{t[0]}{t[1]}{t[2]}\r\n".encode())


def _smtplib_replies(data: bytes) -> list[tuple[int, str]]:
    smtp = smtplib.SMTP()
    smtp.file = io.BufferedReader(io.BytesIO(data))  # type: ignore[assignment]
    out = []
    while smtp.file.peek(1):  # type: ignore[union-attr]
        code, text = smtp.getreply()
        out.append((code, text.decode("utf-8", "replace")))
    return out


def _malformed(data: bytes) -> list[bool]:
    """For each reply as smtplib cuts them: whether a line of it breaks RFC 5321 4.2 (three
    digits, then a space, a hyphen or the end; the same code on every line), which the
    proxy reads as code -1."""
    out, bad, first = [], False, None
    for line in re.findall(rb"[^\n]*\n", data):
        first = line[:3] if first is None else first
        bad = bad or re.match(rb"[0-9]{3}(?:[ -]|\r?\n\Z)", line) is None or line[:3] != first
        try:
            int(line[:3])
        except ValueError:
            pass
        else:
            if line[3:4] == b"-":
                continue
        out.append(bad)
        bad, first = False, None
    return out


@settings(max_examples=500, deadline=None)
@given(lines=st.lists(_LINE, min_size=1, max_size=12), cuts=st.lists(st.integers(1, 300)))
def test_replies_are_read_as_smtplib_reads_them(lines, cuts):
    """As smtplib, but a reply smtplib reads from lines RFC 5321 does not allow (``2500``,
    `` 25 ok``, ``250ok``, ``250-a`` then ``550 b``) is -1, as one whose code is not a
    number."""
    data = b"".join(lines) + b"250 end\r\n"  # the last reply complete, as smtplib needs it
    expected = [
        (-1 if bad else code, text)
        for (code, text), bad in zip(_smtplib_replies(data), _malformed(data), strict=True)
    ]
    loop = asyncio.new_event_loop()
    try:
        replies, at, got = Replies(loop), 0, []
        for cut in [*sorted(set(cuts)), len(data)]:
            if at < cut <= len(data):
                replies.data_received(data[at:cut])
                at = cut
        while (future := replies.expect()).done():
            got.append(future.result())
    finally:
        loop.close()
    assert got == expected
