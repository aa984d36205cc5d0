"""The proxy's idle timer counts from its own last reply, not from the last time the timer
found the session busy.

Why: while the proxy waits for the upstream, the idle timer re-arms itself. Counting idle
time from those re-arms could cut off, with "421 idle too long", a client that had its
answer only a moment ago (up to ``idle_timeout`` too early): a script that pauses briefly
after a 451 to decide what to do next lost its connection.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

from tests.support.scripted_smtp import STALL, ScriptedUpstream
from tests.test_proxy_upstream_faults import PARTNER, SENDER, no_traceback, proxy_to


def test_a_client_that_pauses_after_a_slow_answer_is_not_cut_off(tmp_path: Path) -> None:
    # Timer re-arms at about 1.0 and 2.0 s; the upstream times out at 2.5 s; the client
    # waits 0.7 s (less than idle_timeout) before its next command: at 3.2 s, after the
    # timer's 3.0 s, so counting from the re-arm would close the connection.
    with (
        ScriptedUpstream({"MAIL": STALL}, {}) as up,
        proxy_to(up.port, tmp_path, idle_timeout=1.0, relay_timeout=2.5) as proxy,
        smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client,
    ):  # fmt: skip
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        code, _ = client.rcpt(PARTNER)
        assert code == 451
        time.sleep(0.7)
        assert client.rset() == (250, b"2.0.0 OK")
        assert client.noop()[0] == 250
    assert no_traceback(proxy)


def test_a_client_that_stays_silent_after_the_answer_is_still_cut_off(tmp_path: Path) -> None:
    """The other side of the same clock: idle after the reply still ends the session."""
    with (
        ScriptedUpstream({"MAIL": STALL}, {}) as up,
        proxy_to(up.port, tmp_path, idle_timeout=0.5, relay_timeout=1.2) as proxy,
        smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client,
    ):  # fmt: skip
        client.ehlo()
        client.mail(SENDER)
        assert client.rcpt(PARTNER)[0] == 451
        time.sleep(1.5)
        assert client.getreply() == (421, b"4.4.2 mailguard: idle too long, closing")
    assert no_traceback(proxy)
