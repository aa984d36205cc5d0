"""Attachments through the milter: a real Postfix refuses the patient list and delivers the
price list, and a message with files is judged on a worker, never on the event loop."""

from __future__ import annotations

import binascii
import smtplib
import threading
from collections.abc import Iterator

import pytest

from mailguard.config import Config
from mailguard.milter import protocol as p
from mailguard.milter.server import ListenSpec, MilterServer
from mailguard.milter.settings import MilterSettings
from tests.support import attachments as fx
from tests.support.milter_process import MilterProcess
from tests.support.postfix import PostfixInstance, ensure_postfix_installed
from tests.test_milter_server import Running

SENDER = "office@clinic.example"


def headers_and_body(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = [line.split(":", 1) for line in head.decode().split("\r\n")]
    return [(name, value) for name, value in fields], body


def test_messages_with_files_are_judged_on_a_worker_small_plain_ones_inline() -> None:
    # Decided with the body (not at end of headers), so both messages reach the judge.
    server = MilterServer(Config(), ListenSpec.parse("inet:127.0.0.1:0"),
                          settings=MilterSettings(decide_at_headers=False))  # fmt: skip
    where: list[str] = []
    judge = server.judge

    def recording(*args: object) -> object:
        where.append(threading.current_thread().name)
        return judge(*args)  # type: ignore[arg-type]

    server.judge = recording  # type: ignore[method-assign]
    running = Running(server)
    try:
        c = running.client()
        patients = fx.message([("p.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(250)))])
        fields, body = headers_and_body(patients)
        frames = c.message(fields, body, mail_from=f"<{SENDER}>")
        assert frames[-1][0] == p.REPLYCODE and frames[-1][1].startswith(b"550 5.7.1")
        c.send(p.ABORT)
        plain = [("From", " " + SENDER), ("To", " colleague@clinic.example")]
        assert c.message(plain, mail_from=f"<{SENDER}>") == [(p.CONTINUE, b"")]
        c.close()
    finally:
        running.shutdown()
    assert where[0].startswith("mailguard-decide")
    assert not where[1].startswith("mailguard-decide")


@pytest.fixture(scope="module")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixInstance]:
    ensure_postfix_installed()
    with (
        MilterProcess() as milter,
        PostfixInstance(tmp_path_factory.mktemp("postfix"), milter=milter.spec) as instance,
    ):
        yield instance


def test_postfix_refuses_the_patient_list_and_delivers_the_price_list(
    postfix: PostfixInstance,
) -> None:
    patients = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(250)))],
                          sender=SENDER, subject="patients")  # fmt: skip
    with postfix.smtp() as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(SENDER, ["someone@partner.example"], patients)
    assert refused.value.smtp_code == 550
    reply = refused.value.smtp_error.decode()
    assert "attaches a file listing people's personal data" in reply and "MG601" in reply
    assert "@" not in reply
    prices = fx.message([("prices.csv", "text/csv", fx.price_list())], sender=SENDER,
                        subject="prices")  # fmt: skip
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, ["buyer@customer.example"], prices)
    postfix.wait_idle()
    assert [d for d in postfix.sink_deliveries() if b"Subject: prices" in d.data]
    assert not [d for d in postfix.sink_deliveries() if b"Subject: patients" in d.data]


def uuencoded(name: str, data: bytes) -> bytes:
    """``data`` as ``uuencode`` writes it (45 bytes a line), what ``uuencode f f | mail``
    puts in the text of a message: no MIME header announces it."""
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    return b"begin 644 %b\n%b`\nend\n" % (name.encode(), b"".join(lines))


def test_a_uuencoded_patient_list_in_a_plain_text_message_is_refused(
    postfix: PostfixInstance,
) -> None:
    """A single text part, no MIME at all: the milter must read the body, although the
    header block alone (one recipient, nothing else) would settle a plain message."""
    csv = fx.csv_bytes(fx.patient_rows(250))
    message = (
        f"From: {SENDER}\r\nTo: someone@partner.example\r\nSubject: export\r\n\r\n"
        "The export you asked for.\r\n\r\n"
    ).encode() + uuencoded("patients.csv", csv).replace(b"\n", b"\r\n")
    with postfix.smtp() as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(SENDER, ["someone@partner.example"], message)
    assert refused.value.smtp_code == 550
    assert "MG601" in refused.value.smtp_error.decode()
