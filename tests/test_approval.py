"""Signed approvals (mailguard.approval): the field's format, what it binds, and that every
change a sender could make after approval is caught while transport changes are not."""

from __future__ import annotations

import re

import pytest

from mailguard import Engine
from mailguard.approval import (
    ABSENT,
    HEADER,
    canonical_body,
    header_indexes,
    sign,
    strip,
    verify,
)
from mailguard.approval_keys import Key, Keyring, new_key
from mailguard.errors import InputError
from mailguard.message import decode_smtp_data, parse_message
from mailguard.services import Services

NOW = 1_796_083_200.0
KEY = Key("ops-2026a", bytes(range(32)))
OTHER = Key("ops-2026b", bytes(range(32, 64)))
RING = Keyring([KEY, OTHER])


def partners(n: int = 40) -> str:
    return ", ".join(f"Partner {i} <contact{i}@partner{i}.example>" for i in range(n))


def mailout(n: int = 40, body: str = "Dear partners,\r\n\r\nthe joint statement.\r\n") -> bytes:
    return (
        f"From: Partnerships <partners@acme.example>\r\nTo: {partners(n)}\r\n"
        f"Subject: Joint statement\r\nMessage-ID: <1@acme.example>\r\n\r\n{body}"
    ).encode()


def signed(raw: bytes | None = None, key: Key = KEY, valid_for: float = 86400) -> bytes:
    return sign(raw or mailout(), key, valid_for, NOW)


def test_a_signed_message_verifies_and_says_with_which_key_until_when():
    result = verify(signed(), RING, NOW + 60)
    assert result.valid and result.key_id == "ops-2026a"
    assert result.expires == int(NOW) + 86400 and result.reasons == ()


def test_signing_adds_one_folded_field_and_changes_nothing_else():
    raw = mailout()
    out = signed(raw)
    assert strip(out) == raw
    block = out.split(b"\r\n\r\n")[0]
    assert block.count(HEADER.encode()) == 1
    assert all(len(line) <= 78 for line in block.split(b"\r\n")[-6:])
    assert out.endswith(raw.split(b"\r\n\r\n", 1)[1])


def test_no_field_is_absent():
    assert verify(mailout(), RING, NOW) is ABSENT


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda m: m.replace(b"To: ", b"To: extra@else.example, "), "recipients changed"),
        (lambda m: m.replace(b"Partner 3 <contact3@partner3.example>, ", b""), "recipients"),
        (lambda m: m.replace(b"Subject: J", b"Cc: x@y.example\r\nSubject: J"), "recipients"),
        (lambda m: m.replace(b"joint statement.", b"joint statement!"), "body changed"),
        (lambda m: m + b"P.S. one more line\r\n", "body changed"),
        (lambda m: m.replace(b"Subject: Joint", b"Subject: Final joint"), "Subject changed"),
        (lambda m: m.replace(b"partners@acme", b"someone@acme"), "From changed"),
        (lambda m: m.replace(b"From: Partnerships", b"From: CEO"), "From changed"),
    ],
)
def test_every_change_after_approval_is_named(edit, reason):
    result = verify(edit(signed()), RING, NOW + 60)
    assert result.status == "invalid"
    assert reason in result.reason, result.reason


@pytest.mark.parametrize(
    "transport",
    [
        lambda m: m.replace(b"\r\n", b"\n"),  # a Maildir/mbox copy
        lambda m: m + b"\r\n\r\n",  # blank lines added at the end
        lambda m: m.rstrip(b"\r\n"),  # the final line end lost
        lambda m: m.replace(b"statement.\r\n", b"statement.  \r\n"),  # trailing blanks
        lambda m: decode_smtp_data(m.replace(b"\r\n.", b"\r\n..") + b".\r\n"),  # dot-stuffed
        lambda m: b"Received: from x by y; Tue, 1 Dec 2026 01:00:00 +0000\r\n" + m,
        lambda m: m.replace(b"To: Partner 0", b"To:\r\n  Partner 0"),  # refolded To
        lambda m: m.replace(b"contact7@partner7.example", b"CONTACT7@Partner7.EXAMPLE"),
        lambda m: m.replace(b"Subject: Joint statement", b"Subject: =?utf-8?q?Joint_statement?="),
    ],
)
def test_transport_changes_keep_it_valid(transport):
    assert verify(transport(signed()), RING, NOW + 60).valid


def test_expired_unknown_key_and_altered_fields_are_named():
    assert verify(signed(), RING, NOW + 86400).reason.startswith("approval expired")
    unknown = signed(key=Key("retired", bytes(32)))
    assert verify(unknown, RING, NOW).reason.startswith("unknown key 'retired'")
    assert "no approval keys are configured" in verify(unknown, None, NOW).reason
    longer = re.sub(rb"exp=(\d+)", lambda m: b"exp=" + str(int(m[1]) + 10**6).encode(), signed())
    assert "signature does not match" in verify(longer, RING, NOW).reason
    same_id = Keyring([Key("ops-2026a", bytes(range(1, 33)))])
    assert "signature does not match" in verify(signed(), same_id, NOW).reason
    future = sign(mailout(), KEY, 3600, NOW + 3600)
    assert "in the future" in verify(future, RING, NOW).reason


@pytest.mark.parametrize(
    "value",
    [
        b"yes",
        b"v=2; key=a",
        b"v=1; key=ops-2026a; t=1; exp=2",
        b"v=1; v=1",
        b"v=1; key=ops 2026",
        b"x" * 5000,
        b"v=1; key=../../etc; t=1; exp=2; rcpt=a; from=a; subj=a; body=a; mac=a",
    ],
)
def test_malformed_fields_are_invalid_never_ignored(value):
    raw = mailout().replace(b"\r\n\r\n", b"\r\n" + HEADER.encode() + b": " + value + b"\r\n\r\n", 1)
    result = verify(raw, RING, NOW)
    assert result.status == "invalid" and result.reason.startswith("malformed approval")
    assert value.decode()[:40] not in result.reason or value == b"yes"  # never quoted


def test_two_approval_fields_are_malformed():
    out = signed()
    block, body = out.split(b"\r\n\r\n", 1)
    twice = block + b"\r\n" + block.split(b"\r\n", 4)[-1] + b"\r\n\r\n" + body
    assert verify(twice, RING, NOW).status == "invalid"


def test_sign_replaces_an_old_approval_and_refuses_bad_validity():
    again = sign(signed(key=OTHER), KEY, 60, NOW)
    assert again.count(HEADER.encode()) == 1
    assert verify(again, RING, NOW).key_id == "ops-2026a"
    for bad in (0, -1, 91 * 86400):
        with pytest.raises(InputError):
            sign(mailout(), KEY, bad, NOW)


def test_canonical_body_is_linear_and_strips_only_line_end_blanks():
    assert canonical_body(b"a \t\r\nb\r\n\r\n\r\n") == b"a\nb\n"
    assert canonical_body(b"") == b""
    assert canonical_body(b" a") == b" a\n"


def test_strip_keeps_everything_else_byte_for_byte():
    raw = b"A: 1\nX-Mailguard-Approval: v=1;\n  more\n\tmore\nB: 2\n\nbody\n"
    assert strip(raw) == b"A: 1\nB: 2\n\nbody\n"
    last = b"A: 1\r\nx-mailguard-approval : v=1;\r\n more\r\n\r\nbody"
    assert strip(last) == b"A: 1\r\n\r\nbody"
    assert strip(b"A: 1\r\n\r\nX-Mailguard-Approval: in the body\r\n") == (
        b"A: 1\r\n\r\nX-Mailguard-Approval: in the body\r\n"
    )


def test_header_indexes_count_like_chgheader_highest_first():
    headers = [(b"To", b"a"), (b"X-Mailguard-Approval", b"1"), (b"x-mailguard-approval", b"2")]
    assert header_indexes(headers) == [2, 1]
    assert header_indexes([(b"To", b"a")]) == []


def test_the_engine_passes_a_valid_approval_and_blocks_an_invalid_one():
    engine = Engine(services=Services(approval=RING, clock=lambda: NOW + 60))
    plain = engine.check(mailout())
    assert plain.verdict == "block"
    approved = engine.check(signed())
    assert approved.verdict == "pass" and approved.approval is not None
    assert approved.score == plain.score and approved.codes == plain.codes
    assert approved.to_dict()["approval"]["key_id"] == "ops-2026a"
    assert approved.to_dict()["approval"]["verdict_without_approval"] == "block"
    changed = engine.check(signed().replace(b"To: ", b"To: one@more.example, "))
    assert changed.verdict == "block" and "MG701" in changed.codes
    assert "recipients changed since approval" in changed.findings[0].message
    archived = engine.check(signed(), mode="archived")
    assert archived.approval is None and "MG701" not in archived.codes


def test_key_material_never_shows_in_reprs_or_results():
    key = new_key("k1")
    forms = [repr(key), str(key), repr(Keyring([key])), repr(verify(signed(key=key), None, NOW))]
    for form in forms:
        assert key.secret.hex() not in form and repr(key.secret) not in form


def test_the_message_that_cannot_be_counted_is_not_signed():
    from mailguard.limits import Limits

    with pytest.raises(InputError):
        sign(mailout(10), KEY, 60, NOW, Limits(max_addresses=5))
    assert parse_message(signed())  # sanity: the signed message parses


# ------------------------------------------------------------------ bounded time


def _signed_with_body(unit: bytes):
    def make(n: int) -> bytes:
        return sign(mailout(3, body="") + unit * (n // len(unit)), KEY, 60, NOW)

    return make


def test_verifying_hostile_bodies_is_linear():
    from tests.test_linear_time import assert_linear

    def run(raw: bytes) -> None:
        assert verify(raw, RING, NOW).valid

    for unit in (b" ", b" \t\r", b"x  \r\n", b"\r\n"):  # blanks with no line end after them
        assert_linear(_signed_with_body(unit), run, 4_000, 1 << 22)


def test_stripping_many_fields_and_continuation_lines_is_linear():
    from tests.test_linear_time import assert_linear

    def make(n: int) -> bytes:
        fields = b"X-Mailguard-Approval: v=1;\r\n more\r\nX-Other: 1\r\n\tcontinued\r\n" * (n // 50)
        return b"From: a@b.example\r\n" + fields + b"\r\nbody\r\n"

    assert_linear(make, strip, 4_000, 1 << 22)


def test_verifying_many_recipients_is_linear():
    from tests.test_linear_time import assert_linear

    assert_linear(
        lambda n: signed(mailout(n // 40)), lambda raw: verify(raw, RING, NOW), 400, 1 << 20
    )


@pytest.mark.parametrize(
    "headers",
    [
        "To: a@x.example, A@X.example\r\nCc: b@y.example\r\nResent-To: c@z.example",
        "To: Group: a@x.example, b@y.example;, c@z.example\r\nResent-Cc: d@w.example",
        "To: =?utf-8?q?M=C3=BCller=2C_Jo?= <jo@b\u00fccher.example>; x@y.example",
        "To: a@x.example\r\nTo: <b@y.example> <c@z.example>, not an address\r\nBcc: h@i.example",
        "To: undisclosed-recipients:;",
    ],
)
def test_the_engines_recipient_analysis_and_the_signer_bind_the_same_recipients(headers):
    from mailguard.approval import bindings
    from mailguard.config import Config
    from mailguard.recipients import analyse

    raw = f"From: a@ours.example\r\n{headers}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    message = parse_message(raw)
    analysis = analyse(message, Config())
    ours = bindings(message)
    theirs = bindings(message, (analysis.visible.keys(), analysis.truncated))
    assert ours == theirs


@pytest.mark.parametrize(
    "raw",
    [
        mailout(3).replace(b"\r\n", b"\r"),  # classic Mac line ends
        b"\xef\xbb\xbf" + mailout(3),  # a byte-order mark
        b"From someone Tue Dec  1 01:00:00 2026\n" + mailout(3).replace(b"\r\n", b"\n"),
        mailout(3).split(b"\r\n\r\n")[0] + b"\r\n",  # headers only
        mailout(3).split(b"\r\n\r\n")[0],  # headers only, no final line end
    ],
    ids=["bare-cr", "bom", "mbox-from-line", "headers-only", "no-final-eol"],
)
def test_odd_but_readable_messages_are_signed_in_their_header_block(raw):
    out = signed(raw)
    assert verify(out, RING, NOW).valid
    assert Engine(services=Services(approval=RING, clock=lambda: NOW)).check(out).approval


def _reference_canonical(body: bytes) -> bytes:
    """The definition, written the obvious way (slow on hostile input, exact)."""
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    stripped = [line.rstrip(b" \t") for line in lines]
    while stripped and not stripped[-1]:
        stripped.pop()
    return b"".join(line + b"\n" for line in stripped)


def test_canonical_body_matches_its_definition_on_random_bodies():
    import random

    rng = random.Random(11)
    alphabet = [b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b"b ", b".", b"\xc3\xa9", b"\x00"]
    for _ in range(3000):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        assert canonical_body(body) == _reference_canonical(body), body


def test_canonical_body_of_many_empty_lines_builds_no_line_list():
    import tracemalloc

    body = b"x\n" + b"\n" * 2_000_000
    tracemalloc.start()
    try:
        assert canonical_body(body) == b"x\n"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(body)  # a list of 2 million lines alone would be 16 MB


def test_a_body_cut_short_is_named_as_such():
    out = signed(mailout(body="line\r\n" * 1000))
    cut = out[: len(out) - 3000]
    reason = verify(cut, RING, NOW).reason
    assert "body changed since approval" in reason and "approved body bytes arrived" in reason
    edited = out.replace(b"line\r\nline", b"lime\r\nline", 1)
    assert "arrived" not in verify(edited, RING, NOW).reason


def test_an_empty_approval_field_is_malformed_not_absent():
    raw = mailout(3).replace(b"Subject:", HEADER.encode() + b":\r\nSubject:")
    report = Engine(services=Services(approval=RING, clock=lambda: NOW)).check(raw)
    assert "MG701" in report.codes and report.verdict == "block"


def test_random_approval_fields_never_raise_and_never_pass():
    import random

    rng = random.Random(7)
    good = signed().split(HEADER.encode() + b": ")[1].split(b"\r\n\r\n")[0].decode()
    pieces = [*good.replace("\r\n", "").split(";"), "v=1", "key=", "=", ";", " ", "\u00e9", "mac"]
    for _ in range(2000):
        value = ";".join(rng.choice(pieces) for _ in range(rng.randrange(0, 14)))
        raw = mailout(3).replace(b"Subject:", f"{HEADER}: {value}\r\nSubject:".encode())
        result = verify(raw, RING, NOW)
        assert result.status == "invalid", value


def test_canonical_body_of_many_lines_with_blanks_stays_bounded():
    import tracemalloc

    body = b"x \t\n" + b"ab \n" * 1_000_000
    tracemalloc.start()
    try:
        assert canonical_body(body) == b"x\n" + b"ab\n" * 1_000_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(body)  # a list of the million lines would take 10x the body
