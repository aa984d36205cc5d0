"""End to end: ``on_block = "rewrite"`` behind a real Postfix that relays to smtp-sink.

What the issue asks to see: the 296-recipient welcome mail goes out once, to all 296
envelope recipients, with none of their addresses in the header block and the body as
sent; several To/Cc/Resent-Cc fields all go (Postfix's own header numbering applies the
deletes); a message no header edit can cure is refused per ``rewrite_fallback``.

smtp-sink stores CRLF as LF, so "byte-identical" compares the body with that one
translation; nothing else may differ.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, eml
from tests.support import custom_rule
from tests.support.milter_process import MilterProcess
from tests.support.postfix import PostfixInstance, SinkMessage, ensure_postfix_installed

REWRITE = '[milter]\non_block = "rewrite"\n'
SENDER = "hr@serviceco.example"


@pytest.fixture(scope="module")
def milter() -> Iterator[MilterProcess]:
    with MilterProcess(REWRITE) as process:
        yield process


@pytest.fixture(scope="module")
def postfix(
    tmp_path_factory: pytest.TempPathFactory, milter: MilterProcess
) -> Iterator[PostfixInstance]:
    ensure_postfix_installed()
    # One delivery for all recipients (Postfix's default splits at 50), so "exactly one
    # message to all 296" is what the sink shows.
    main_cf = {"default_destination_recipient_limit": "1000"}
    with PostfixInstance(
        tmp_path_factory.mktemp("postfix"), milter=milter.spec, main_cf=main_cf
    ) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _fresh(postfix: PostfixInstance, milter: MilterProcess) -> Iterator[None]:
    yield
    config = (milter.dir / "mailguard.toml").read_text(encoding="utf-8")
    if milter.proc is None or milter.proc.poll() is not None or config != REWRITE:
        milter.restart(REWRITE)
    postfix.delete_queued()
    postfix.clear_sink()


def envelope_of(raw: bytes) -> list[str]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    fields = [v for n in ("To", "Cc", "Resent-To", "Resent-Cc") for v in msg.get_all(n, [])]
    return [a for _, a in email.utils.getaddresses(fields) if "@" in a]


def only_delivery(postfix: PostfixInstance) -> SinkMessage:
    postfix.wait_idle()
    (delivery,) = postfix.sink_deliveries()
    return delivery


def split(data: bytes) -> tuple[bytes, bytes]:
    head, _, body = data.partition(b"\n\n")
    return head + b"\n", body


def test_the_296_recipient_welcome_mail_goes_out_once_with_nobody_visible(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    raw = (EXAMPLES / "01-contact-tracers-cc.eml").read_bytes()
    rcpts = envelope_of(raw)
    assert len(set(rcpts)) == 296
    with postfix.smtp() as smtp:
        assert smtp.sendmail("ops@serviceco.example", rcpts, raw) == {}
    delivery = only_delivery(postfix)
    assert sorted(r.split()[0].strip("<>") for r in delivery.rcpt_to) == sorted(rcpts)
    head, body = split(delivery.data)
    assert not [a for a in rcpts if a.encode() in head]
    assert b"\nTo: undisclosed-recipients:;\n" in head
    assert b"\nCc:" not in head
    assert b"\nX-Mailguard-Action: rewritten; visible=296->0; removed=To:1,Cc:1\n" in head
    assert body == raw.partition(b"\r\n\r\n")[2].replace(b"\r\n", b"\n")
    (line,) = milter.decisions()[-1:]
    assert "action=rewrite would=reject visible_before=296 visible_after=0" in line
    assert "@" not in line


def test_two_to_fields_a_cc_and_a_resent_cc_are_all_removed(postfix: PostfixInstance) -> None:
    people = [f"person{i}@gmail.com" for i in range(60)]
    raw = eml(
        f"From: {SENDER}\nTo: {', '.join(people[:20])}\nSubject: several fields\n"
        f"Cc: {', '.join(people[20:40])}\nTO: {', '.join(people[40:50])}\n"
        f"Resent-Cc: {', '.join(people[50:])}\nX-Mailguard-Action: forged",
        "Body stays.",
    )
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, people, raw)
    delivery = only_delivery(postfix)
    assert len(delivery.rcpt_to) == 60
    msg = email.message_from_bytes(delivery.data, policy=email.policy.compat32)
    assert msg.get_all("To") == ["undisclosed-recipients:;"]
    for name in ("Cc", "Resent-Cc", "Resent-To", "Bcc"):
        assert msg.get_all(name) is None, name
    assert msg.get_all("X-Mailguard-Action") == [
        "rewritten; visible=60->0; removed=To:2,Cc:1,Resent-Cc:1"
    ]
    assert b"@gmail.com" not in split(delivery.data)[0]
    assert split(delivery.data)[1] == b"Body stays.\n"


def test_a_finding_no_header_edit_cures_is_refused_per_fallback(
    postfix: PostfixInstance, milter: MilterProcess, tmp_path: Path
) -> None:
    rules = custom_rule.write_rule(tmp_path / "rules")
    milter.restart(f'rule_paths = ["{rules}"]\n' + REWRITE)
    people = [f"p{i}@gmail.com" for i in range(60)]
    raw = custom_rule.payslip_message(", ".join(people))
    with postfix.smtp() as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail("hr@acme.example", people, raw)
    assert refused.value.smtp_code == 550
    assert postfix.sink_files() == []
    (line,) = milter.decisions()[-1:]
    assert "action=reject" in line and f"rewrite=fallback:{custom_rule.CODE}" in line

    milter.restart(f'rule_paths = ["{rules}"]\n' + REWRITE + 'rewrite_fallback = "tempfail"\n')
    with postfix.smtp() as smtp, pytest.raises(smtplib.SMTPDataError) as deferred:
        smtp.sendmail("hr@acme.example", people, raw)
    assert deferred.value.smtp_code == 451


def test_monitor_mode_logs_would_rewrite_and_delivers_unchanged(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    milter.restart('[milter]\nmode = "monitor"\non_block = "rewrite"\n')
    people = [f"person{i}@gmail.com" for i in range(40)]
    raw = eml(f"From: {SENDER}\nTo: {', '.join(people)}\nSubject: monitored", "Hi")
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, people, raw)
    msg = email.message_from_bytes(only_delivery(postfix).data, policy=email.policy.compat32)
    assert msg["To"] == ", ".join(people)
    assert msg["X-Mailguard-Action"] == "monitor; enforce mode would rewrite"
    (line,) = milter.decisions()[-1:]
    assert "action=accept would=rewrite visible_before=40 visible_after=0" in line


def test_obsolete_field_syntax_is_removed_too(postfix: PostfixInstance) -> None:
    """``To :`` and ``CC<tab>:`` (RFC 5322 obs-syntax) are the same fields to Postfix, which
    names them ``To`` and ``CC`` to the milter: the deletes must reach them as well."""
    people = [f"person{i}@gmail.com" for i in range(60)]
    raw = eml(
        f"From: {SENDER}\nTo : {', '.join(people[:30])}\nCC\t:{', '.join(people[30:])}\n"
        "Subject: obsolete syntax",
        "B",
    )
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, people, raw)
    head, _ = split(only_delivery(postfix).data)
    assert b"@gmail.com" not in head
    assert b"\nTo: undisclosed-recipients:;\nX-Mailguard-Action: rewritten; " in head


def test_sendmail_t_keeps_every_recipient_the_headers_named(postfix: PostfixInstance) -> None:
    """``sendmail -t`` takes the envelope from To/Cc: Postfix reads them before any milter
    runs, so a rewrite that deletes those fields must not lose one recipient."""
    people = [f"person{i}@gmail.com" for i in range(40)]
    raw = eml(f"From: {SENDER}\nTo: {', '.join(people[:20])}\nCc: {', '.join(people[20:])}\n"
              "Subject: via sendmail -t", "From cron.")  # fmt: skip
    subprocess.run(["/usr/sbin/sendmail", "-C", str(postfix.etc), "-f", SENDER, "-t"],
                   input=raw, check=True, timeout=30)  # fmt: skip
    delivery = only_delivery(postfix)
    assert sorted(r.split()[0].strip("<>") for r in delivery.rcpt_to) == sorted(people)
    head, _ = split(delivery.data)
    assert b"@gmail.com" not in head and b"\nTo: undisclosed-recipients:;\n" in head


def test_milter_header_checks_see_the_fields_the_rewrite_adds(postfix: PostfixInstance) -> None:
    """The README's caveat, shown: Postfix applies milter_header_checks to the added fields.
    IGNORE on the new To drops it (the message still goes out, To-less, nobody visible);
    REJECT on X-Mailguard-Action refuses the message."""
    table = postfix.etc / "milter_header_checks"
    people = [f"person{i}@gmail.com" for i in range(40)]
    raw = eml(f"From: {SENDER}\nTo: {', '.join(people)}\nSubject: checked", "B")
    try:
        table.write_text("/^To: undisclosed-recipients:;/ IGNORE\n")
        postfix.configure({"milter_header_checks": f"regexp:{table}"})
        with postfix.smtp() as smtp:
            smtp.sendmail(SENDER, people, raw)
        head, _ = split(only_delivery(postfix).data)
        assert b"\nTo:" not in head and b"@gmail.com" not in head
        assert b"\nX-Mailguard-Action: rewritten; " in head

        postfix.clear_sink()
        table.write_text("/^X-Mailguard-Action: rewritten/ REJECT held back by policy\n")
        postfix.configure({"milter_header_checks": f"regexp:{table}"})
        with postfix.smtp() as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(SENDER, people, raw)
        assert refused.value.smtp_code == 550 and b"held back by policy" in refused.value.smtp_error
        postfix.wait_idle()
        assert postfix.sink_files() == []
    finally:
        postfix.configure({"milter_header_checks": ""})
