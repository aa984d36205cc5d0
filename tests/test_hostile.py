"""Hostile input is decided in bounded memory, with a finding that says where reading stopped.

Memory is behaviour and is asserted (tracemalloc peak while checking, the input itself
excluded). Time is not asserted here: speed is measured by the benchmarks. Every input is
built so that an unbounded or super-linear implementation would be unmistakable.
"""

from __future__ import annotations

import tracemalloc

import pytest

import mailguard
from mailguard import Config, Limits
from mailguard.message import decode_smtp_data, parse_message

HEAD = b"From: Sender <sender@origin.example>\r\n"
MB = 1_000_000


def checked(data: bytes, config: Config | None = None) -> mailguard.Report:
    """Check ``data`` and assert the peak memory of doing so stays within a generous bound."""
    tracemalloc.start()
    try:
        report = mailguard.check(data, config=config)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = 20 * len(data) + 50 * MB
    assert peak < bound, f"peak {peak:,} bytes for {len(data):,} bytes of input"
    assert report.verdict in {"pass", "warn", "block"}, [f.message for f in report.findings]
    return report


def limit_messages(report: mailguard.Report) -> list[str]:
    return [f.message for f in report.findings if f.code == "MG002"]


def test_one_megabyte_subject_line():
    data = HEAD + b"To: b@one.example\r\nSubject: " + b"A" * MB + b"\r\n\r\nbody\r\n"
    report = checked(data)
    assert any("Subject header is 1,000,000 characters long" in m for m in limit_messages(report))
    assert report.recipients["to"] == 1


def test_one_megabyte_to_without_separators():
    data = HEAD + b"To: " + b"a" * MB + b"\r\n\r\nbody\r\n"
    report = checked(data)
    assert any("To header is 1,000,000 characters long" in m for m in limit_messages(report))
    assert report.recipients["to"] == 0
    assert report.recipients["invalid_entries"] == 1


def test_one_megabyte_to_of_at_signs():
    report = checked(HEAD + b"To: " + b"a@" * (MB // 2) + b"\r\n\r\nbody\r\n")
    assert "MG002" in report.codes
    assert report.recipients["to"] == 0


def _nested(depth: int, recipients: list[str], text: bytes = b"deep") -> bytes:
    """A multipart nested ``depth`` levels; boundaries b0, b1 ... b10 ... share prefixes."""
    head = (
        HEAD
        + b"To: " + ", ".join(recipients).encode() + b"\r\n"
        + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    )  # fmt: skip
    opening = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    leaf = b"--b%d\r\nContent-Type: text/plain\r\n\r\n%s\r\n" % (depth, text)
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth + 1)))
    return head + opening + leaf + closing


EXTERNAL = [f"person{i}@org{i}.example" for i in range(12)]


def test_mime_nested_2000_deep():
    report = checked(_nested(2000, EXTERNAL))
    assert any("MIME nesting deeper than 64 levels" in m for m in limit_messages(report))
    assert report.recipients["visible"] == 12
    assert "MG101" in report.codes  # the recipients were still judged


def test_nesting_within_the_limit_reaches_the_text_despite_prefix_boundaries():
    """``--b1`` must not match the ``--b10`` ... ``--b19`` lines of nested parts."""
    message = parse_message(_nested(40, ["a@one.example"], b"the first text"))
    assert message.body_text.limit_hit is None
    assert message.body_text.text == "the first text"


def test_nesting_one_past_a_configured_limit_is_reported():
    config = Config(limits=Limits(max_mime_depth=12))
    assert "MG002" not in checked(_nested(11, EXTERNAL), config).codes
    report = checked(_nested(13, EXTERNAL), config)
    assert any("MIME nesting deeper than 12 levels" in m for m in limit_messages(report))


def _many(n: int) -> bytes:
    to = b", ".join(b"user%d@d%d.example" % (i, i % 1000) for i in range(n))
    return HEAD + b"To: " + to + b"\r\n\r\nhello\r\n"


def test_100000_addresses_in_to_are_all_counted():
    report = checked(_many(100_000))
    assert report.verdict == "block"
    assert "MG101" in report.codes
    assert report.recipients["visible"] == 100_000
    assert not any("counting stopped" in m for m in limit_messages(report))


def test_100000_addresses_with_a_lower_address_limit():
    report = checked(_many(100_000), Config(limits=Limits(max_addresses=50_000)))
    assert report.recipients["visible"] == 50_000
    assert any("more than 50,000 addresses" in m for m in limit_messages(report))
    assert report.verdict == "block"


def test_twenty_megabyte_header_block_without_end():
    line = b"X-Filler: " + b"x" * 88 + b"\r\n"
    data = HEAD + b"To: b@one.example\r\n" + line * (20 * MB // len(line))
    report = checked(data)
    assert any("no end of headers" in m for m in limit_messages(report))
    assert report.recipients["to"] == 1


def test_twenty_megabyte_single_line_header_block():
    report = checked(HEAD + b"To: b@one.example\r\nX-Junk: " + b"y" * (20 * MB))
    messages = limit_messages(report)
    assert any("no end of headers" in m for m in messages)
    assert report.recipients["to"] == 1


PATHOLOGICAL = {
    "quotes": b'"' * 50_000,
    "open-parens": b"(" * 50_000,
    "open-angles": b"<" * 50_000,
    "escaped-quotes": b'"\\' * 25_000,
    "escaped-parens": b"(\\(" * 17_000,
    "unterminated-angles": b"<a@b.example " * 5_000,
    "at-signs": b"@" * 50_000,
    "colons": b":" * 50_000,
    "semicolons": b";" * 50_000,
    "backslashes": b"\\" * 50_000,
    "closing-parens": b")" * 50_000,
    "balanced-comments": b"(a)" * 17_000,
    "encoded-word-starts": b"=?utf-8?q?" * 5_000,
}


@pytest.mark.parametrize("junk", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_to_values(junk):
    report = checked(HEAD + b"To: " + junk + b"\r\n\r\nhi\r\n")
    assert report.recipients["to"] <= 1


@pytest.mark.parametrize("junk", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_entry_between_real_addresses(junk):
    """The junk is one entry: the addresses on both sides of it are still counted."""
    report = checked(HEAD + b"To: first@one.example, " + junk + b", last@two.example\r\n\r\nhi\r\n")
    assert report.analysis is not None
    assert {"first@one.example", "last@two.example"} <= set(report.analysis.visible)


# ------------------------------------------------------------------ SMTP DATA


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_smtp_data_terminator_and_dot_stuffing_are_removed(eol):
    lines = [b"To: a@one.example", b"", b"..leading dot", b"...two dots", b"middle . dot", b"."]
    data = eol.join(lines) + eol
    assert decode_smtp_data(data) == eol.join(
        [b"To: a@one.example", b"", b".leading dot", b"..two dots", b"middle . dot", b""]
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"To: a@x.example\r\n\r\nbody\r\n.", b"To: a@x.example\r\n\r\nbody\r\n"),
        (b"To: a@x.example\n\nbody\n.", b"To: a@x.example\n\nbody\n"),
        (b".\r\n", b""),
        (b".", b""),
        (b"To: a@x.example\r\n\r\n..\r\n.\r\n", b"To: a@x.example\r\n\r\n.\r\n"),
        # no terminator: only the unstuffing applies, the last line is kept
        (b"To: a@x.example\r\n\r\n..x\r\n", b"To: a@x.example\r\n\r\n.x\r\n"),
        # a stuffed line that merely ends in a dot is not a terminator
        (b"To: a@x.example\r\n\r\nend.\r\n", b"To: a@x.example\r\n\r\nend.\r\n"),
    ],
)
def test_smtp_data_edge_cases(data, expected):
    assert decode_smtp_data(data) == expected


def test_check_with_smtp_data_reads_a_dot_stuffed_message():
    data = (
        b"From: s@origin.example\r\nTo: a@one.example, b@two.example\r\n"
        b"Cc: c@three.example\r\n\r\n..hidden line\r\nbody\r\n.\r\n"
    )
    report = mailguard.check(data, smtp_data=True)
    assert report.verdict != "error"
    assert (report.recipients["to"], report.recipients["cc"]) == (2, 1)


def test_smtp_data_that_is_only_a_terminator_is_an_error_not_a_crash():
    report = mailguard.check(b".\r\n", smtp_data=True)
    assert report.verdict == "error"
    assert "empty" in report.findings[0].message
