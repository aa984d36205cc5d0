"""The history rules in the milter, end to end: a real Postfix on loopback, the milter as an
admin runs it with ``[history]``, a sink behind. The sender's SMTP reply and the log line
carry no address; ``learn = true`` records accepted mail; a store that goes bad mid-flow
leaves the milter deciding without the history rules, and saying so."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator

import pytest

from tests.conftest import eml
from tests.support.history import learn_messages
from tests.support.milter_process import MilterProcess
from tests.support.postfix import PostfixInstance, postfix_for

SENDER = "ann@serviceco.example"
CONFIG = """
internal_domains = ["serviceco.example"]
[history]
store = "history.db"
learn = true
[rules.MG403]
min_sender_messages = 1
near_weight = 80
"""


def regular(i: int) -> str:
    return (
        f"From: {SENDER}\nTo: dave@partner.example, bob@partner.example\n"
        f"Message-ID: <r{i}@serviceco.example>\nSubject: r{i}\n\nHi\n"
    )


@pytest.fixture(scope="module")
def milter() -> Iterator[MilterProcess]:
    with MilterProcess() as process:
        learn_messages(process.dir / "history.db", [regular(i) for i in range(5)])
        process.restart(CONFIG)
        yield process


@pytest.fixture(scope="module")
def postfix(
    tmp_path_factory: pytest.TempPathFactory, milter: MilterProcess
) -> Iterator[PostfixInstance]:
    yield from postfix_for(tmp_path_factory.mktemp("postfix"), milter.spec)


def send(postfix: PostfixInstance, to: list[str], subject: str) -> None:
    raw = eml(f"From: {SENDER}\nTo: {', '.join(to)}\nSubject: {subject}")
    with postfix.smtp() as smtp:
        smtp.sendmail(SENDER, to, raw)


def delivered_headers(postfix: PostfixInstance, subject: str) -> str:
    postfix.wait_idle()
    for raw in postfix.sink_messages():
        if f"Subject: {subject}".encode() in raw:
            return raw.split(b"\r\n\r\n", 1)[0].decode()
    raise AssertionError(f"{subject!r} was not delivered")


def test_a_near_miss_is_refused_without_naming_anyone(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(postfix, ["daev@partner.example"], "typo")
    assert refused.value.smtp_code == 550
    reply = refused.value.smtp_error.decode()
    assert "@" not in reply and "did you mean" not in reply
    line = milter.decisions()[-1]
    assert "MG403" in line and "action=reject" in line and "@" not in line


def test_accepted_mail_is_learned_when_learn_is_on(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    send(postfix, ["dave@partner.example", "newbie@other.example"], "first")
    assert "X-Mailguard-Rules: MG403" in delivered_headers(postfix, "first")
    deadline = time.monotonic() + 10
    while True:  # learned in a worker thread after the reply
        send(postfix, ["dave@partner.example", "newbie@other.example"], "again")
        if "MG403" not in milter.decisions()[-1] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "MG403" not in milter.decisions()[-1]
    assert "newbie" not in milter.log()


def test_a_store_gone_bad_leaves_the_milter_deciding_and_saying_so(
    postfix: PostfixInstance, milter: MilterProcess
) -> None:
    store = milter.dir / "history.db"
    for name in ("history.db", "history.db-wal", "history.db-shm"):  # a disk gone bad
        part = store.with_name(name)
        if part.exists():
            part.write_bytes(b"\xffgarbage" * (part.stat().st_size // 8 + 1))
    send(postfix, ["daev@partner.example"], "after")  # a near miss, now unseen
    headers = delivered_headers(postfix, "after")
    assert "MG403" not in headers
    line = milter.decisions()[-1]
    assert "history=unavailable" in line and "action=accept" in line
    assert "deciding without the history rules" in milter.log()


def test_the_milter_log_names_nobody(milter: MilterProcess) -> None:
    log = milter.log()
    assert milter.decisions()  # the tests above went through it
    for who in ("dave@", "daev@", "bob@", "newbie@", SENDER, "partner.example"):
        assert who not in log


def test_a_missing_store_stops_the_milter_at_start(tmp_path) -> None:
    with pytest.raises(RuntimeError) as failed:
        MilterProcess('[history]\nstore = "nowhere.db"\n').close()
    assert "does not exist" in str(failed.value) and "Traceback" not in str(failed.value)
