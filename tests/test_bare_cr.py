"""A bare CR (one not followed by LF) in a header block hides no recipient.

Mail programs read it two ways: Postfix and most servers pass it on as an ordinary byte,
Outlook and other clients show what follows it as a new line. ``Subject: hi<CR>To: ...``
is one Subject line to the first kind and a To field with its addresses to the second.
mailguard counts the addresses either reading shows and reports the ambiguity (MG003).
Files whose lines all end in a bare CR (classic Mac OS) are read as lines however long
their first line is. Found by a fuzzer: both used to pass with no recipient at all.
"""

from __future__ import annotations

import pytest

import mailguard
from mailguard.headers import parse_header_block
from mailguard.limits import Limits
from mailguard.message import parse_message

SIXTY = ", ".join(f"user{i}@dom{i}.example" for i in range(60))


def _codes(report: mailguard.Report) -> list[str]:
    return [f.code for f in report.findings]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_a_to_line_after_a_bare_cr_in_the_subject_is_counted_and_flagged(eol: bytes) -> None:
    data = eol.join(
        [b"From: a@org.example", b"Subject: hi\rTo: " + SIXTY.encode(), b"", b"hello", b""]
    )
    report = mailguard.check(data)
    assert report.recipients["visible"] == 60
    assert report.verdict == "block"
    assert {"MG101", "MG003"} <= set(_codes(report))
    mg003 = next(f for f in report.findings if f.code == "MG003")
    assert "bare CR" in mg003.message and "user0" not in mg003.message


def test_addresses_after_a_bare_cr_inside_a_to_field_are_counted_too() -> None:
    """The server's reading: the CR is data, so the text after it is still the To value."""
    block = b"From: a@org.example\r\nTo: first@one.example\rX-Note: " + SIXTY.encode() + b"\r\n"
    headers = parse_header_block(block, Limits(), [])
    assert headers["x-note"] == [SIXTY]  # the client's reading
    assert any("user59@dom59.example" in value for value in headers["to"])
    report = mailguard.check(block + b"\r\nhello\r\n")
    assert report.recipients["visible"] == 61
    assert report.verdict == "block"


def test_cr_only_file_with_a_first_line_longer_than_4096_bytes() -> None:
    data = b"\r".join(
        [
            b"X-Padding: " + b"x" * 5000,
            b"From: a@org.example",
            b"To: " + SIXTY.encode(),
            b"Subject: hi",
            b"",
            b"hello",
        ]
    )
    assert data.index(b"\r") > 4096
    report = mailguard.check(data)
    assert report.recipients["visible"] == 60
    assert report.verdict == "block"
    assert "MG003" in _codes(report)


def test_cr_only_header_block_with_lf_in_the_body() -> None:
    data = b"From: a@org.example\rTo: " + SIXTY.encode() + b"\r\rbody\nwith LF\n"
    message = parse_message(data)
    assert len(message.get_all("to")) == 1
    assert mailguard.check(data).recipients["visible"] == 60


def test_doubled_cr_line_ends_do_not_end_the_header_block_early() -> None:
    """CR CR LF (a CRLF written through a text-mode filter) is no blank line."""
    data = b"From: a@org.example\r\r\nTo: " + SIXTY.encode() + b"\r\r\n\r\r\nhello\r\r\n"
    assert mailguard.check(data).recipients["visible"] == 60


def test_a_message_without_bare_cr_has_no_such_finding() -> None:
    data = b"From: a@org.example\r\nTo: b@org.example\r\nSubject: hi\r\n\r\nhel\rlo\r\n"
    report = mailguard.check(data)
    assert report.verdict == "pass" and "MG003" not in _codes(report)


def test_a_header_block_full_of_bare_crs_costs_linear_time():
    """Both readings of the block are one pass each: twice the fields, about twice the time."""
    from mailguard.headers import parse_header_block
    from mailguard.limits import Limits
    from tests.support.doubling import assert_doubling_linear

    def prepare(n: int):
        block = b"".join(b"X-F%d: v\rTo: a%d@example.org\r\n" % (i, i) for i in range(n))
        return lambda: parse_header_block(block, Limits(), [])

    assert_doubling_linear(prepare, [5_000, 10_000, 20_000], what="the header fields")
