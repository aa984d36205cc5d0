"""``check --smtp-data``: what follows the DATA section's end is not ignored.

An SMTP server ends the message at the first line that is a lone dot and reads whatever
follows as new commands. A payload that carries a second MAIL/RCPT/DATA after that line
sends a second message, which a check of the whole payload as one message never saw: the
smuggled message could expose anyone. Such a payload is an ``error``, never a pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mailguard
from mailguard.message import decode_smtp_data, split_smtp_data

FIRST = b"From: a@org.example\r\nTo: b@org.example\r\nSubject: hi\r\n\r\nhello\r\n"
SECOND = (
    b"MAIL FROM:<a@org.example>\r\nRCPT TO:<x@gmail.com>\r\nDATA\r\nFrom: a@org.example\r\n"
    b"To: " + b", ".join(b"p%d@gmail.com" % i for i in range(40)) + b"\r\n\r\nsecret\r\n.\r\n"
)


EOLS = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}


@pytest.mark.parametrize("after", EOLS.values(), ids=[f"dot-{k}" for k in EOLS])
@pytest.mark.parametrize("before", EOLS.values(), ids=[f"{k}-" for k in EOLS])
def test_a_second_message_after_the_end_of_data_is_an_error(before: bytes, after: bytes) -> None:
    """A lone-dot line ended by CR, LF or CRLF on either side, in any mix: some server
    takes each for the end of DATA (SMTP smuggling, SEC Consult 2023), so a second message
    after it is an error. CRLF.CRLF is the real terminator; after it, too, nothing may
    follow. The five mixes with a bare CR used to pass as one message."""
    report = mailguard.check(FIRST[:-2] + before + b"." + after + SECOND, smtp_data=True)
    assert report.verdict == "error"
    assert [f.code for f in report.findings] == ["MG001"]
    assert "SMTP smuggling" in report.findings[0].message
    assert f"{len(SECOND):,} more bytes" in report.findings[0].message


@pytest.mark.parametrize("after", [b"", b"\r\n", b"  \r\n\r\n"])
def test_nothing_but_blank_lines_after_the_end_is_fine(after: bytes) -> None:
    report = mailguard.check(FIRST + b".\r\n" + after, smtp_data=True)
    assert report.verdict == "pass"


@pytest.mark.parametrize(
    "data",
    [b"x\r..\r\n", b"x\r.y\r\n", b"x\ry.\r\n", b"x\r\n..\r", b". x\r\n", b"x\r\n.. \r"],
)
def test_a_dot_that_is_not_alone_on_its_line_is_no_end(data: bytes) -> None:
    assert split_smtp_data(data) == (data, b"")


def test_the_first_bare_cr_end_is_where_the_data_is_split() -> None:
    assert split_smtp_data(b"a\r.\rb\r\n.\r\n") == (b"a\r.\r", b"b\r\n.\r\n")
    assert split_smtp_data(b".\rMAIL") == (b".\r", b"MAIL")


def test_a_stuffed_dot_line_is_no_end() -> None:
    data = FIRST + b"..\r\n..more\r\n.\r\n"
    assert split_smtp_data(data) == (data, b"")
    assert decode_smtp_data(data).endswith(b"hello\r\n.\r\n.more\r\n")


@given(st.lists(st.binary().filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=20))
def test_any_properly_stuffed_message_has_nothing_after_its_end(lines: list[bytes]) -> None:
    body = b"".join(b"." + line + b"\r\n" if line.startswith(b".") else line + b"\r\n"
                    for line in lines)  # fmt: skip
    data = b"To: a@b.example\r\n\r\n" + body + b".\r\n"
    section, after = split_smtp_data(data)
    assert after == b""
    assert decode_smtp_data(section) == b"To: a@b.example\r\n\r\n" + b"".join(
        line + b"\r\n" for line in lines
    )


def test_the_cli_exits_2_and_says_why(tmp_path: Path) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_bytes(FIRST + b".\r\n" + SECOND)
    done = subprocess.run(
        [sys.executable, "-m", "mailguard", "check", "--no-config", "--smtp-data", str(payload)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "SMTP smuggling" in done.stdout
