"""mailguard.remedy: when a header rewrite cures a message, the edits, and applying them.

The milter sends the edits to an MTA; the proxy applies them to bytes. Both must end with
the same header block, whichever way the MTA numbers fields after a delete (Postfix closes
the gap, Sendmail keeps the deleted entry counted): the property tests below replay the
plan under both semantics and against the bytes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.message import parse_message
from mailguard.recipients import Envelope
from mailguard.remedy import (
    ACTION_FIELD,
    UNDISCLOSED,
    Edit,
    apply_to_bytes,
    apply_to_fields,
    at_level,
    fields_of,
    plan_rewrite,
    rewrite_message,
)
from mailguard.scoring import Scoring
from tests.support import custom_rule
from tests.test_linear_time import assert_linear

ENGINE = Engine()
SCORING = Scoring()


def mailout(n: int = 296, *, eol: str = "\r\n", extra: str = "", body: str = "Hello all.") -> bytes:
    people = [f"person{i}@gmail.com" for i in range(n)]
    to = f",{eol} ".join(people)
    return (
        f"From: HR <hr@acme.example>{eol}To: {to}{eol}Subject: Welcome{eol}{extra}{eol}{body}{eol}"
    ).encode()


def envelope(raw: bytes) -> Envelope:
    fields = fields_of(raw)
    rcpts = [
        a.strip()
        for name, value in fields
        if name.lower() in ("to", "cc", "bcc", "resent-to", "resent-cc")
        for a in value.replace("\r\n", "").replace("\n", "").split(",")
    ]
    return Envelope("<hr@acme.example>", tuple(f"<{a}>" for a in rcpts if "@" in a))


def plan_for(raw: bytes, level: str = "block", engine: Engine = ENGINE, **kw):  # type: ignore[no-untyped-def]
    report = engine.check(raw, envelope=envelope(raw))
    return report, plan_rewrite(fields_of(raw), report, level=level, scoring=SCORING, **kw)


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]


def test_the_296_recipient_mailout_is_cured_by_a_rewrite():
    raw = mailout()
    report, plan = plan_for(raw)
    assert report.verdict == "block" and plan.possible, plan.reason
    new = apply_to_bytes(raw, plan.edits)
    head = header_block(new)
    assert b"@gmail.com" not in head
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in new
    assert new.endswith(b"\r\n\r\nHello all.\r\n")
    after = ENGINE.check(new, envelope=envelope(raw))
    assert not at_level(after, "block") and after.recipients["visible"] == 0
    assert plan.visible_before == 296 and plan.visible_after == 0
    action = dict(fields_of(new))[ACTION_FIELD]
    assert action.strip() == "rewritten; visible=296->0; removed=To:1"


def test_every_visible_and_bcc_field_goes_whatever_its_case_and_folding():
    extra = (
        "TO: second@yahoo.com,\r\n\tthird@yahoo.com\r\ncc: c@hotmail.com\r\n"
        "Resent-Cc: r@outlook.com\r\nResent-To: rt@outlook.com\r\nBcc: hidden@aol.com\r\n"
        "X-Mailguard-Action: forged by the sender\r\nResent-Bcc: rb@aol.com\r\n"
    )
    raw = mailout(40, extra=extra)
    _, plan = plan_for(raw)
    assert plan.possible
    new = apply_to_bytes(raw, plan.edits)
    names = [n.lower() for n, _ in fields_of(new)]
    assert names == ["from", "subject", "to", "x-mailguard-action"]
    assert b"@" not in header_block(new).split(b"\r\nSubject")[1]
    assert plan.removed == {"To": 2, "Cc": 1, "Resent-To": 1, "Resent-Cc": 1, "Bcc": 1,
                            "Resent-Bcc": 1}  # fmt: skip
    deletes = [(e.name, e.index) for e in plan.edits if e.action == "delete"]
    assert deletes[:2] == [("To", 2), ("To", 1)]  # highest index first
    assert ("X-Mailguard-Action", 1) in deletes


def test_lf_messages_keep_lf_and_the_body_is_byte_identical():
    body = "line one\n\nTo: not-a-header@example.org\n\x00\xff binary-ish\n"
    raw = mailout(30, eol="\n", body=body)
    _, plan = plan_for(raw)
    new = apply_to_bytes(raw, plan.edits)
    assert b"\r" not in new
    assert new.split(b"\n\n", 1)[1] == raw.split(b"\n\n", 1)[1]


def test_rewrite_to_sender_names_only_the_sender():
    raw = mailout(50)
    _, plan = plan_for(raw, rewrite_to="sender")
    new = apply_to_bytes(raw, plan.edits)
    assert dict(fields_of(new))["To"].strip() == "hr@acme.example"
    assert plan.visible_after == 1


def test_a_bcc_leak_alone_only_loses_the_bcc_field():
    raw = (
        b"From: a@acme.example\r\nTo: colleague@acme.example\r\nBcc: x@gmail.com\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    report, plan = plan_for(raw, level="warn")
    assert at_level(report, "warn") and plan.possible, (report.codes, plan.reason)
    new = apply_to_bytes(raw, plan.edits)
    assert b"To: colleague@acme.example\r\n" in new and b"\nBcc:" not in new


def test_a_finding_without_a_header_remedy_makes_rewrite_impossible(tmp_path: Path):
    custom_rule.write_rule(tmp_path / "rules")
    engine = Engine(Config(rule_paths=(tmp_path / "rules",)))
    people = ", ".join(f"p{i}@gmail.com" for i in range(60))
    raw = custom_rule.payslip_message(people)
    report, plan = plan_for(raw, engine=engine)
    assert custom_rule.CODE in report.codes and report.verdict == "block"
    assert not plan.possible and plan.edits == ()
    assert custom_rule.CODE in plan.reason and "gmail" not in plan.reason


def test_nothing_to_cure_and_errors_are_not_rewritten():
    _, plan = plan_for(b"From: a@acme.example\r\nTo: b@acme.example\r\n\r\nhi\r\n", level="warn")
    assert not plan.possible
    report = ENGINE.check(b"")
    assert not plan_rewrite([], report, level="block", scoring=SCORING).possible


def test_a_message_that_is_all_header_block_gets_a_line_end_before_the_new_fields():
    raw = b"From: a@acme.example\r\nTo: x@gmail.com, y@yahoo.com"
    new = apply_to_bytes(raw, [Edit("delete", "To", index=1), Edit("add", "To", UNDISCLOSED)])
    assert new == b"From: a@acme.example\r\nTo: undisclosed-recipients:;\r\n"


def test_deleting_an_index_that_is_not_there_changes_nothing():
    fields = [("To", "a"), ("Subject", "s")]
    assert apply_to_fields(fields, [Edit("delete", "To", index=2)]) == fields
    assert apply_to_fields(fields, [Edit("delete", "Cc", index=1)]) == fields


# ---------------------------------------------------------------- MTA semantics, properties


def sendmail_apply(fields: list[tuple[str, str]], edits: tuple[Edit, ...]) -> list[tuple[str, str]]:
    """Sendmail's milter_changeheader: a deleted entry stays in the list and keeps counting."""
    entries: list[list[object]] = [[n, v, True] for n, v in fields]
    for edit in edits:
        if edit.action == "add":
            entries.append([edit.name, edit.value, True])
            continue
        seen = 0
        for entry in entries:
            if str(entry[0]).strip().lower() == edit.name.lower():
                seen += 1
                if seen == edit.index:
                    entry[2] = False
                    break
    return [(str(n), str(v)) for n, v, alive in entries if alive]


NAMES = st.sampled_from(
    ["To", "to", "CC", "Cc", "Resent-To", "Resent-Cc", "Bcc", "Resent-Bcc", "From", "Subject",
     "X-Mailguard-Action", "X-Other", "Received"]
)  # fmt: skip
VALUES = st.lists(
    st.sampled_from(["a@gmail.com", "b@yahoo.com", "Team <c@acme.example>", "x y z", ""]),
    min_size=1,
    max_size=4,
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, bytes]:
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    lines = ["From: hr@acme.example"]
    for name, parts in draw(st.lists(st.tuples(NAMES, VALUES), max_size=12)):
        sep = draw(st.sampled_from([", ", f",{eol} ", f",{eol}\t"]))
        lines.append(f"{name}: {sep.join(parts)}")
    body = draw(st.binary(max_size=64)).replace(b"\r", b"").replace(b"\n", eol.encode())
    return (eol.join(lines) + eol + eol).encode() + body, body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.sampled_from(["warn", "block"]), st.sampled_from(["undisclosed", "sender"]))
def test_bytes_postfix_and_sendmail_agree_on_every_plan(message, level, rewrite_to):
    raw, body = message
    report = ENGINE.check(raw, envelope=envelope(raw))
    fields = fields_of(raw)
    plan = plan_rewrite(fields, report, level=level, scoring=SCORING, rewrite_to=rewrite_to)
    if not plan.possible:
        return
    new = apply_to_bytes(raw, plan.edits)
    assert new.endswith(body)

    def norm(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(n.lower(), " ".join(v.split())) for n, v in items]

    expected = norm(apply_to_fields(fields, plan.edits))
    assert norm(fields_of(new)) == expected
    # ... and the engine's own parser reads the rewritten header block the same way.
    engine_view = parse_message(new).headers
    assert {n: len(v) for n, v in engine_view.items()} == dict(Counter(n for n, _ in expected))
    assert norm(sendmail_apply(fields, plan.edits)) == expected
    visible = ("to", "cc", "resent-to", "resent-cc", "bcc", "resent-bcc")
    if plan.visible_after == 0 and any(e.name == "To" for e in plan.edits):
        assert [v for n, v in expected if n in visible] == [UNDISCLOSED]


def test_deleting_many_fields_is_linear():
    """Every one of n To fields deleted, in bytes and as fields: doubling n may not
    quadruple the time (a per-delete search from the top would)."""

    def make(n: int) -> tuple[bytes, list[Edit]]:
        raw = ("From: a@acme.example\r\n" + "To: x@gmail.com\r\n" * n + "\r\nbody\r\n").encode()
        return raw, [Edit("delete", "To", index=i) for i in range(n, 0, -1)]

    def run(item: tuple[bytes, list[Edit]]) -> None:
        raw, edits = item
        assert apply_to_bytes(raw, edits).count(b"To:") == 0
        assert apply_to_fields(fields_of(raw), edits)[1:] == []

    assert_linear(make, run, 500, 1 << 16)


def test_ascending_deletes_would_leave_a_field_behind_in_postfix():
    """Why plans delete from the highest index down: in Postfix's numbering, deleting To #1
    makes the old #2 the new #1, so "#1 then #2" leaves one To; Sendmail's would not."""
    fields = [("To", "a@gmail.com"), ("Subject", "s"), ("To", "b@gmail.com")]
    ascending = (Edit("delete", "To", index=1), Edit("delete", "To", index=2))
    assert apply_to_fields(fields, ascending) == [("Subject", "s"), ("To", "b@gmail.com")]
    assert sendmail_apply(fields, ascending) == [("Subject", "s")]
    descending = ascending[::-1]
    assert apply_to_fields(fields, descending) == sendmail_apply(fields, descending)
    assert apply_to_fields(fields, descending) == [("Subject", "s")]


def test_rewrite_message_applies_and_rechecks_or_says_why(tmp_path: Path):
    """The proxy's one call: rewritten bytes when the re-check clears them, else the codes."""
    raw = mailout(80)
    report = ENGINE.check(raw, envelope=envelope(raw))
    calls: list[bytes] = []

    def recheck(data: bytes):  # type: ignore[no-untyped-def]
        calls.append(data)
        return ENGINE.check(data, envelope=envelope(raw))

    done = rewrite_message(raw, report, level="block", scoring=SCORING, recheck=recheck)
    assert done.ok and done.data == calls[0] and done.after is not None
    assert b"@gmail.com" not in header_block(done.data)

    # A re-check that still blocks (here: a stricter threshold) is no cure.
    strict = Engine(Config(scoring=Scoring(warn_at=0, block_at=0)))
    failed = rewrite_message(raw, report, level="block", scoring=SCORING, recheck=strict.check)
    assert not failed.ok and failed.data is None and failed.why

    custom_rule.write_rule(tmp_path / "rules")
    engine = Engine(Config(rule_paths=(tmp_path / "rules",)))
    raw = custom_rule.payslip_message(", ".join(f"p{i}@gmail.com" for i in range(60)))
    calls.clear()
    refused = rewrite_message(raw, engine.check(raw), level="block", scoring=SCORING,
                              recheck=recheck)  # fmt: skip
    assert not refused.ok and refused.why == custom_rule.CODE and calls == []


EDITS = st.lists(
    st.builds(
        Edit,
        st.sampled_from(["delete", "add"]),
        NAMES,
        st.sampled_from(["", UNDISCLOSED, "x\r\ny"]),
        st.integers(min_value=-1, max_value=4),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), EDITS)
def test_any_bytes_and_any_edits_never_raise_and_no_edits_change_nothing(raw, edits):
    assert apply_to_bytes(raw, []) == raw
    out = apply_to_bytes(raw, edits)
    fields_of(raw)
    fields_of(out)
    if not any(e.action == "add" for e in edits):
        assert len(out) <= len(raw)
    for i, edit in enumerate(edits):
        later = {e.name.lower() for e in edits[i:] if e.action == "delete"}
        if edit.action == "add" and edit.name.lower() not in later:
            # An added field is one line, whatever its value held.
            assert f"{edit.name}: {edit.value}".replace("\r\n", "").encode() in out


def test_a_message_the_edits_cannot_reach_is_refused_by_the_recheck():
    """Bare-CR line ends (classic Mac files): the engine reads them as lines, the byte edits
    see one long line, and an added LF field would make the re-check read it as one too
    (and pass it). Such a message is not rewritten."""
    raw = mailout(60).replace(b"\r\n", b"\r")
    report = ENGINE.check(raw, envelope=envelope(mailout(60)))
    assert report.verdict == "block"
    result = rewrite_message(
        raw, report, level="block", scoring=SCORING, recheck=lambda data: ENGINE.check(data)
    )
    assert not result.ok and result.data is None and result.why == "bare-cr-line-ends"
