"""Every way the upstream can fail the proxy, and what the client hears (support/scripted_smtp.py).

The invariant under each: the client is never told 2xx for a message the upstream did not
accept; a temporary failure is 4xx (the client retries), a permanent one 5xx; the reply
names no address the client did not give in this session; and the proxy goes on serving.
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailguard.proxy.settings import ProxySettings
from tests.conftest import eml
from tests.support.proxy import RunningProxy
from tests.support.scripted_smtp import DROP, STALL, ScriptedUpstream
from tests.support.smtp_upstream import UpstreamServer, make_test_ca

SENDER = "ops@serviceco.example"
PARTNER = "partner@othercorp.example"
EHLO_PLAIN = "250-scripted\r\n250-PIPELINING"
"""An EHLO reply without its last line (``\\r\\n250 ...`` ends it)."""


def clean(marker: str = "clean") -> bytes:
    return eml(f"From: {SENDER}\nTo: {PARTNER}\nSubject: {marker}", "Agenda")


def proxy_to(port: int, tmp_path: Path, **kw: object) -> RunningProxy:
    settings = ProxySettings(relay=f"127.0.0.1:{port}", relay_security="none")
    return RunningProxy(replace(settings, **kw), journal=tmp_path / "j")  # type: ignore[arg-type]


def send(proxy: RunningProxy, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client:
        return client.sendmail(SENDER, rcpts, raw)


def refused_at_rcpt(proxy: RunningProxy, rcpts: list[str]) -> dict[str, tuple[int, bytes]]:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(proxy, rcpts, clean())
    return refused.value.recipients


def refused_at_data(proxy: RunningProxy) -> tuple[int, bytes]:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(proxy, [PARTNER], clean())
    error = refused.value.smtp_error
    assert isinstance(error, bytes)
    return refused.value.smtp_code, error


def no_traceback(proxy: RunningProxy) -> bool:
    return not any("Traceback" in line or "internal error" in line for line in proxy.log.lines)


# ------------------------------------------------------------------ connecting


@pytest.mark.parametrize("greeting", ["421 4.3.2 Service shutting down",
                                      "554 5.7.1 No SMTP service here", DROP])  # fmt: skip
def test_an_upstream_that_will_not_serve_us_is_a_temporary_refusal(greeting, tmp_path):
    """A 554 greeting is about the gateway's host, not the message: 4xx, as Postfix's own
    client defers it (smtp_skip_5xx_greeting); the next connection serves the retry."""
    with ScriptedUpstream({"greeting": greeting}, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        ((code, text),) = refused_at_rcpt(proxy, [PARTNER]).values()
        assert code == 451 and text.startswith(b"4.4.1 mailguard: cannot reach the upstream")
        assert send(proxy, [PARTNER], clean("retry")) == {}
        assert len(up.accepted) == 1 and no_traceback(proxy)


def test_an_upstream_that_refuses_ehlo_and_helo_is_a_temporary_refusal(tmp_path):
    script = {"EHLO": "554 5.7.1 go away", "HELO": "554 5.7.1 go away",
              "MAIL": "503 5.5.1 Error: send HELO/EHLO first"}  # fmt: skip
    with ScriptedUpstream(script) as up, proxy_to(up.port, tmp_path) as proxy:
        ((code, text),) = refused_at_rcpt(proxy, [PARTNER]).values()
    assert code == 451 and text.startswith(b"4.4.1 mailguard: cannot reach the upstream"), text
    assert not any(line.startswith(b"MAIL") for line in up.lines[0])


def test_helo_after_a_refused_ehlo_relays_without_pipelining(tmp_path):
    with (
        ScriptedUpstream({"EHLO": "502 5.5.2 no ESMTP"}) as up,
        proxy_to(up.port, tmp_path) as proxy,
    ):
        assert send(proxy, [PARTNER], clean()) == {}
    assert [a.rcpt_tos for a in up.accepted] == [[PARTNER.encode()]]
    assert [line[:4] for line in up.lines[0][:4]] == [b"EHLO", b"HELO", b"MAIL", b"RCPT"]


def test_an_upstream_that_never_greets_is_given_up_after_relay_timeout(tmp_path):
    with (
        ScriptedUpstream({"greeting": STALL}, {}) as up,
        proxy_to(up.port, tmp_path, relay_timeout=0.5) as proxy,
    ):
        started = time.monotonic()
        ((code, text),) = refused_at_rcpt(proxy, [PARTNER]).values()
        assert 0.4 < time.monotonic() - started < 5
        assert (code, text) == (451, b"4.4.1 mailguard: cannot reach the upstream (TimeoutError)")
        assert send(proxy, [PARTNER], clean("retry")) == {}


# ------------------------------------------------------------------ STARTTLS and AUTH


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


def test_an_upstream_that_requires_starttls_we_do_not_use_is_a_temporary_refusal(tls, tmp_path):
    """The upstream's 530 is about the gateway's settings, not the message: a 5xx would
    bounce every message until the administrator noticed."""
    with UpstreamServer(tls, mode="starttls") as up, proxy_to(up.port, tmp_path) as proxy:
        refused = refused_at_rcpt(proxy, [PARTNER, "second@othercorp.example"])
    assert {code for code, _ in refused.values()} == {451}
    assert all(text.startswith(b"4.7.0 mailguard: the upstream refused the gateway")
               for _, text in refused.values())  # fmt: skip
    assert up.received == [] and any("530" in line for line in proxy.log.lines)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_an_upstream_that_requires_auth_we_do_not_give_is_a_temporary_refusal(tls, tmp_path):
    with (
        UpstreamServer(tls, mode="none", user="relayuser", password="pw") as up,
        proxy_to(up.port, tmp_path) as proxy,
    ):
        ((code, text),) = refused_at_rcpt(proxy, [PARTNER]).values()
    assert code == 451 and text.startswith(b"4.7.0 mailguard: the upstream refused the gateway")
    assert up.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_refused_login_is_a_temporary_refusal_without_the_password(tls, tmp_path, monkeypatch):
    monkeypatch.setenv("MAILGUARD_RELAY_PASSWORD", "wrong-s3cret")
    with (
        UpstreamServer(tls, mode="none", user="relayuser", password="right") as up,
        proxy_to(up.port, tmp_path, relay_user="relayuser") as proxy,
    ):
        ((code, text),) = refused_at_rcpt(proxy, [PARTNER]).values()
    assert (code, text) == (451, b"4.7.0 mailguard: upstream refused our login (535)")
    assert not any("s3cret" in line for line in proxy.log.lines)


@pytest.mark.parametrize(("script", "settings", "expected"), [
    ({"EHLO": EHLO_PLAIN + "\r\n250 8BITMIME"}, {"relay_security": "starttls"},
     b"4.7.5 mailguard: the upstream offers no STARTTLS"),
    ({"EHLO": EHLO_PLAIN + "\r\n250 STARTTLS", "STARTTLS": "454 4.7.0 TLS not available"},
     {"relay_security": "starttls"}, b"4.7.5 mailguard: the upstream refused STARTTLS (454)"),
    ({"EHLO": EHLO_PLAIN + "\r\n250 8BITMIME"}, {"relay_user": "relayuser"},
     b"4.7.0 mailguard: the upstream offers no AUTH"),
    ({"EHLO": EHLO_PLAIN + "\r\n250 AUTH XOAUTH2"}, {"relay_user": "relayuser"},
     b"4.7.0 mailguard: the upstream offers no AUTH method we have"),
    ({"EHLO": EHLO_PLAIN + "\r\n250 AUTH CRAM-MD5", "AUTH": "334 not*base64"},
     {"relay_user": "relayuser"}, b"4.4.1 mailguard: cannot reach the upstream (SMTPException)"),
])  # fmt: skip
def test_an_upstream_without_the_security_we_need_is_never_used_in_clear(
    script, settings, expected, tmp_path, monkeypatch
):
    monkeypatch.setenv("MAILGUARD_RELAY_PASSWORD", "s3cret")
    with ScriptedUpstream(script) as up, proxy_to(up.port, tmp_path, **settings) as proxy:
        ((code, text),) = refused_at_rcpt(proxy, [PARTNER]).values()
    assert (code, text) == (451, expected)
    unsent = (b"MAIL", b"AUTH") if "CRAM" not in script["EHLO"] else (b"MAIL",)
    assert not any(line.startswith(unsent) for line in up.lines[0])


# ------------------------------------------------------------------ MAIL and RCPT


@pytest.mark.parametrize(("reply", "code"), [
    ("451 4.3.0 Temporary lookup failure", 451),
    ("550 5.7.1 Sender address rejected", 550),
    ("421 4.3.2 Service shutting down", 451),
    ("530 5.7.0 Authentication required", 451),  # the gateway's session, not the message
    ("538 5.7.11 Encryption required", 451),
])  # fmt: skip
def test_a_refused_mail_from_refuses_every_recipient_with_its_class(reply, code, tmp_path):
    rcpts = [PARTNER, "second@othercorp.example"]
    with ScriptedUpstream({"MAIL": reply}) as up, proxy_to(up.port, tmp_path) as proxy:
        refused = refused_at_rcpt(proxy, rcpts)
    assert up.accepted == []
    assert sorted(refused) == rcpts and {c for c, _ in refused.values()} == {code}
    assert all(text[:1] == str(code)[0].encode() and b"@" not in text
               for _, text in refused.values())  # fmt: skip
    assert no_traceback(proxy)


def test_per_recipient_refusals_map_through_and_the_rest_is_delivered(tmp_path):
    busy, unknown, fine = "busy@othercorp.example", "nobody@othercorp.example", PARTNER
    script = {f"RCPT {busy}": "450 4.2.1 Mailbox busy",
              f"RCPT {unknown}": f"550 5.1.1 <{unknown}>: Recipient address rejected"}  # fmt: skip
    with ScriptedUpstream(script) as up, proxy_to(up.port, tmp_path) as proxy:
        refused = send(proxy, [busy, unknown, fine], clean())
    assert refused == {
        busy: (450, b"4.2.1 Mailbox busy"),
        unknown: (550, f"5.1.1 <{unknown}>: Recipient address rejected".encode()),
    }
    assert [a.rcpt_tos for a in up.accepted] == [[fine.encode()]]


def test_a_421_at_rcpt_loses_nothing_and_tells_no_250(tmp_path):
    """The upstream closes after the first recipient: the rest are temporarily refused,
    and the message, accepted by the proxy's RCPT for one recipient, is refused at DATA."""
    second = "second@othercorp.example"
    script = {f"RCPT {second}": "421 4.7.0 Too many errors, closing"}
    with ScriptedUpstream(script, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client:
            client.ehlo()
            client.mail(SENDER)
            assert client.rcpt(PARTNER)[0] == 250
            code, text = client.rcpt(second)
            assert code == 451 and text.startswith(b"4.")
            assert client.rcpt("third@othercorp.example")[0] == 451
            code, text = client.data(clean())
            assert code == 451 and text.startswith(b"4.4.2 mailguard"), text
            assert client.noop()[0] == 250  # the session with the client goes on
        assert up.accepted == [] and send(proxy, [PARTNER], clean("retry")) == {}


# ------------------------------------------------------------------ DATA


@pytest.mark.parametrize(("key", "reply", "code"), [
    ("DATA", "451 4.3.0 Queue file write error", 451),
    ("DATA", "554 5.5.1 Error: no valid recipients", 554),
    ("DATA", "421 4.3.2 Shutting down", 451),
    (".", "451 4.3.0 Queue file write error", 451),
    (".", "552 5.3.4 Message too big for system", 552),
    (".", "554 5.7.1 Rejected as spam", 554),
    (".", "421 4.3.2 Shutting down", 451),
])  # fmt: skip
def test_a_refusal_at_data_or_its_end_reaches_the_client_in_its_class(key, reply, code, tmp_path):
    with ScriptedUpstream({key: reply}, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        got, text = refused_at_data(proxy)
        assert got == code and text[:1] == str(code)[0].encode(), (got, text)
        assert up.accepted == []
        assert no_traceback(proxy)


@pytest.mark.parametrize(("key", "reply"), [
    ("DATA", "250 2.0.0 Ok"),  # the message was never sent
    ("DATA", "220 hello again"),
    (".", "354 go on"),
    (".", "600 what"),
    ("RCPT", "354 what"),
    ("RCPT", "503 5.5.1 Error: need MAIL command"),  # out of step with the upstream
])  # fmt: skip
def test_a_reply_out_of_protocol_is_never_passed_on_as_success(key, reply, tmp_path):
    """Whatever the upstream answers, the client hears 2xx only for a message it took."""
    with ScriptedUpstream({key: reply}, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client:
            client.ehlo()
            client.mail(SENDER)
            code, text = client.rcpt(PARTNER)
            if key != "RCPT":
                assert code == 250
                code, text = client.data(clean())
        assert code == 451 and text.startswith(
            b"4.5.0 mailguard: upstream failed (unexpected reply "
        ), (code, text)
        assert up.accepted == []
        assert send(proxy, [PARTNER], clean("retry")) == {}  # on a new connection
        assert up.connections == 2 and no_traceback(proxy)


def test_a_reply_nobody_asked_for_keeps_the_connection_out_of_the_pool(tmp_path):
    """One reply too many leaves the connection a reply behind: reused, the next client's
    MAIL would read it as its answer (and every later command the one before)."""
    script = {".": "250 2.0.0 Ok: queued\r\n250 2.0.0 Ok: queued again"}
    with ScriptedUpstream(script, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        assert send(proxy, [PARTNER], clean("first")) == {}
        assert send(proxy, [PARTNER], clean("second")) == {}
    assert [b"first" in a.data for a in up.accepted] == [True, False]
    assert up.connections == 2 and no_traceback(proxy)


@pytest.mark.parametrize("goodbye", [DROP, "421 4.4.2 Error: timeout exceeded"])
def test_a_pooled_connection_the_upstream_has_given_up_is_opened_again_once(
    goodbye, tmp_path, caplog
):
    """Between two clients the upstream may close the pooled connection (its own idle
    timeout): the next MAIL finds out, and the proxy reconnects instead of refusing. The
    reply to the RCPT pipelined behind that MAIL is never read: asyncio must not log it as
    an exception nobody retrieved (a traceback on standard error)."""
    import gc
    import logging

    caplog.set_level(logging.ERROR, logger="asyncio")
    script = {"MAIL": ("250 2.1.0 Ok", goodbye)}
    with ScriptedUpstream(script, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        assert send(proxy, [PARTNER], clean("first")) == {}
        assert send(proxy, [PARTNER], clean("second")) == {}
        assert proxy.server is not None and proxy.server.relay.opened == 1
    assert len(up.accepted) == 2 and up.connections == 2  # (opened counts Upstream objects)
    gc.collect()
    assert "never retrieved" not in caplog.text


def test_an_upstream_that_drops_mid_data_is_a_451_and_the_next_message_goes(tmp_path):
    with ScriptedUpstream({"in-data": DROP}, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        code, text = refused_at_data(proxy)
        assert (code, text) == (451, b"4.4.2 mailguard: the upstream server closed the connection")
        assert send(proxy, [PARTNER], clean("retry")) == {}
    assert len(up.accepted) == 1 and b"retry" in up.accepted[0].data


@pytest.mark.parametrize("key", ["MAIL", "in-data", "."])
def test_a_stalled_upstream_is_a_451_and_other_clients_are_served_meanwhile(key, tmp_path):
    with (
        ScriptedUpstream({key: STALL}, {}) as up,
        proxy_to(up.port, tmp_path, relay_timeout=2.0) as proxy,
    ):
        outcome: list[object] = []

        def stalled() -> None:
            try:
                send(proxy, [PARTNER], clean("stalled"))
            except smtplib.SMTPException as exc:
                outcome.append(exc)
            outcome.append(time.monotonic())

        thread = threading.Thread(target=stalled)
        thread.start()
        from tests.support.procs import wait_until

        assert wait_until(lambda: up.connections == 1 and len(up.lines[0]) >= 3, 10)
        assert send(proxy, [PARTNER], clean("other")) == {}  # a second upstream connection
        other_done = time.monotonic()
        thread.join(20)
    error, stalled_done = outcome
    assert other_done < stalled_done  # served while the first waited
    if key == "MAIL":
        assert isinstance(error, smtplib.SMTPRecipientsRefused)
        ((code, text),) = error.recipients.values()
    else:
        assert isinstance(error, smtplib.SMTPDataError)
        code, text = error.smtp_code, error.smtp_error
    assert (code, text) == (451, b"4.4.2 mailguard: upstream failed (TimeoutError)")
    assert [b"other" in a.data for a in up.accepted] == [True]


# ------------------------------------------------------------------ the gateway itself


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[ScriptedUpstream, RunningProxy]]:
    with (
        ScriptedUpstream() as up,
        proxy_to(up.port, tmp_path, relay_connections=1, relay_timeout=0.5) as proxy,
    ):
        yield up, proxy


def test_every_upstream_connection_busy_is_451_4_4_5_then_served(held):
    up, proxy = held
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as first:
        first.ehlo()
        first.mail(SENDER)
        assert first.rcpt(PARTNER)[0] == 250  # holds the only upstream connection
        with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as second:
            second.ehlo()
            started = time.monotonic()
            code, text = second.mail(SENDER)
            assert 0.4 < time.monotonic() - started < 5
            assert (code, text) == (
                451,
                b"4.4.5 mailguard: every upstream connection is busy; try again later",
            )
            assert first.data(clean("first"))[0] == 250
            second.rset()
            assert second.sendmail(SENDER, [PARTNER], clean("second")) == {}
    assert len(up.accepted) == 2


def test_a_failing_journal_is_451_4_3_0_and_nothing_is_relayed(tmp_path):
    rcpts = [f"person{i}@gmail.com" for i in range(20)]
    bulk = eml(f"From: {SENDER}\nTo: {', '.join(rcpts)}\nSubject: bulk", "Hello all")
    with (
        ScriptedUpstream() as up,
        proxy_to(up.port, tmp_path, on_block="split", on_warn="split") as proxy,
    ):
        assert proxy.server is not None
        proxy.server.journal.close()  # its SQLite gone: the split cannot know what went
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(proxy, rcpts, bulk)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            451,
            b"4.3.0 mailguard: internal error; please try again later",
        )
        assert send(proxy, [PARTNER], clean("after")) == {}
    assert len(up.accepted) == 1
    errors = [line for line in proxy.log.lines if "internal error" in line]
    assert len(errors) == 1 and "@" not in errors[0] and "Traceback" not in errors[0]


# ------------------------------------------------------------------ the decision's refusals


def bulk_to(rcpts: list[str], subject: str = "bulk") -> bytes:
    return eml(f"From: {SENDER}\nTo: {', '.join(rcpts)}\nSubject: {subject}", "Hello all")


def test_tempfail_and_a_failed_decision_are_451_4_7_1_and_nothing_is_relayed(tmp_path, monkeypatch):
    from mailguard.deadline import checkpoint
    from tests.support.faults import before_every_check

    def step(ctx) -> None:  # type: ignore[no-untyped-def]
        subject = ctx.message.get("subject")
        if subject == "broken":
            raise RuntimeError("planted")
        while subject == "slow":  # until the decision's deadline
            checkpoint()
            time.sleep(0.002)

    before_every_check(monkeypatch, step)
    rcpts = [f"person{i}@gmail.com" for i in range(20)]
    with (
        ScriptedUpstream() as up,
        proxy_to(
            up.port, tmp_path, on_block="tempfail", on_warn="tempfail", decision_timeout=0.5
        ) as proxy,
    ):
        replies = {}
        for subject in ("bulk", "broken", "slow"):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send(
                    proxy,
                    rcpts if subject == "bulk" else [PARTNER],
                    bulk_to(rcpts if subject == "bulk" else [PARTNER], subject),
                )
            replies[subject] = (refused.value.smtp_code, refused.value.smtp_error.decode())
        assert send(proxy, [PARTNER], clean("fine")) == {}
    assert {code for code, _ in replies.values()} == {451}
    assert all(text.startswith("4.7.1 mailguard") and "@" not in text
               for _, text in replies.values()), replies  # fmt: skip
    assert "would expose 20 external recipients" in replies["bulk"][1]
    assert (
        replies["slow"][1] == "4.7.1 mailguard could not check this message; please try again later"
    )
    assert [b"fine" in a.data for a in up.accepted] == [True]
    assert any("decision exceeded its time budget" in line for line in proxy.messages())


def test_a_split_whose_data_the_upstream_answers_250_counts_no_copy_as_sent(tmp_path):
    """``250`` to DATA (no message sent) once counted as a delivered copy and went into the
    retry journal: the client heard 250 and the retry skipped those people."""
    rcpts = [f"person{i}@gmail.com" for i in range(20)]
    with (
        ScriptedUpstream({"DATA": "250 2.0.0 Ok"}, {}) as up,
        proxy_to(up.port, tmp_path, on_block="split", on_warn="split") as proxy,
    ):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(proxy, rcpts, bulk_to(rcpts))
        assert refused.value.smtp_code == 451
        assert b"0 of 20 copies delivered" in refused.value.smtp_error
        assert send(proxy, rcpts, bulk_to(rcpts)) == {}  # the retry: all 20, once each
    assert sorted(r for a in up.accepted for r in a.rcpt_tos) == sorted(r.encode() for r in rcpts)


def test_an_upstream_that_stalls_the_tls_handshake_is_given_up(tmp_path):
    script = {"EHLO": EHLO_PLAIN + "\r\n250 STARTTLS", "STARTTLS": "220 2.0.0 Ready", "*": STALL}
    with (
        ScriptedUpstream(script) as up,
        proxy_to(up.port, tmp_path, relay_security="starttls", relay_timeout=0.5) as proxy,
    ):
        started = time.monotonic()
        ((code, text),) = refused_at_rcpt(proxy, [PARTNER]).values()
        assert 0.4 < time.monotonic() - started < 5
    assert (code, text) == (451, b"4.4.1 mailguard: cannot reach the upstream (TimeoutError)")
    assert no_traceback(proxy)


def test_no_upstream_failure_keeps_the_only_upstream_slot(tmp_path):
    """With one upstream connection allowed, a failure that did not give its slot back
    would turn every later message into 451 4.4.5 (busy)."""
    failures = [{"greeting": "421 4.3.2 Busy"}, {"MAIL": "421 4.3.2 Busy"},
                {"in-data": DROP}, {".": STALL}, {"DATA": "250 2.0.0 Ok"},
                {"RCPT": "530 5.7.0 Authentication required"}]  # fmt: skip
    with (
        ScriptedUpstream(*failures, {}) as up,
        proxy_to(up.port, tmp_path, relay_connections=1, relay_timeout=0.5) as proxy,
    ):
        codes = []
        for i in range(len(failures)):
            try:
                send(proxy, [PARTNER], clean(f"failing {i}"))
            except smtplib.SMTPRecipientsRefused as exc:
                codes.extend(code for code, _ in exc.recipients.values())
            except smtplib.SMTPDataError as exc:
                codes.append(exc.smtp_code)
        assert codes == [451] * len(failures)
        assert send(proxy, [PARTNER], clean("good")) == {}
    assert [b"good" in a.data for a in up.accepted] == [True]
    assert up.connections == len(failures) + 1 and no_traceback(proxy)


def test_a_client_waiting_for_the_upstream_is_not_idle(tmp_path):
    """idle_timeout below relay_timeout: a client waiting for the answer to RCPT (the
    upstream silent) or to MAIL (every upstream connection busy) is waiting for the proxy,
    not idle; it hears the proxy's 451 after relay_timeout, not "421 idle too long"."""
    with (
        ScriptedUpstream({"MAIL": STALL}, {}) as up,
        proxy_to(up.port, tmp_path, idle_timeout=0.4, relay_timeout=1.2,
                 relay_connections=1) as proxy,
        smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as first,
    ):  # fmt: skip
        first.ehlo()
        first.mail(SENDER)
        started = time.monotonic()
        assert first.rcpt(PARTNER) == (451, b"4.4.2 mailguard: upstream failed (TimeoutError)")
        assert time.monotonic() - started > 1.0
        first.rset()
        assert first.mail(SENDER)[0] == 250
        assert first.rcpt(PARTNER)[0] == 250  # holds the only upstream connection
        second: list[tuple[int, bytes]] = []

        def other() -> None:
            with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client:
                client.ehlo()
                second.append(client.mail(SENDER))

        thread = threading.Thread(target=other)
        thread.start()
        while thread.is_alive():  # the first client keeps itself from being idle
            assert first.noop()[0] == 250
            thread.join(0.1)
        assert second == [(451, b"4.4.5 mailguard: every upstream connection is busy; "
                                b"try again later")]  # fmt: skip
