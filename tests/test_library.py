"""The Python API as a script author uses it."""

from __future__ import annotations

import email
import email.policy
import logging
from email.message import EmailMessage

import pytest

import mailguard
from tests.conftest import eml
from tests.support.faults import exploding_limits


def test_check_accepts_an_email_message_object():
    msg = EmailMessage()
    msg["From"] = "Club <club@oakfield.example>"
    msg["To"] = ", ".join(f"member{i}@gmail.com" for i in range(12))
    msg.set_content("Fixtures for Saturday")
    report = mailguard.check(msg)
    assert report.recipients["visible"] == 12
    assert report.verdict == "warn"


def test_check_accepts_a_compat32_message():
    raw = eml("From: a@x.example\nTo: b@y.example, c@z.example")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert mailguard.check(msg).recipients["visible"] == 2


def test_engine_reuse_and_report_fields():
    engine = mailguard.Engine(mailguard.Config(internal_domains=("acme.example",)))
    report = engine.check(
        eml(
            "From: a@acme.example\nTo: b@acme.example, c@sub.acme.example\n"
            "Message-ID: <1@acme.example>"
        ),
        source="memo",
    )
    assert report.source == "memo"
    assert report.message_id == "<1@acme.example>"
    assert report.recipients["visible_internal"] == 2
    assert report.verdict == "pass" and report.findings == []


def test_bad_input_never_raises():
    for data in (b"", b"\x00\x01\x02", b"\r\n\r\nbody only", b"From nobody\n", b"   \r\n"):
        report = mailguard.check(data)
        assert report.verdict == "error", data
        assert report.findings[0].code == "MG001"
    # Odd but readable: a lone surrogate and raw 8-bit bytes are judged, not rejected.
    for data in ("Subject: \udcff\nTo: a@b.example\n\nx", b"To: \xff\xfe <a@b.example>\n\nx"):
        report = mailguard.check(data)
        assert report.verdict == "pass"
        assert report.recipients["visible"] == 1


def test_wrong_type_is_a_programming_error():
    with pytest.raises(TypeError):
        mailguard.check(12345)  # type: ignore[arg-type]


def test_invalid_mode_is_a_programming_error():
    with pytest.raises(ValueError):
        mailguard.check(eml("From: a@b.example\nTo: c@d.example"), mode="later")  # type: ignore[arg-type]


def test_internal_error_becomes_error_report_and_logs_no_data(monkeypatch, caplog):
    secret_body = "Diagnosis for patient 4711"

    def broken(ctx, settings):
        raise RuntimeError(f"boom {ctx.message.body_text.text} {list(ctx.recipients.visible)}")

    from mailguard.rules import load_rules

    rule = next(r for r in load_rules() if r.code == "MG104")
    monkeypatch.setattr(
        type(rule), "check", property(lambda self: broken if self.code == "MG104" else None)
    )
    caplog.set_level(logging.DEBUG, logger="mailguard")
    engine = mailguard.Engine()
    report = engine.check(eml("From: a@b.example\nTo: secret.person@gmail.com", secret_body))
    assert report.verdict == "error"
    assert "internal error (RuntimeError)" in report.findings[0].message
    logged = caplog.text
    assert "RuntimeError" in logged
    assert "secret.person" not in logged and "4711" not in logged
    assert "secret.person" not in report.findings[0].message


def test_sender_at_personal_provider_is_not_internal_with_everyone_there():
    data = eml("From: Secretary <club.secretary@gmail.com>\nTo: "
               + ", ".join(f"m{i}@gmail.com" for i in range(12)))  # fmt: skip
    report = mailguard.check(data)
    assert report.recipients["visible_internal"] == 0
    assert report.recipients["personal"] == 12
    assert report.verdict == "warn"
    assert "personal mailbox" in report.recipients["internal_basis"]


def test_sender_own_address_in_to_is_internal():
    data = eml("From: Me <me@gmail.com>\nTo: me@gmail.com\nBcc: a@gmail.com")
    report = mailguard.check(data, mode="archived")
    assert report.recipients["visible_internal"] == 1
    assert report.verdict == "pass"


def test_score_is_sum_of_weights_capped():
    report = mailguard.check(
        eml(
            "From: HIV Support <info@charity.example>\nTo: "
            + ", ".join(f"p{i}@gmail.com" for i in range(20))
        )
    )
    assert report.score == min(100, sum(f.weight for f in report.findings))
    assert report.score == 100


def test_outlook_msg_file_gets_a_clear_error():
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512
    report = mailguard.check(data)
    assert report.verdict == "error"
    assert "Outlook .msg" in report.findings[0].message
    assert "export it as .eml" in report.findings[0].message


def test_internal_error_while_parsing_becomes_error_report():
    limits = exploding_limits(RecursionError("maximum recursion depth exceeded"))
    engine = mailguard.Engine(mailguard.Config(limits=limits))
    report = engine.check(eml("From: a@b.example\nTo: c@d.example"))
    assert report.verdict == "error"
    assert "internal error (RecursionError)" in report.findings[0].message


def test_bare_cr_line_ends_are_read():
    data = eml("From: a@club.example\nTo: " + ", ".join(f"m{i}@gmail.com" for i in range(12)))
    report = mailguard.check(data.replace(b"\r\n", b"\r"))
    assert report.recipients["visible"] == 12
    assert report.verdict == "warn"
