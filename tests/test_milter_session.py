"""The milter codec and per-connection state machine, frame by frame (no sockets).

These pin the behaviours that broke other Python milters behind Postfix
(``../shared/notes/postfix-milter.md``): state reset between messages on one connection,
no reply to a step whose reply was waived, edits sent only for the message they belong to.
"""

from __future__ import annotations

import struct

import pytest

from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.errors import ConfigError
from mailguard.milter import protocol as p
from mailguard.milter.decision import failure_outcome, outcome_for, refusal_reason
from mailguard.milter.session import WANTED_PROTOCOL, Session, Step, Transaction
from mailguard.milter.settings import MilterSettings, from_mapping

ALL_ACTIONS = 0x1FF
ALL_STEPS = 0x1FFFFF
PERSONAL = [f"person{i}@gmail.com" for i in range(40)]


def optneg(actions: int = ALL_ACTIONS, steps: int = ALL_STEPS, version: int = 6) -> bytes:
    return struct.pack("!III", version, actions, steps)


def connect_payload(address: str, family: bytes = b"4") -> bytes:
    return b"host.example\0" + family + struct.pack("!H", 25) + address.encode() + b"\0"


def header(name: str, value: str) -> bytes:
    return name.encode() + b"\0" + value.encode() + b"\0"


def new_session(settings: MilterSettings | None = None, **offer: int) -> Session:
    s = Session(settings or MilterSettings())
    s.handle(p.OPTNEG, optneg(**offer))
    s.handle(p.CONNECT, connect_payload("127.0.0.1"))
    return s


def feed_message(s: Session, headers: list[tuple[str, str]], body: bytes = b"Hi\r\n") -> Step:
    s.handle(p.MAIL, b"<hr@serviceco.example>\0SIZE=100\0")
    for name, value in headers:
        s.handle(p.HEADER, header(name, value))
    s.handle(p.EOH, b"")
    s.handle(p.BODY, body)
    return s.handle(p.BODYEOB, b"")


RISKY = [("From", " hr@serviceco.example"), ("Cc", " " + ", ".join(PERSONAL))]
CLEAN = [("From", " hr@serviceco.example"), ("To", " colleague@serviceco.example")]


# ------------------------------------------------------------------ codec


def test_decoder_reassembles_split_and_coalesced_frames() -> None:
    stream = p.frame(p.MAIL, b"<a@b>\0") + p.frame(p.RCPT, b"<c@d>\0") + p.frame(p.EOH)
    decoder = p.FrameDecoder()
    frames = []
    for i in range(len(stream)):  # one byte at a time
        frames += decoder.feed(stream[i : i + 1])
    assert frames == [(b"M", b"<a@b>\0"), (b"R", b"<c@d>\0"), (b"N", b"")]
    assert decoder.pending == 0
    assert list(p.FrameDecoder().feed(stream)) == frames


@pytest.mark.parametrize("size", [0, p.MAX_FRAME + 1])
def test_decoder_refuses_empty_and_oversized_frames(size: int) -> None:
    with pytest.raises(p.ProtocolError):
        list(p.FrameDecoder().feed(struct.pack("!I", size) + b"B"))


def test_reply_code_is_one_ascii_line_without_percent() -> None:
    frame = p.reply_code("550 5.7.1", "100% sure \u2013 no\r\nnewline")
    assert frame[4:5] == b"y"
    text = frame[5:-1].decode("ascii")
    assert text == "550 5.7.1 100? sure ? no??newline"


def test_parse_connect_families() -> None:
    info = p.parse_connect(connect_payload("192.0.2.1"))
    assert (info.family, info.port, info.address) == ("4", 25, "192.0.2.1")
    assert p.parse_connect(b"localhost\0U").family == "U"
    with pytest.raises(p.ProtocolError):
        p.parse_connect(b"no-family")


def test_macros_drop_braces() -> None:
    stage, macros = p.parse_macros(b"C{daemon_name}\0ORIGINATING\0j\0mx.example\0")
    assert stage == b"C"
    assert macros == {"daemon_name": "ORIGINATING", "j": "mx.example"}


# ------------------------------------------------------------------ negotiation


def test_negotiation_requests_only_what_is_offered() -> None:
    s = Session(MilterSettings())
    step = s.handle(p.OPTNEG, optneg(actions=p.SMFIF_ADDHDRS, steps=p.SMFIP_NOHELO))
    version, actions, steps = struct.unpack_from("!III", step.replies[0], 5)
    assert (version, actions, steps) == (6, p.SMFIF_ADDHDRS, p.SMFIP_NOHELO)
    assert len(step.replies[0]) == 5 + 12  # no macro list without SMFIF_SETSYMLIST


def test_negotiation_with_everything_offered_asks_for_no_reply_flags_and_macros() -> None:
    s = Session(MilterSettings())
    reply = s.handle(p.OPTNEG, optneg()).replies[0]
    _, actions, steps = struct.unpack_from("!III", reply, 5)
    # End-of-headers is answered, so inbound mail is accepted there: MAIL needs no reply.
    assert steps == WANTED_PROTOCOL | p.SMFIP_NR_MAIL
    assert actions & p.SMFIF_QUARANTINE and actions & p.SMFIF_ADDHDRS
    assert b"{auth_authen}" in reply and b"{daemon_name}" in reply
    eom_only = Session(MilterSettings(decide_at_headers=False)).handle(p.OPTNEG, optneg())
    # Without it, MAIL must be answerable: it is where we skip inbound mail.
    assert not struct.unpack_from("!III", eom_only.replies[0], 5)[2] & p.SMFIP_NR_MAIL


def test_older_protocol_version_is_answered_in_kind() -> None:
    reply = Session(MilterSettings()).handle(p.OPTNEG, optneg(version=2)).replies[0]
    assert struct.unpack_from("!I", reply, 5)[0] == 2


def test_waived_replies_are_not_sent_and_others_are() -> None:
    waived = new_session()
    plain = new_session(steps=0)
    for command, payload in [(p.RCPT, b"<x@y>\0"), (p.HEADER, header("To", "x@y")),
                             (p.BODY, b"x")]:  # fmt: skip
        waived.handle(p.MAIL, b"<a@b>\0")
        plain.handle(p.MAIL, b"<a@b>\0")
        assert waived.handle(command, payload).replies == ()
        assert plain.handle(command, payload).replies == (p.SIMPLE[p.CONTINUE],)


def test_unknown_command_is_a_protocol_error() -> None:
    with pytest.raises(p.ProtocolError):
        new_session().handle(b"Z", b"")


# ------------------------------------------------------------------ per-message state


def test_state_resets_between_messages_on_one_connection() -> None:
    s = new_session()
    first = feed_message(s, RISKY)
    assert first.decide is not None and len(first.decide.headers) == 2
    s.conclude([])
    s.handle(p.ABORT, b"")  # Postfix sends this after every transaction
    second = feed_message(s, CLEAN, body=b"Second\r\n")
    assert second.decide is not None
    assert second.decide.headers == [(b"From", b" hr@serviceco.example"),
                                     (b"To", b" colleague@serviceco.example")]  # fmt: skip
    assert bytes(second.decide.body) == b"Second\r\n"


def test_abort_mid_message_discards_it() -> None:
    s = new_session()
    s.handle(p.MAIL, b"<hr@serviceco.example>\0")
    s.handle(p.RCPT, b"<person0@gmail.com>\0")
    s.handle(p.HEADER, header("Cc", " " + ", ".join(PERSONAL)))
    s.handle(p.ABORT, b"")
    step = feed_message(s, CLEAN)
    assert step.decide is not None
    assert step.decide.rcpt_to == []
    assert all(name != b"Cc" for name, _ in step.decide.headers)


def test_message_macros_do_not_leak_into_the_next_message() -> None:
    s = new_session()
    s.handle(p.MACRO, b"M" + b"i\0QUEUE1\0{auth_authen}\0alice\0")
    step = feed_message(s, CLEAN)
    assert step.decide is not None and step.decide.macros["i"] == "QUEUE1"
    s.conclude([])
    s.handle(p.ABORT, b"")
    step = feed_message(s, CLEAN)
    assert step.decide is not None and "i" not in step.decide.macros
    assert s.macro("auth_authen") == ""


def test_body_beyond_the_cap_is_counted_not_kept() -> None:
    s = new_session(MilterSettings(max_body_bytes=10))
    s.handle(p.MAIL, b"<a@b>\0")
    s.handle(p.BODY, b"0123456789ABCDEF")
    step = s.handle(p.BODYEOB, b"tail")
    assert step.decide is not None
    assert bytes(step.decide.body) == b"0123456789"
    assert step.decide.body_bytes == 20


def test_raw_message_rebuilds_headers_with_and_without_leading_space() -> None:
    txn = Transaction("<a@b>", MilterSettings())
    txn.headers = [(b"Subject", b" folded\n\tline")]
    txn.add_body(b"body")
    assert txn.raw_message(True) == b"Subject: folded\r\n\tline\r\n\r\nbody"
    txn.headers = [(b"Subject", b"plain")]
    assert txn.raw_message(False) == b"Subject: plain\r\n\r\nbody"


# ------------------------------------------------------------------ scope


@pytest.mark.parametrize(
    ("settings", "address", "macros", "in_scope"),
    [
        ({}, "127.0.0.1", b"", True),
        ({}, "10.1.2.3", b"", True),
        ({}, "203.0.113.5", b"", False),
        ({}, "203.0.113.5", b"M{auth_authen}\0alice\0", True),
        ({"authenticated": False}, "203.0.113.5", b"M{auth_authen}\0alice\0", False),
        ({}, "203.0.113.5", b"C{daemon_name}\0ORIGINATING\0", True),
        ({"outgoing_daemons": ["submission"]}, "203.0.113.5", b"C{daemon_name}\0submission\0",
         True),
        ({"scope": "all"}, "203.0.113.5", b"", True),
        ({"outgoing_networks": ["192.0.2.0/24"]}, "127.0.0.1", b"", False),
        ({"outgoing_networks": ["192.0.2.0/24"]}, "192.0.2.77", b"", True),
    ],
)  # fmt: skip
def test_scope(settings: dict[str, object], address: str, macros: bytes, in_scope: bool) -> None:
    s = Session(from_mapping(settings))
    s.handle(p.OPTNEG, optneg())
    if macros.startswith(b"C"):
        s.handle(p.MACRO, macros)
    s.handle(p.CONNECT, connect_payload(address))
    if macros.startswith(b"M"):
        s.handle(p.MACRO, macros)
    reply = s.handle(p.MAIL, b"<hr@serviceco.example>\0").replies
    # The MAIL reply is waived (end-of-headers is answered): inbound is accepted there.
    assert s.caps.protocol & p.SMFIP_NR_MAIL and reply == ()
    eoh = s.handle(p.EOH, b"")
    assert eoh.replies == (p.SIMPLE[p.ACCEPT],) if not in_scope else eoh.decide is s.txn
    assert (s.txn is not None) is in_scope
    if not in_scope:  # nothing streamed afterwards is kept or judged
        s.handle(p.HEADER, header("Cc", ", ".join(PERSONAL)))
        assert s.handle(p.BODYEOB, b"").decide is None


def test_local_socket_clients_are_outgoing() -> None:
    s = Session(MilterSettings(outgoing_networks=()))
    s.handle(p.OPTNEG, optneg())
    s.handle(p.CONNECT, b"localhost\0L\0\0/var/run/sendmail.sock\0")
    s.handle(p.MAIL, b"<a@b>\0")
    assert s.txn is not None and not s.skipping


# ------------------------------------------------------------------ decisions


def judge(headers: list[tuple[str, str]], settings: MilterSettings, **offer: int) -> list[bytes]:
    s = new_session(settings, **offer)
    step = feed_message(s, headers)
    assert step.decide is not None
    report = Engine(Config()).check(
        step.decide.raw_message(s.caps.leading_space), envelope=step.decide.envelope
    )
    return outcome_for(report, settings, s.caps).frames


def test_block_rejects_with_a_reason_and_no_addresses() -> None:
    frames = judge(RISKY, MilterSettings())
    assert len(frames) == 1 and frames[0][4:5] == p.REPLYCODE
    text = frames[0][5:-1].decode()
    assert text.startswith("550 5.7.1 mailguard: would expose 40 external recipients in To/Cc")
    assert "use Bcc or a mail-merge tool" in text
    assert "@" not in text


def test_monitor_mode_accepts_with_headers_saying_what_it_would_do() -> None:
    frames = judge(RISKY, MilterSettings(mode="monitor"))
    assert frames[-1] == p.SIMPLE[p.CONTINUE]
    added = [f[5:].split(b"\0")[:2] for f in frames if f[4:5] == p.ADDHEADER]
    assert [b"X-Mailguard-Verdict", b" block"] in added
    assert [b"X-Mailguard-Action", b" monitor; enforce mode would reject"] in added


def test_quarantine_falls_back_to_reject_when_the_mta_cannot_hold() -> None:
    held = judge(RISKY, MilterSettings(on_block="quarantine"))
    assert [f[4:5] for f in held] == [b"h", b"h", b"h", p.QUARANTINE, p.ACCEPT]
    refused = judge(RISKY, MilterSettings(on_block="quarantine"), actions=p.SMFIF_ADDHDRS)
    assert [f[4:5] for f in refused] == [p.REPLYCODE]


def test_headers_are_added_only_when_the_mta_allows_it() -> None:
    settings = MilterSettings(add_headers="always")
    assert [f[4:5] for f in judge(CLEAN, settings)] == [b"h", b"h", b"c"]
    assert [f[4:5] for f in judge(CLEAN, settings, actions=0)] == [b"c"]
    assert [f[4:5] for f in judge(CLEAN, MilterSettings())] == [b"c"]


def test_forged_verdict_headers_are_replaced_by_ours() -> None:
    forged = [*RISKY, ("X-Mailguard-Verdict", " pass"), ("x-mailguard-verdict", " pass"),
              ("X-Mailguard-Score", " 0")]  # fmt: skip
    s = new_session(MilterSettings(mode="monitor"))
    step = feed_message(s, forged)
    assert step.decide is not None
    report = Engine(Config()).check(step.decide.raw_message(True), envelope=step.decide.envelope)
    frames = outcome_for(report, s.settings, s.caps, step.decide).frames
    deletions = [f[5:] for f in frames if f[4:5] == p.CHGHEADER]
    assert deletions == [struct.pack("!I", 2) + b"X-Mailguard-Verdict\0\0",
                         struct.pack("!I", 1) + b"X-Mailguard-Verdict\0\0",
                         struct.pack("!I", 1) + b"X-Mailguard-Score\0\0"]  # fmt: skip
    assert frames.index(p.delete_header(1, "X-Mailguard-Score")) < frames.index(
        p.add_header("X-Mailguard-Verdict", " block")
    )
    # Without the change-header action nothing is deleted; a clean pass is not touched.
    s = new_session(MilterSettings(mode="monitor"), actions=p.SMFIF_ADDHDRS)
    step = feed_message(s, forged)
    assert step.decide is not None
    frames = outcome_for(report, s.settings, s.caps, step.decide).frames
    assert not [f for f in frames if f[4:5] == p.CHGHEADER]


def test_failure_outcome_follows_on_error() -> None:
    assert failure_outcome(MilterSettings()).frames[0][5:].startswith(b"451 4.7.1 ")
    assert failure_outcome(MilterSettings(on_error="accept")).frames == [p.SIMPLE[p.CONTINUE]]
    monitored = failure_outcome(MilterSettings(mode="monitor"))
    assert (monitored.action, monitored.planned) == ("accept", "tempfail")
    assert monitored.frames == [p.SIMPLE[p.CONTINUE]]


def test_refusal_reason_for_a_bcc_header() -> None:
    raw = (
        b"From: hr@serviceco.example\r\nTo: hr@serviceco.example\r\nBcc: "
        + ", ".join(PERSONAL * 8).encode()
        + b"\r\n\r\nHi\r\n"
    )
    reason = refusal_reason(Engine(Config()).check(raw))
    assert "Bcc header" in reason and "@" not in reason


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"on_block": "drop"}, "milter.on_block: expected one of"),
        ({"mode": "audit"}, "milter.mode"),
        ({"outgoing_networks": ["not-a-net"]}, "is not an IP network"),
        ({"decision_timeout": 0}, "positive number"),
        ({"on_error": "reject"}, "milter.on_error"),
        ({"bogus": 1}, "unknown key"),
        ({"log_addresses": "yes"}, "true or false"),
    ],
)
def test_settings_are_strict(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(table)


# ------------------------------------------------------------------ leaner protocol


def _agreed(settings: MilterSettings, keep_body: bool = True) -> int:
    reply = Session(settings, keep_body).handle(p.OPTNEG, optneg()).replies[0]
    return struct.unpack_from("!III", reply, 5)[2]


def test_steps_the_settings_do_not_use_are_negotiated_away() -> None:
    default = _agreed(MilterSettings())
    # Outgoing scope needs the client's address; end-of-headers is answered (it may be the
    # decision, and inbound mail is accepted there, so MAIL needs no reply); the body is read.
    assert not default & (p.SMFIP_NOCONNECT | p.SMFIP_NOBODY)
    assert not default & (p.SMFIP_NOEOH | p.SMFIP_NR_EOH)
    assert default & p.SMFIP_NR_MAIL
    assert not _agreed(MilterSettings(decide_at_headers=False)) & p.SMFIP_NR_MAIL
    everything = _agreed(MilterSettings(scope="all"), keep_body=False)
    assert everything & p.SMFIP_NOCONNECT and everything & p.SMFIP_NR_MAIL
    assert everything & p.SMFIP_NOBODY
    for no_early in (MilterSettings(add_headers="always"), MilterSettings(decide_at_headers=False)):
        assert _agreed(no_early) & p.SMFIP_NOEOH  # nothing to do there: no frame at all


def test_end_of_headers_decides_a_single_text_part_and_reads_the_body_of_others() -> None:
    s = new_session()
    s.handle(p.MAIL, b"<hr@serviceco.example>\0")
    for name, value in CLEAN:
        s.handle(p.HEADER, header(name, value))
    step = s.handle(p.EOH, b"")
    assert step.decide is s.txn and step.at_headers and step.replies == ()
    assert s.conclude([p.SIMPLE[p.ACCEPT]]) == [p.SIMPLE[p.ACCEPT]] and s.txn is None

    for ctype in ("multipart/mixed; boundary=b", "message/rfc822"):
        s.handle(p.MAIL, b"<hr@serviceco.example>\0")
        for name, value in [*CLEAN, ("Content-Type", " " + ctype)]:
            s.handle(p.HEADER, header(name, value))
        step = s.handle(p.EOH, b"")  # the limits rule may find something in its MIME tree
        assert step.decide is None and step.replies == (p.SIMPLE[p.CONTINUE],)
        assert s.handle(p.BODYEOB, b"").decide is not None


@pytest.mark.parametrize("ours", ["X-Mailguard-Approval", "x-mailguard-verdict"])
def test_a_message_carrying_our_fields_is_read_whole(ours: str) -> None:
    # An approval is checked against the body (it can turn a block into a pass) and deleted
    # at the end; a forged verdict is removed there: neither can be settled early.
    s = new_session()
    s.handle(p.MAIL, b"<hr@serviceco.example>\0")
    for name, value in [*CLEAN, (ours, " v=1")]:
        s.handle(p.HEADER, header(name, value))
    assert s.handle(p.EOH, b"").decide is None


def test_a_header_block_over_the_cap_is_never_decided_early() -> None:
    s = new_session(MilterSettings(max_header_bytes=300))
    s.handle(p.MAIL, b"<hr@serviceco.example>\0")
    for i in range(10):
        s.handle(p.HEADER, header("Comments", "x" * 100 + str(i)))
    assert s.txn is not None and s.txn.dropped_fields
    assert s.handle(p.EOH, b"").decide is None


def test_a_reload_never_loses_a_step_it_needs() -> None:
    # Negotiated for scope "all" (no connection step), then reloaded to "outgoing": without
    # the client's address the message is checked rather than skipped as inbound.
    s = Session(MilterSettings(scope="all"), keep_body=False)
    s.handle(p.OPTNEG, optneg())
    s.reload(MilterSettings(), keep_body=True)
    s.handle(p.MAIL, b"<a@b>\0")
    assert s.txn is not None and not s.skipping
    # The body was given up too, and a rule now reads it: the decision says it is missing.
    assert "body not received" in s.txn.incomplete
