"""End to end: scripts talk to ``mailguard proxy``, which relays to a real Postfix and its sink.

The 296-recipient incident under each action, the three kinds of client the issue names
(smtplib with Bcc, a raw socket, a PHPMailer-style session), recipients Postfix refuses at
RCPT and the retry after them, and bad input, with what reached the sink checked each time.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import smtplib
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailguard.approval import sign
from mailguard.approval_keys import Keyring, new_key
from mailguard.proxy.settings import ProxySettings
from mailguard.services import Services
from tests.conftest import EXAMPLES, eml
from tests.support.postfix import PostfixInstance, SinkMessage, ensure_postfix_installed
from tests.support.proxy import RunningProxy

SENDER = "ops@serviceco.example"
INCIDENT = (EXAMPLES / "01-contact-tracers-cc.eml").read_bytes()


def visible(raw: bytes) -> list[str]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    pairs = email.utils.getaddresses(msg.get_all("To", []) + msg.get_all("Cc", []))
    return [a for _, a in pairs if "@" in a]


@pytest.fixture(scope="module")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixInstance]:
    ensure_postfix_installed()
    with PostfixInstance(tmp_path_factory.mktemp("postfix")) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _fresh(postfix: PostfixInstance) -> Iterator[None]:
    yield
    postfix.wait_idle(allow_deferred=True)
    postfix.delete_queued()
    postfix.clear_sink()


def proxy_for(postfix: PostfixInstance, tmp_path: Path, **kw: object) -> RunningProxy:
    settings = replace(
        ProxySettings(relay=f"127.0.0.1:{postfix.smtp_port}", relay_security="none"), **kw
    )  # type: ignore[arg-type]
    return RunningProxy(settings, journal=tmp_path / "journal.sqlite")


def sink(postfix: PostfixInstance) -> list[SinkMessage]:
    postfix.wait_idle()
    return postfix.sink_deliveries()


def header_block(data: bytes) -> bytes:
    return data.split(b"\n\n", 1)[0]


def body_of(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]


def send(proxy: RunningProxy, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", proxy.port) as client:
        return client.sendmail(SENDER, rcpts, raw)


def rcpt_of(delivery: SinkMessage) -> list[str]:
    return [r.split()[0].strip("<>") for r in delivery.rcpt_to]


# ------------------------------------------------------------------ the 296 example


def test_reject_refuses_the_incident_and_nothing_reaches_the_sink(postfix, tmp_path):
    rcpts = visible(INCIDENT)
    assert len(rcpts) == 296
    with proxy_for(postfix, tmp_path) as proxy, pytest.raises(smtplib.SMTPDataError) as refused:
        send(proxy, rcpts, INCIDENT)
    assert refused.value.smtp_code == 550
    reply = refused.value.smtp_error.decode()
    # The milter's wording, from the same function.
    assert reply.startswith("5.7.1 mailguard: would expose 296 external recipients in To/Cc")
    assert sink(postfix) == [] and postfix.queue_ids() == []
    (line,) = proxy.messages()
    assert "action=reject" in line and "rcpt=296" in line and "@" not in line
    assert "Subject" not in line and "welcome" not in line.lower()


def test_split_sends_296_copies_each_showing_only_its_recipient(postfix, tmp_path):
    rcpts = visible(INCIDENT)
    with proxy_for(postfix, tmp_path, on_block="split") as proxy:
        assert send(proxy, rcpts, INCIDENT) == {}
    deliveries = sink(postfix)
    assert len(deliveries) == 296
    assert sorted(r for d in deliveries for r in rcpt_of(d)) == sorted(rcpts)
    original_body = body_of(INCIDENT)
    ids = set()
    for delivery in deliveries:
        (own,) = rcpt_of(delivery)
        head = header_block(delivery.data).decode("utf-8", "replace").lower()
        others = [a for a in rcpts if a.lower() != own.lower() and a.lower() in head]
        assert others == [], f"copy for one recipient shows {len(others)} others"
        msg = email.message_from_bytes(delivery.data, policy=email.policy.compat32)
        assert msg.get_all("To") == [own] and msg.get_all("Cc") is None
        ids.add(msg["Message-ID"])
        assert body_of(delivery.data) == original_body
    assert len(ids) == 296  # a fresh Message-ID per copy
    assert "copies=296 sent=296" in proxy.messages()[0]


def test_rewrite_sends_one_message_with_no_visible_addresses(postfix, tmp_path):
    rcpts = visible(INCIDENT)
    with proxy_for(postfix, tmp_path, on_block="rewrite") as proxy:
        assert send(proxy, rcpts, INCIDENT) == {}
    deliveries = sink(postfix)
    # Postfix may hand one message to the sink in batches of recipients: one Message-ID.
    ids = {email.message_from_bytes(d.data)["Message-ID"] for d in deliveries}
    assert len(ids) == 1
    assert sorted(r for d in deliveries for r in rcpt_of(d)) == sorted(rcpts)
    head = header_block(deliveries[0].data).decode("utf-8", "replace").lower()
    assert not [a for a in rcpts if a.lower() in head]
    assert "to: undisclosed-recipients:;" in head
    assert body_of(deliveries[0].data) == body_of(INCIDENT)
    assert "action=rewrite" in proxy.messages()[0]


# ------------------------------------------------------------------ three kinds of client


def test_smtplib_send_message_with_bcc_is_judged_by_the_envelope(postfix, tmp_path):
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = SENDER
    msg["Bcc"] = ", ".join(f"member{i}@gmail.com" for i in range(40))
    msg["Subject"] = "newsletter"
    msg.set_content("Dear member")
    with proxy_for(postfix, tmp_path) as proxy, smtplib.SMTP("127.0.0.1", proxy.port) as client:
        assert client.send_message(msg) == {}  # strips Bcc, puts all 41 in the envelope
    deliveries = sink(postfix)
    assert sorted(r for d in deliveries for r in rcpt_of(d)) == sorted(
        [SENDER, *(f"member{i}@gmail.com" for i in range(40))]
    )
    assert all(b"member" not in header_block(d.data) for d in deliveries)
    assert "verdict=pass" in proxy.messages()[0] and "bcc=0 rcpt=41" in proxy.messages()[0]


class RawClient:
    """A line-at-a-time SMTP client on a plain socket: what a hand-written script does."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.reply()

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.file.readline().decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    def send(self, line: bytes) -> tuple[int, str]:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def data(self, payload: bytes) -> tuple[int, str]:
        assert self.send(b"DATA")[0] == 354
        stuffed = b"\r\n".join(
            b"." + x if x.startswith(b".") else x for x in payload.split(b"\r\n")
        )
        self.sock.sendall(stuffed.removesuffix(b"\r\n") + b"\r\n.\r\n")
        return self.reply()

    def close(self) -> None:
        self.send(b"QUIT")
        self.sock.close()


def test_a_phpmailer_style_session_without_starttls_or_auth(postfix, tmp_path):
    raw = eml(
        f"Date: Tue, 1 Dec 2026 09:00:00 +0000\nTo: partner@othercorp.example\nFrom: {SENDER}\n"
        "Subject: invoice\nMessage-ID: <abc@serviceco.example>\nX-Mailer: PHPMailer 6.9.1\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii",
        "Your invoice.\r\n.leading dot line",
    )
    with proxy_for(postfix, tmp_path) as proxy:
        client = RawClient(proxy.port)
        code, ehlo = client.send(b"EHLO webapp.example")
        assert code == 250 and "SIZE" in ehlo and "AUTH" not in ehlo  # no users: no AUTH
        assert client.send(f"MAIL FROM:<{SENDER}>".encode())[0] == 250
        assert client.send(b"RCPT TO:<partner@othercorp.example>")[0] == 250
        code, text = client.data(raw)
        client.close()
    assert code == 250, text
    (delivery,) = sink(postfix)
    assert b"\n.leading dot line" in delivery.data  # dot-stuffing undone both ways
    assert b"X-Mailer: PHPMailer" in delivery.data


def test_bad_input_gets_clear_replies_and_no_traceback(postfix, tmp_path):
    with proxy_for(postfix, tmp_path, max_message_bytes=100_000) as proxy:
        client = RawClient(proxy.port)
        client.send(b"EHLO script.example")
        # A message with 8-bit (raw UTF-8) header text is read and relayed as it came.
        assert client.send(f"MAIL FROM:<{SENDER}> BODY=8BITMIME".encode())[0] == 250
        assert client.send(b"RCPT TO:<partner@othercorp.example>")[0] == 250
        eight = eml(f"From: Jürgen <{SENDER}>\nTo: partner@othercorp.example\nSubject: Grüße")
        assert client.data(eight)[0] == 250
        # Garbage instead of a message: refused for good, the same bytes cannot pass later.
        client.send(f"MAIL FROM:<{SENDER}>".encode())
        client.send(b"RCPT TO:<partner@othercorp.example>")
        code, text = client.data(b"\x00\x01\xff garbage without any header\r\n" * 3)
        assert code == 554 and text.startswith("5.6.0 mailguard"), text
        # Garbage after DATA: an unknown command, and the session goes on.
        assert client.send(b"\x16\x03\x01 nonsense")[0] == 500
        # Over the size limit, announced (SIZE=) and not announced.
        assert client.send(f"MAIL FROM:<{SENDER}> SIZE=200000".encode())[0] == 552
        client.send(f"MAIL FROM:<{SENDER}>".encode())
        client.send(b"RCPT TO:<partner@othercorp.example>")
        lines = "\r\n".join(["z" * 998] * 150)  # 150 KB in lines of the longest legal length
        big = eml(f"From: {SENDER}\nTo: partner@othercorp.example\nSubject: big", lines)
        assert client.data(big)[0] == 552
        client.close()
    (delivery,) = sink(postfix)
    assert "Grüße".encode() in delivery.data and "Jürgen".encode() in delivery.data
    assert all("Traceback" not in line for line in proxy.log.lines)


# ------------------------------------------------------------------ refused recipients


def test_split_with_three_of_twenty_refused_at_rcpt_then_retried(postfix, tmp_path):
    rcpts = [f"person{i}@gmail.com" for i in range(20)]
    refused = rcpts[3:6]
    access = postfix.base / "access"
    access.write_text("".join(f"{r} 450 4.2.0 mailbox busy, try later\n" for r in refused))
    postfix.configure({"smtpd_recipient_restrictions": f"check_recipient_access texthash:{access}"})
    raw = eml(f"From: {SENDER}\nTo: {', '.join(rcpts)}\nSubject: fixtures", "Saturday 10:00")
    try:
        with proxy_for(postfix, tmp_path, on_block="split", on_warn="split") as proxy:
            answer = send(proxy, rcpts, raw)
        assert sorted(answer) == sorted(refused)  # refused to the script, as Postfix said
        assert {code for code, _ in answer.values()} == {450}
        postfix.wait_idle()
        assert len(postfix.sink_files()) == 17
        access.write_text("")
        postfix.reload()  # (the proxy above has closed its upstream connection)
        # The script retries all 20, to a restarted proxy: the journal is on disk.
        with proxy_for(postfix, tmp_path, on_block="split", on_warn="split") as proxy:
            assert send(proxy, rcpts, raw) == {}
    finally:
        postfix.configure({"smtpd_recipient_restrictions": ""})
    got = Counter(r for d in sink(postfix) for r in rcpt_of(d))
    assert got == Counter(rcpts)  # each of the 20 exactly once
    assert "sent=3 earlier=17" in proxy.messages()[-1]


def test_a_sender_postfix_refuses_at_mail_is_refused_for_every_recipient(postfix, tmp_path):
    """Postfix answers the RCPT pipelined behind a refused MAIL with ``503 need MAIL``: the
    client hears the refusal of MAIL (its class decides whether the client retries)."""
    access = postfix.base / "sender_access"
    access.write_text(f"{SENDER} 550 5.7.1 Sender not allowed here\n")
    postfix.configure(
        {
            "smtpd_delay_reject": "no",
            "smtpd_sender_restrictions": f"check_sender_access texthash:{access}",
        }
    )
    rcpts = ["partner@othercorp.example", "second@othercorp.example"]
    try:
        with (
            proxy_for(postfix, tmp_path) as proxy,
            pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
        ):
            send(proxy, rcpts, eml(f"From: {SENDER}\nTo: {rcpts[0]}\nSubject: s", "hi"))
    finally:
        postfix.configure({"smtpd_delay_reject": "yes", "smtpd_sender_restrictions": ""})
    why = f"5.7.1 <{SENDER}>: Sender address rejected: Sender not allowed here".encode()
    assert refused.value.recipients == dict.fromkeys(rcpts, (550, why))  # the client's own sender
    assert sink(postfix) == []


# ------------------------------------------------------------------ approvals


def test_an_approved_mailout_passes_without_its_approval_field(postfix, tmp_path):
    key = new_key("ops-2026")
    rcpts = [f"committee{i}@gmail.com" for i in range(30)]
    raw = eml(f"From: {SENDER}\nTo: {', '.join(rcpts)}\nSubject: minutes", "Agreed to share.")
    signed = sign(raw, key, 3600, time.time())
    changed = signed.replace(b"Agreed to share.", b"Agreed to share!")
    services = Services(approval=Keyring([key]))
    with RunningProxy(
        ProxySettings(relay=f"127.0.0.1:{postfix.smtp_port}", relay_security="none"),
        journal=tmp_path / "j", services=services,
    ) as proxy:  # fmt: skip
        assert send(proxy, rcpts, signed) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(proxy, rcpts, changed)
    assert refused.value.smtp_code == 550
    assert "body changed since approval" in refused.value.smtp_error.decode()
    ids = {email.message_from_bytes(d.data)["Message-ID"] for d in sink(postfix)}
    assert len(ids) == 1
    delivery = sink(postfix)[0]
    assert b"X-Mailguard-Approval" not in delivery.data
    assert body_of(delivery.data) == body_of(raw)
    assert "approved=ops-2026" in proxy.messages()[0] and "action=accept" in proxy.messages()[0]


def test_accept_adds_the_verdict_headers_and_drops_forged_ones(postfix, tmp_path):
    rcpts = [f"player{i}@gmail.com" for i in range(20)]  # a warn, accepted by default
    raw = eml(
        f"From: {SENDER}\nTo: {', '.join(rcpts)}\nX-Mailguard-Verdict: pass\nSubject: fixtures",
        "Saturday 10:00",
    )
    with proxy_for(postfix, tmp_path) as proxy:
        assert send(proxy, rcpts, raw) == {}
    deliveries = sink(postfix)
    msg = email.message_from_bytes(deliveries[0].data)
    assert msg.get_all("X-Mailguard-Verdict") == ["warn"]
    assert msg["X-Mailguard-Rules"].startswith("MG101")
    assert body_of(deliveries[0].data) == body_of(raw)
    assert "verdict=warn" in proxy.messages()[0] and "action=accept" in proxy.messages()[0]
