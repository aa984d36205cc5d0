"""The leaner milter behind a real Postfix (issue 10, item 4).

What changed on the wire, checked where it matters, in the private Postfix harness: a
message its header block settles is answered at end-of-headers (Postfix then sends no
body, and delivers or refuses as before); steps the settings do not use are negotiated
away (Postfix must keep working with every combination); the limits rule and the rules
that read the body still see the body whenever it could count; the decision log line is
written without the logging module's per-record extras, buffered unless ``log_flush``.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time

import pytest

from tests import test_milter_postfix as _base
from tests.conftest import eml
from tests.support.milter_process import MilterProcess
from tests.support.postfix import PostfixInstance

# The same private Postfix + milter per module, fresh queues and default milter per test.
milter, postfix, _fresh = _base.milter, _base.postfix, _base._fresh

SENDER = "hr@serviceco.example"
PARTNER = "partner@othercorp.example"
BODY = "Agenda for Tuesday.\r\n" * 40
NO_BODY_RULES = "".join(f"[rules.{c}]\nenabled = false\n" for c in ("MG101", "MG102", "MG301"))
"""No enabled rule reads the body: the milter asks Postfix not to send it."""
NO_FILE_RULES = "".join(f"[rules.{c}]\nenabled = false\n" for c in ("MG601", "MG602", "MG603"))
"""The attachment rules off: with them on, a single text part may hold a uuencoded file and
is always read (tests/test_milter_attachments.py)."""


def delivered(postfix: PostfixInstance) -> dict[str, email.message.Message]:
    postfix.wait_idle()
    found = {}
    for d in postfix.sink_deliveries():
        msg = email.message_from_bytes(d.data, policy=email.policy.compat32)
        found[str(msg["Subject"])] = msg
    return found


def nested(depth: int) -> str:
    """A body nested ``depth`` multiparts deep (the limits rule's default is 64)."""
    parts = [f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
             for i in range(1, depth + 1)]  # fmt: skip
    return "".join(parts) + f"--b{depth + 1}\r\nContent-Type: text/plain\r\n\r\nhi\r\n"


def people(n: int) -> list[str]:
    return [f"person{i}@gmail.com" for i in range(n)]


def test_settled_messages_are_answered_at_end_of_headers_and_others_read_whole(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    milter.restart(NO_FILE_RULES)
    before = len(milter.decisions())
    clean = eml(f"From: {SENDER}\nTo: {PARTNER}\nSubject: clean early", BODY)
    risky = eml(f"From: {SENDER}\nTo: {SENDER}\nCc: {', '.join(people(40))}\nSubject: risky")
    deep = eml(
        f"From: {SENDER}\nTo: {PARTNER}\nSubject: deep\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b1"',
        nested(70),
    )
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, [PARTNER], clean)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(SENDER, people(40), risky)
        smtp.sendmail(SENDER, [PARTNER], deep)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1 mailguard: would expose 40 external")
    got = delivered(postfix)
    assert set(got) == {"clean early", "deep"}
    # Accepted before its body was sent to the milter: Postfix still delivers all of it.
    body = str(got["clean early"].get_payload()).replace("\r\n", "\n").rstrip("\n")
    assert body == BODY.replace("\r\n", "\n").rstrip("\n")
    assert got["clean early"]["X-Mailguard-Verdict"] is None
    # The limits rule is honoured: the nesting is in the body, which was read to its end.
    assert got["deep"]["X-Mailguard-Verdict"] == "warn"
    assert "MG002" in got["deep"]["X-Mailguard-Rules"]
    lines = milter.decisions()[before:]
    assert [(" at=headers" in line, line.split("action=")[1].split()[0]) for line in lines] == [
        (True, "accept"), (True, "reject"), (False, "accept"),
    ]  # fmt: skip
    # Postfix's cleanup applies a reply given at end-of-headers when the DATA ends.
    assert "milter-reject: END-OF-MESSAGE" in postfix.maillog()


def test_with_the_attachment_rules_on_every_message_is_judged_once_at_its_end(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    """With the default rules no message can be accepted at end-of-headers (the attachment
    rules read every body), so end-of-headers is negotiated away and a refusal waits for the
    end of the message too: each message is judged once, and the log says why."""
    before = len(milter.decisions())
    clean = eml(f"From: {SENDER}\nTo: {PARTNER}\nSubject: clean", BODY)
    risky = eml(f"From: {SENDER}\nTo: {SENDER}\nCc: {', '.join(people(40))}\nSubject: risky")
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, [PARTNER], clean)
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail(SENDER, people(40), risky)
    assert "clean" in delivered(postfix)
    lines = milter.decisions()[before:]
    assert [(" at=headers" in line, line.split("action=")[1].split()[0]) for line in lines] == [
        (False, "accept"), (False, "reject"),
    ]  # fmt: skip
    assert "rules MG601,MG602,MG603 read every message's body" in milter.log()


@pytest.mark.parametrize(
    "config",
    [
        pytest.param('[milter]\nscope = "all"\n', id="no-connect-step-no-mail-reply"),
        pytest.param('[milter]\nadd_headers = "always"\n', id="no-end-of-headers"),
        pytest.param(NO_BODY_RULES, id="no-body"),
        pytest.param("[milter]\ndecide_at_headers = false\n", id="decide-at-end-only"),
    ],
)
def test_every_negotiated_combination_still_checks_every_message(
    postfix: PostfixInstance, milter: MilterProcess, config: str
) -> None:
    milter.restart(config)
    before = len(milter.decisions())
    sent = {
        "one": eml(f"From: {SENDER}\nTo: {PARTNER}\nSubject: one", BODY),
        "two": eml(f"From: {SENDER}\nTo: {PARTNER}\nSubject: two", BODY),
    }
    # A lookalike of a mailbox provider: a header rule, on in every combination.
    risky = eml(f"From: {SENDER}\nTo: friend@gmial.com\nSubject: bad")
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, [PARTNER], sent["one"])
        refused = smtp.sendmail(SENDER, ["friend@gmial.com"], risky)  # warn: delivered
        smtp.sendmail(SENDER, [PARTNER], sent["two"])
    assert refused == {}
    got = delivered(postfix)
    assert {"one", "two"} <= set(got)
    verdicts = [line.split("verdict=")[1].split()[0] for line in milter.decisions()[before:]]
    assert verdicts == ["pass", "warn", "pass"]
    if "always" in config:
        assert got["one"]["X-Mailguard-Verdict"] == "pass"  # the edit made at the end


def test_decision_lines_are_buffered_but_out_within_seconds(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    milter.restart("[milter]\nlog_flush = false\n")
    before = len(milter.decisions())
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, [PARTNER], eml(f"From: {SENDER}\nTo: {PARTNER}\nSubject: b", BODY))
    postfix.wait_idle()
    deadline = time.monotonic() + 5  # the server flushes about once a second
    while len(milter.decisions()) == before:
        assert time.monotonic() < deadline, milter.log()
        time.sleep(0.05)
    line = milter.decisions()[-1]
    assert "action=accept" in line and "@" not in line
    # The time stamp and layout are those of the logging module's format.
    assert line[4] == "-" and line[19:24].startswith(",") and " mailguard-milter[" in line
