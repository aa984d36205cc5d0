"""The milter's shared memos (negotiation, client network) and fast paths, against the
careful paths they stand in for: Postfix opens a milter connection per SMTP session, so
what is worked out per connection is memoised across them, and must come out the same."""

from __future__ import annotations

import ipaddress
import struct
import time
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.milter import protocol as p
from mailguard.milter import rewrite
from mailguard.milter import session as session_module
from mailguard.milter.early import settle_at_headers, settle_carefully
from mailguard.milter.session import MEMO_KEY_BYTES, MEMO_SIZE, Capabilities, Session, Transaction
from mailguard.milter.settings import MilterSettings

SETTINGS = st.builds(
    MilterSettings,
    scope=st.sampled_from(["outgoing", "all"]),
    decide_at_headers=st.booleans(),
    add_headers=st.sampled_from(["never", "warn", "always"]),
    inline_time_limit=st.sampled_from([0.0, 0.05]),
)


def _offer(version: int, actions: int, steps: int) -> bytes:
    return struct.pack("!III", version, actions, steps)


def _negotiated(s: Session, payload: bytes) -> tuple[bytes, object, object, object]:
    reply = s.handle(p.OPTNEG, payload).replies[0]
    return reply, s.caps, s._silent, s._decide_at_headers


@settings(max_examples=300, deadline=None)
@given(
    ms=SETTINGS,
    keep_body=st.booleans(),
    version=st.integers(2, 8),
    actions=st.integers(0, 0x1FF),
    steps=st.integers(0, 0x1FFFFF),
)
def test_a_memoised_negotiation_is_the_one_worked_out_afresh(
    ms: MilterSettings, keep_body: bool, version: int, actions: int, steps: int
) -> None:
    payload = _offer(version, actions, steps)
    first = _negotiated(Session(ms, keep_body), payload)  # may fill the memo
    again = _negotiated(Session(ms, keep_body), payload)  # may come from it
    session_module._NEGOTIATED.values.clear()
    fresh = _negotiated(Session(ms, keep_body), payload)
    assert first == again == fresh


def test_a_reload_is_never_answered_from_the_old_settings_memo() -> None:
    payload = _offer(6, 0x1FF, 0x1FFFFF)
    old = MilterSettings(scope="all")
    new = replace(old, scope="outgoing")
    s = Session(old)
    s.handle(p.OPTNEG, payload)
    assert s.caps.protocol & p.SMFIP_NOCONNECT
    s.reload(new)
    s.handle(p.OPTNEG, payload)  # the same bytes, other settings: worked out again
    assert not s.caps.protocol & p.SMFIP_NOCONNECT
    # The same settings but keep_body differs: also a different answer.
    s.reload(new, keep_body=False)
    s.handle(p.OPTNEG, payload)
    assert s.caps.protocol & p.SMFIP_NOBODY


def test_odd_offers_are_answered_but_not_kept() -> None:
    session_module._NEGOTIATED.values.clear()
    long_offer = _offer(6, 0x1FF, 0x1FFFFF) + b"x" * MEMO_KEY_BYTES
    s = Session(MilterSettings())
    assert s.handle(p.OPTNEG, long_offer).replies
    assert not session_module._NEGOTIATED.values
    too_old = _offer(1, 0x1FF, 0x1FFFFF)
    for _ in range(2):  # a refusal is never memoised as an answer
        try:
            Session(MilterSettings()).handle(p.OPTNEG, too_old)
        except p.ProtocolError:
            pass
        else:
            raise AssertionError("protocol version 1 was accepted")


def _in_scope(ms: MilterSettings, address: str) -> bool:
    s = Session(ms)
    s.handle(p.OPTNEG, _offer(6, 0x1FF, 0x1FFFFF))
    connect = b"host\0" + b"4" + struct.pack("!H", 25) + address.encode() + b"\0"
    s.handle(p.CONNECT, connect)
    s.handle(p.MAIL, b"<a@b.example>\0")
    return s.txn is not None


ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.text(alphabet="0123456789abcdef.:[]IPv6", max_size=80),
)


@settings(max_examples=300, deadline=None)
@given(address=ADDRESSES, networks=st.lists(st.sampled_from(["10.0.0.0/8", "::1/128"])))
def test_the_network_memo_agrees_with_the_settings(address: str, networks: list[str]) -> None:
    ms = MilterSettings(
        outgoing_networks=tuple(ipaddress.ip_network(n) for n in networks),
        outgoing_daemons=(),
        authenticated=False,
    )
    expected = bool(address) and ms.is_outgoing_network(address)
    assert _in_scope(ms, address) == expected
    assert _in_scope(ms, address) == expected  # now from the memo (if the key is short)


def test_the_network_memo_follows_a_reload_and_stays_bounded() -> None:
    inside = MilterSettings(outgoing_daemons=(), authenticated=False)
    assert _in_scope(inside, "10.1.2.3")
    outside = replace(inside, outgoing_networks=(ipaddress.ip_network("192.0.2.0/24"),))
    assert not _in_scope(outside, "10.1.2.3")  # not the verdict memoised for `inside`
    for i in range(MEMO_SIZE * 2):
        _in_scope(outside, f"10.{i // 256 % 256}.{i % 256}.1")
    assert len(session_module._NETWORKS.values) <= MEMO_SIZE


# ------------------------------------------------------------------ settling at end-of-headers

_ENGINE = Engine(Config())
_FIELDS = st.sampled_from(
    [
        (b"From", b" Alice <alice@serviceco.example>"),
        (b"To", b" bob@serviceco.example"),
        (b"To", b" " + b", ".join(b"p%d@gmail.com" % i for i in range(30))),
        (b"Cc", b" carol@partner.example, dave@gmail.com"),
        (b"Bcc", b" eve@gmail.com"),
        (b"Subject", b" Minutes"),
        (b"Subject", b" salary review for the patient"),
        (b"Content-Type", b" text/plain; charset=utf-8"),
        (b"X-Mailguard-Approval", b" v=1; k=x; t=0; s=AAAA"),
        (b"x-mailguard-APPROVAL ", b" forged"),
        (b"X-Mailguard-Verdict", b" pass"),
        (b"X-Approval", b" unrelated"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.lists(_FIELDS, max_size=6),
    ms=SETTINGS,
    mode=st.sampled_from(["enforce", "monitor"]),
    actions=st.integers(0, 0x1FF),
    steps=st.integers(0, 0x1FFFFF),
)
def test_settling_a_pass_fast_is_settling_it_carefully(
    fields: list[tuple[bytes, bytes]], ms: MilterSettings, mode: str, actions: int, steps: int
) -> None:
    txn = Transaction("<alice@serviceco.example>", replace(ms, mode=mode))
    txn.rcpt_to.append("<bob@serviceco.example>")
    txn.headers.extend(fields)
    caps = Capabilities(actions, steps)
    report = rewrite.judge(_ENGINE, txn, caps.leading_space, "test", time.monotonic() + 60)
    fast = settle_at_headers(report, txn, caps, _ENGINE)
    careful = settle_carefully(report, txn, caps, _ENGINE)
    assert fast == careful


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=60)
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=60)
    | st.text(alphabet=" %~aZ\x7f\t\u00e9", max_size=500)
)
def test_a_reply_without_characters_to_replace_is_the_reply_of_the_character_walk(
    text: str,
) -> None:
    walked = "".join(ch if " " <= ch <= "~" and ch != "%" else "?" for ch in text)
    assert p.reply_code("550 5.7.1", text) == p.frame(
        p.REPLYCODE, f"550 5.7.1 {walked[:400]}".encode("ascii") + b"\0"
    )


def _may_settle_field_by_field(txn: Transaction) -> bool:
    """Transaction.may_settle_at_headers as it was: a scan of the fields per question."""
    if txn.dropped_fields or txn.header_bytes > txn.settings.inline_header_bytes:
        return False
    if any(name[:12].lower() == b"x-mailguard-" for name, _ in txn.headers):
        return False
    cte = next((v for n, v in txn.headers if n.lower() == b"content-transfer-encoding"), b"")
    if cte.strip().lower() in (b"x-uuencode", b"uuencode", b"x-uue", b"uue"):
        return False  # a uuencoded file, which attachment rules read
    ctype = next((v for n, v in txn.headers if n.lower() == b"content-type"), b"text/")
    return ctype.partition(b";")[0].strip().lower().startswith(b"text/")


_NAMES = st.sampled_from(
    [
        b"To",
        b"Content-Type",
        b"content-TYPE",
        b"Content-Type ",
        b"X-Mailguard-Verdict",
        b"x-mailguard-",
        b"X-Mailguard",
        b"X-Old-X-Mailguard-Approval",
        b"",
        b"Subject",
        b"T\xe9",
        b"Content-Transfer-Encoding",
        b"content-transfer-ENCODING",
    ]
) | st.binary(max_size=14).filter(lambda b: b"\0" not in b)  # the MTA's NUL ends a name
_CTYPES = st.sampled_from(
    [
        b" text/plain",
        b" TEXT/html; charset=x",
        b" multipart/mixed; boundary=b",
        b"",
        b" text",
        b"  text/;",
        b" application/pdf",
        b" x-uuencode",
        b"UUENCODE ",
        b" 7bit",
    ]
) | st.binary(max_size=20)


@settings(max_examples=400, deadline=None)
@given(fields=st.lists(st.tuples(_NAMES, _CTYPES), max_size=8), dropped=st.integers(0, 1))
def test_settling_questions_over_the_joined_names_are_the_field_by_field_ones(
    fields: list[tuple[bytes, bytes]], dropped: int
) -> None:
    txn = Transaction("<a@b>", MilterSettings())
    txn.headers.extend(fields)
    txn.dropped_fields = dropped
    assert txn.may_settle_at_headers() == _may_settle_field_by_field(txn)
    named = any(b"x-mailguard-approval" in name.lower() for name, _ in fields)
    assert (b"x-mailguard-approval" in txn.names()) == named
