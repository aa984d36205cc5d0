"""The Postfix harness itself, with no mailguard milter involved.

Milter end-to-end tests are only as trustworthy as the MTA around them: these prove that mail
really flows through the private Postfix to the sink, that a milter setting really changes what
SMTP clients see, and that switching it at run time takes effect. They fail (never skip) when
Postfix cannot be installed, so a green run always means Postfix was exercised.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import uuid
from pathlib import Path

import pytest

from tests.support.postfix import (
    PostfixInstance,
    ensure_postfix_installed,
    free_ports,
    smtp_session,
)

DEAD_MILTER = "unix:/nonexistent/mailguard-milter.sock"


@pytest.fixture(scope="module")
def postfix(tmp_path_factory):
    ensure_postfix_installed()
    with PostfixInstance(tmp_path_factory.mktemp("postfix")) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _clean_instance(postfix):
    """Each test starts from: no milter, empty queues, empty sink."""
    yield
    if postfix.milter is not None:
        postfix.set_milter(None)
    postfix.delete_queued()
    postfix.clear_sink()


def message(marker: str, sender: str = "alice@example.test") -> bytes:
    return (
        f"From: {sender}\r\n"
        "To: bob@example.test\r\n"
        f"Subject: harness check {marker}\r\n"
        "\r\n"
        f"body marker {marker}\r\n"
        ".a line that smtplib and Postfix must dot-stuff\r\n"
    ).encode()


def send(instance: PostfixInstance, marker: str, sender: str = "alice@example.test") -> None:
    with smtp_session(instance.smtp_port) as smtp:
        smtp.sendmail(sender, ["bob@example.test", "carol@example.test"], message(marker, sender))


def processes_of(base: Path) -> list[str]:
    """Processes whose command line or environment names the instance directory.

    smtp-sink has the sink dir on its command line; Postfix daemons carry MAIL_CONFIG.
    Zombies are ignored (this machine's init reaps orphans late).
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                continue
            text = proc.joinpath("cmdline").read_bytes() + proc.joinpath("environ").read_bytes()
        except OSError:
            continue
        if str(base).encode() in text:
            command = text.split(b"\0")[0].decode(errors="replace")
            found.append(f"{proc.name}: {command}")
    return found


def delivered_with(instance: PostfixInstance, marker: str) -> list[bytes]:
    return [m for m in instance.sink_messages() if marker.encode() in m]


def test_message_reaches_sink_intact(postfix):
    marker = uuid.uuid4().hex
    send(postfix, marker)
    postfix.wait_idle(10)

    [delivery] = [d for d in postfix.sink_deliveries() if marker.encode() in d.data]
    assert delivery.mail_from == "<alice@example.test>"
    assert [r.split()[0] for r in delivery.rcpt_to] == [
        "<bob@example.test>",
        "<carol@example.test>",
    ]
    parsed = email.message_from_bytes(delivery.data, policy=email.policy.default)
    assert parsed["Subject"] == f"harness check {marker}"
    assert parsed["To"] == "bob@example.test"
    assert "(Postfix)" in parsed["Received"]  # relayed by our Postfix, not written by us
    body = parsed.get_content()
    assert f"body marker {marker}\n" in body
    assert body.endswith("\n.a line that smtplib and Postfix must dot-stuff\n")
    assert postfix.queue_counts() == dict.fromkeys(postfix.queue_counts(), 0)


def test_dead_milter_tempfails_then_mail_flows_again(postfix):
    postfix.set_milter(DEAD_MILTER, "tempfail")
    mark = postfix.log_mark()
    blocked = uuid.uuid4().hex
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(postfix, blocked)
    # Postfix gives up on the milter at connect time and, with smtpd_delay_reject, answers
    # MAIL FROM (not end of DATA) with the tempfail reply.
    assert refused.value.smtp_code == 451
    assert refused.value.smtp_error == b"4.7.1 Service unavailable - try again later"
    postfix.wait_for_log(r"milter-reject: MAIL from .*451 4\.7\.1", since=mark)
    postfix.wait_idle(10)
    assert delivered_with(postfix, blocked) == []
    assert sum(postfix.queue_counts().values()) == 0

    postfix.set_milter(None)
    flowing = uuid.uuid4().hex
    send(postfix, flowing)
    postfix.wait_idle(10)
    assert len(delivered_with(postfix, flowing)) == 1


def test_dead_milter_with_accept_fails_open(postfix):
    postfix.set_milter(DEAD_MILTER, "accept")
    marker = uuid.uuid4().hex
    send(postfix, marker)
    postfix.wait_idle(10)
    assert len(delivered_with(postfix, marker)) == 1


def test_hold_queue_is_visible(postfix):
    # HOLD from an access map puts mail where a milter quarantine would.
    postfix.configure(
        {"smtpd_sender_restrictions": "check_sender_access inline:{hold@x.test=HOLD}"}
    )
    try:
        marker = uuid.uuid4().hex
        send(postfix, marker, sender="hold@x.test")
        postfix.wait_idle(10)  # held mail does not count as in flight
        assert postfix.queue_counts()["hold"] == 1
        [queue_id] = postfix.hold_queue_ids()
        # The HOLD is logged before a queue ID exists ("NOQUEUE: hold: RCPT from ...").
        postfix.wait_for_log(r"NOQUEUE: hold: RCPT from .*<hold@x\.test>")
        postfix.wait_for_log(rf"{queue_id}: client=")
        assert delivered_with(postfix, marker) == []
    finally:
        postfix.configure({"smtpd_sender_restrictions": ""})


def test_deferred_mail_is_counted_separately(postfix):
    closed_port = free_ports()[0]
    postfix.configure({"relayhost": f"[127.0.0.1]:{closed_port}"})
    try:
        send(postfix, uuid.uuid4().hex)
        postfix.wait_idle(10, allow_deferred=True)
        assert postfix.queue_counts()["deferred"] == 1
        with pytest.raises(TimeoutError, match="deferred"):
            postfix.wait_idle(0.2)
    finally:
        postfix.delete_queued()
        postfix.configure({"relayhost": f"[127.0.0.1]:{postfix.sink_port}"})


def test_second_instance_runs_alongside_and_cleans_up(postfix, tmp_path):
    with PostfixInstance(tmp_path) as other:
        assert other.smtp_port != postfix.smtp_port
        assert other.base != postfix.base
        marker = uuid.uuid4().hex
        send(other, marker)
        other.wait_idle(10)
        assert len(delivered_with(other, marker)) == 1
        assert delivered_with(postfix, marker) == []
        base = other.base
        assert processes_of(base)
    assert processes_of(base) == []
    assert not base.exists()
    assert (tmp_path / f"{base.name}.maillog").exists()  # kept for post-mortems

    marker = uuid.uuid4().hex  # the first instance is unaffected
    send(postfix, marker)
    postfix.wait_idle(10)
    assert len(delivered_with(postfix, marker)) == 1


def test_failed_start_reports_the_reason_and_leaves_nothing_behind(tmp_path):
    broken = PostfixInstance(tmp_path, main_cf={"mail_owner": "no-such-user"})
    with pytest.raises(RuntimeError, match="mail_owner: unknown user name"), broken:
        pytest.fail("started with a broken main.cf")
    assert broken.base.name.startswith("mailguard-postfix-")
    assert not broken.base.exists()
    assert processes_of(broken.base) == []
