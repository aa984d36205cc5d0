"""Signed approvals end to end: a real Postfix calls ``mailguard milter`` with
``[approval] keys`` and relays what it accepts to a sink.

An approved 40-partner mailout is delivered exactly as sent, less the approval field; the
same message with a recipient added, its body changed, its approval expired or signed by a
key the gate does not know is refused, and the SMTP reply says which. The key is never in
the milter's log, Postfix's log or a reply.
"""

from __future__ import annotations

import base64
import signal
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailguard.approval import HEADER, sign, strip
from mailguard.approval_keys import Key, new_key, write_key
from tests.support.milter_process import MilterProcess, with_log_flush
from tests.support.postfix import PostfixInstance, postfix_for

SENDER = "partners@acme.example"
PARTNERS = [f"contact{i}@partner{i}.example" for i in range(40)]


def mailout(subject: str, partners: list[str] = PARTNERS) -> bytes:
    to = ",\r\n ".join(partners)  # folded: Postfix would fold a line over 998 octets itself
    return (
        f"From: Partnerships <{SENDER}>\r\nTo: {to}\r\n"
        f"Subject: {subject}\r\nDate: Tue, 01 Dec 2026 01:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@acme.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Dear partners,\r\n\r\nplease find our joint statement below.\r\n\r\n"
        ".leading dot survives dot-stuffing\r\n-- \r\nAcme Partnerships\r\n"
    ).encode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("current", "retired", "next"):
        key = new_key(f"ops-{name}")
        write_key(folder / f"{name}.key", key)
        made[name] = Key(key.id, key.secret, folder / f"{name}.key")
    return made


def config_for(*keys: Key) -> str:
    paths = ", ".join(f'"{k.path}"' for k in keys)
    return f"[approval]\nkeys = [{paths}]\n"


@pytest.fixture(scope="module")
def milter(keys: dict[str, Key]) -> Iterator[MilterProcess]:
    with MilterProcess(config_for(keys["current"])) as process:
        yield process


@pytest.fixture(scope="module")
def postfix(
    tmp_path_factory: pytest.TempPathFactory, milter: MilterProcess
) -> Iterator[PostfixInstance]:
    yield from postfix_for(tmp_path_factory.mktemp("postfix"), milter.spec)


@pytest.fixture(autouse=True)
def _fresh(postfix: PostfixInstance) -> Iterator[None]:
    yield
    postfix.delete_queued()
    postfix.clear_sink()


def send(postfix: PostfixInstance, raw: bytes, rcpts: list[str] = PARTNERS) -> None:
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, rcpts, raw)


def refused(postfix: PostfixInstance, raw: bytes, rcpts: list[str] = PARTNERS) -> str:
    with pytest.raises(smtplib.SMTPDataError) as refusal:
        send(postfix, raw, rcpts)
    assert refusal.value.smtp_code == 550
    postfix.wait_idle()
    assert postfix.sink_files() == []
    return refusal.value.smtp_error.decode()


def key_forms(key: Key) -> list[str]:
    s = key.secret
    return [s.hex(), base64.b64encode(s).decode(), base64.urlsafe_b64encode(s).decode()[:40]]


def test_an_approved_mailout_is_delivered_unchanged_but_for_the_approval_field(
    postfix: PostfixInstance, milter: MilterProcess, keys: dict[str, Key]
) -> None:
    raw = mailout("approved statement")
    assert "would expose 40 external" in refused(postfix, raw)  # without the approval
    signed = sign(raw, keys["current"], 3600, time.time())
    send(postfix, signed)
    postfix.wait_idle()
    (delivery,) = postfix.sink_deliveries()
    assert sorted(r.split(">")[0].lstrip("<") for r in delivery.rcpt_to) == sorted(PARTNERS)
    data = delivery.data
    assert HEADER.encode() not in data
    header_block, body = data.split(b"\n\n", 1)
    # Postfix adds its Received line on top; every other byte is what was sent.
    ours = [line for line in header_block.split(b"\n") if line]
    received = [i for i, line in enumerate(ours) if line.startswith(b"Received:")]
    sent = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)
    kept = b"\n".join(ours[received[-1] + 3 :] if received else ours)
    assert kept.endswith(sent[0]), data
    assert body == sent[1]
    line = milter.decisions()[-1]
    assert "action=accept approved=ops-current" in line and "verdict=pass" in line


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("recipient added", "recipients changed since approval"),
        ("body changed", "body changed since approval"),
        ("expired", "approval expired"),
        ("unknown key", "unknown key 'ops-retired'"),
        ("subject changed", "Subject changed since approval"),
    ],
)
def test_a_changed_or_stale_approval_is_refused_with_its_reason(
    postfix: PostfixInstance,
    milter: MilterProcess,
    keys: dict[str, Key],
    case: str,
    reason: str,
) -> None:
    raw = mailout(f"statement {case}")
    now = time.time()
    rcpts = PARTNERS
    if case == "recipient added":
        signed = sign(raw, keys["current"], 3600, now)
        signed = signed.replace(b"To: ", b"To: newcomer@partner99.example, ", 1)
        rcpts = [*PARTNERS, "newcomer@partner99.example"]
    elif case == "body changed":
        signed = sign(raw, keys["current"], 3600, now).replace(b"joint", b"revised")
    elif case == "expired":
        signed = sign(raw, keys["current"], 3600, now - 7200)
    elif case == "unknown key":
        signed = sign(raw, keys["retired"], 3600, now)
    else:
        signed = sign(raw, keys["current"], 3600, now).replace(b"Subject: ", b"Subject: Re: ")
    reply = refused(postfix, signed, rcpts)
    assert reply.startswith("5.7.1 mailguard: the signed approval is not accepted: ")
    assert reason in reply and "MG701" in reply and "@" not in reply
    line = milter.decisions()[-1]
    assert "action=reject" in line and "MG701" in line and "approved=" not in line


def test_a_reload_rotates_keys(
    postfix: PostfixInstance, milter: MilterProcess, keys: dict[str, Key]
) -> None:
    signed = sign(mailout("rotated statement"), keys["next"], 3600, time.time())
    assert "unknown key 'ops-next'" in refused(postfix, signed)
    reload(milter, config_for(keys["current"], keys["next"]), "configuration reloaded")
    send(postfix, signed)
    postfix.wait_idle()
    (delivery,) = postfix.sink_deliveries()
    assert HEADER.encode() not in delivery.data
    assert "approved=ops-next" in milter.decisions()[-1]
    # A key file others may read is refused at reload: the keys in force stay in force.
    exposed = keys["next"].path.with_name("exposed.key")  # type: ignore[union-attr]
    exposed.write_bytes(keys["next"].path.read_bytes())  # type: ignore[union-attr]
    exposed.chmod(0o644)
    failed = reload(milter, f'[approval]\nkeys = ["{exposed}"]\n', "reload failed")
    assert "has mode 0644" in failed and "chmod 600" in failed
    assert not any(form in failed for form in key_forms(keys["next"]))
    postfix.clear_sink()
    send(postfix, signed)
    assert "approved=ops-next" in milter.decisions()[-1]
    reload(milter, config_for(keys["current"]), "configuration reloaded")


def reload(milter: MilterProcess, config: str, expect: str) -> str:
    """Rewrite the milter's config, SIGHUP it, and return its log lines since."""
    (milter.dir / "mailguard.toml").write_text(with_log_flush(config))
    mark = len(milter.log())
    assert milter.proc is not None
    milter.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while expect not in milter.log()[mark:]:
        assert time.monotonic() < deadline, milter.log()[mark:]
        time.sleep(0.05)
    return milter.log()[mark:]


def test_no_key_material_in_any_log_or_reply(
    postfix: PostfixInstance, milter: MilterProcess, keys: dict[str, Key]
) -> None:
    for key in keys.values():
        send_or_refuse = sign(mailout(f"grep {key.id}"), key, 3600, time.time())
        try:
            send(postfix, send_or_refuse)
        except smtplib.SMTPDataError as exc:
            replies = exc.smtp_error.decode()
        else:
            replies = ""
        postfix.wait_idle()
        for text in (milter.log(), postfix.maillog(), replies):
            for form in key_forms(key):
                assert form not in text


def test_strip_is_what_the_milter_delivers(keys: dict[str, Key]) -> None:
    """The proxy's byte-level removal and the milter's header deletion agree."""
    raw = mailout("strip")
    assert strip(sign(raw, keys["current"], 60, time.time())) == raw
    assert Path(keys["current"].path or "").stat().st_mode & 0o077 == 0


def test_a_body_over_max_body_bytes_is_named_and_the_knob_fixes_it(
    postfix: PostfixInstance, milter: MilterProcess, keys: dict[str, Key]
) -> None:
    raw = mailout("big statement").replace(
        b"Dear partners,", b"Dear partners,\r\n" + b"An annex line of the statement.\r\n" * 50_000
    )
    signed = sign(raw, keys["current"], 3600, time.time())
    reply = refused(postfix, signed)
    assert "body changed since approval" in reply and "approved body bytes arrived" in reply
    bigger = config_for(keys["current"]) + "\n[milter]\nmax_body_bytes = 4194304\n"
    milter.restart(bigger)
    try:
        send(postfix, signed)
        postfix.wait_idle()
        assert "approved=ops-current" in milter.decisions()[-1]
    finally:
        milter.restart(config_for(keys["current"]))
