"""Every reply the proxy sends when something goes wrong, held to what a mail admin expects.

- never 2xx for a message the upstream did not take (or policy did not hold); a transient
  cause (upstream gone, garbled or slow, our own failure, shutdown) is 4xx, so the client
  retries; the upstream's own 5xx stays 5xx;
- every reply well formed (RFC 5321 4.2: the code on every line, lines of at most 512
  octets, printable ASCII), with an enhanced status code (RFC 3463), if any, of its class;
- nothing of the message body in a reply or in the log;
- a client that leaves, or a proxy that stops, never leaves an upstream transaction open.

The upstream's failures come from support/scripted_smtp.py, on loopback ports only.
"""

from __future__ import annotations

import ast
import gc
import logging
import re
import smtplib
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

import mailguard.proxy
from mailguard.proxy.replies import REWORDED, format_reply
from mailguard.proxy.settings import ProxySettings
from mailguard.proxy.wire import stuffed
from tests.conftest import eml
from tests.support.procs import wait_until
from tests.support.proxy import RunningProxy
from tests.support.scripted_smtp import DEFAULTS, DROP, STALL, ScriptedUpstream

SENDER = "ops@serviceco.example"
PARTNER = "partner@othercorp.example"
MARKER = "BODYMARKER-5521"
"""In every message body: it must show up in no reply and no log line."""
_ENHANCED = re.compile(rb"([245])\.[0-9]{1,3}\.[0-9]{1,3}(?= |\r\n)")
_RFC3463 = {
    # subject: the highest detail defined (RFC 3463, 5248's registry: x.6.7 RFC 6531,
    # x.7.11 RFC 7817 ...)
    0: 0, 1: 10, 2: 4, 3: 6, 4: 7, 5: 6, 6: 10, 7: 30,
}  # fmt: skip


def clean(subject: str = "clean") -> bytes:
    return eml(f"From: {SENDER}\nTo: {PARTNER}\nSubject: {subject}", f"Agenda {MARKER}")


def bulk(rcpts: list[str]) -> bytes:
    return eml(f"From: {SENDER}\nTo: {', '.join(rcpts)}\nSubject: bulk", f"Hello {MARKER}")


def proxy_to(port: int, tmp_path: Path, **kw: object) -> RunningProxy:
    settings = ProxySettings(relay=f"127.0.0.1:{port}", relay_security="none")
    return RunningProxy(replace(settings, **kw), journal=tmp_path / "j")  # type: ignore[arg-type]


class Client:
    """A raw SMTP client: every reply as the bytes of its lines, exactly as sent."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")
        self.replies: list[list[bytes]] = []
        self.reply()

    def reply(self) -> list[bytes]:
        lines = []
        while line := self.file.readline():
            lines.append(line)
            if line[3:4] != b"-":
                break
        self.replies.append(lines)
        return lines

    def say(self, data: bytes) -> list[bytes]:
        self.sock.sendall(data)
        return self.reply()

    def code(self, data: bytes) -> int:
        lines = self.say(data)
        return int(lines[-1][:3]) if lines else 0

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def eof(self) -> bool:
        return self.file.read() == b""


def well_formed(lines: list[bytes]) -> str:
    """What is wrong with one reply ('' if nothing)."""
    if not lines:
        return "no reply"
    code = lines[0][:3]
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        if not re.fullmatch(rb"[2-5][0-9]{2}" + (rb"( [ -~]*)?\r\n" if last else rb"-[ -~]*\r\n"),
                            line):  # fmt: skip
            return f"malformed line {line!r}"
        if line[:3] != code:
            return f"mixed codes {lines!r}"
        if len(line) > 512:
            return f"line of {len(line)} octets"
        if (enhanced := _ENHANCED.match(line, 4)) and enhanced.group(1) != code[:1]:
            return f"enhanced code of another class: {line!r}"
    return ""


def converse(port: int, rcpts: list[str], message: bytes) -> tuple[Client, list[bytes]]:
    """A whole transaction; the reply to the message (or to the last RCPT if none went)."""
    client = Client(port)
    client.say(b"EHLO client.example\r\n")
    client.say(f"MAIL FROM:<{SENDER}>\r\n".encode())
    final: list[bytes] = []
    taken = False
    for rcpt in rcpts:
        final = client.say(f"RCPT TO:<{rcpt}>\r\n".encode())
        taken = taken or final[-1:][0][:1] == b"2"
    if taken and client.code(b"DATA\r\n") == 354:
        final = client.say(stuffed(message))
    client.say(b"QUIT\r\n")
    client.close()
    return client, final


# ------------------------------------------------------------------ every path, end to end


@dataclass
class Case:
    script: dict[str, str] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    kind: str = "2"
    """The class of the final reply."""
    rcpts: list[str] = field(default_factory=lambda: [PARTNER])
    bulk: bool = False


TWENTY = [f"person{i}@gmail.com" for i in range(20)]
CASES = {
    "relayed": Case(),
    "upstream 250 without text": Case({".": "250"}),
    "upstream 550 without text": Case({".": "550"}, kind="5"),
    "upstream 2500 ok": Case({".": "2500 ok"}, kind="4"),
    "upstream 250ok": Case({".": "250ok"}, kind="4"),
    "upstream ' 25 ok'": Case({".": " 25 ok"}, kind="4"),
    "upstream abc": Case({".": "abc"}, kind="4"),
    "upstream empty line": Case({".": ""}, kind="4"),
    "upstream mixed codes": Case({".": "250-ok\r\n550 5.0.0 or not"}, kind="4"),
    "upstream NUL": Case({".": "250 2.0.0 ok\x00queued"}),
    "upstream bare CR": Case({".": "250 2.0.0 ok\r550 5.0.0 not"}),
    "upstream bare LF": Case({".": "250-2.0.0 first\n250 2.0.0 second"}),
    "upstream 8-bit": Case({".": "250 2.0.0 d\u00e9j\u00e0 vu"}),
    "upstream 600-octet line": Case({".": "250 2.0.0 " + "x" * 600}),
    "upstream multi-line 554": Case({".": "554-5.7.1 no\r\n554-5.7.1 really\r\n554 5.7.1 no"},
                                    kind="5"),
    "upstream 451 5.7.1": Case({".": "451 5.7.1 greylisted, or not"}, kind="4"),
    "upstream 550 4.7.1": Case({".": "550 4.7.1 refused, or not"}, kind="5"),
    "upstream 421 at end": Case({".": "421 4.3.2 shutting down"}, kind="4"),
    "upstream 354 at end": Case({".": "354 go on"}, kind="4"),
    "upstream silent at end": Case({".": STALL}, {"relay_timeout": 0.5}, kind="4"),
    "upstream gone in data": Case({"in-data": DROP}, kind="4"),
    "upstream 250 to DATA": Case({"DATA": "250 2.0.0 Ok"}, kind="4"),
    "upstream abc to DATA": Case({"DATA": "abc"}, kind="4"),
    "upstream 252 to RCPT": Case({"RCPT": "252 2.1.5 will try"}),
    "upstream 250 to RCPT": Case({"RCPT": "250"}),
    "upstream abc to RCPT": Case({"RCPT": "abc"}, kind="4"),
    "upstream 550 to RCPT": Case({"RCPT": "550 5.1.1 no such user"}, kind="5"),
    "upstream 2500 to MAIL": Case({"MAIL": "2500 ok"}, kind="4"),
    "upstream 421 to MAIL": Case({"MAIL": "421 4.3.2 bye"}, kind="4"),
    "upstream 554 greeting": Case({"greeting": "554 5.7.1 go away"}, kind="4"),
    "upstream 2200 greeting": Case({"greeting": "2200 hello"}, kind="4"),
    "upstream unreachable": Case({"greeting": DROP}, kind="4"),
    "too many recipients": Case(settings={"max_recipients": 1},
                                rcpts=[PARTNER, "second@othercorp.example"]),
    "too big": Case(settings={"max_message_bytes": 100}, kind="5"),
    "policy reject": Case(settings={"on_block": "reject", "on_warn": "reject"}, kind="5",
                          rcpts=TWENTY, bulk=True),
    "policy tempfail": Case(settings={"on_block": "tempfail", "on_warn": "tempfail"},
                            kind="4", rcpts=TWENTY, bulk=True),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_every_reply_is_well_formed_of_its_class_and_2xx_only_for_a_relayed_message(
    name, tmp_path, caplog
):
    caplog.set_level(logging.WARNING)
    case = CASES[name]
    once = {k: (v, DEFAULTS[k]) if k in DEFAULTS else v for k, v in case.script.items()}
    with (
        ScriptedUpstream(once, {}) as up,
        proxy_to(up.port, tmp_path, **case.settings) as proxy,
    ):
        message = bulk(case.rcpts) if case.bulk else clean()
        client, final = converse(proxy.port, case.rcpts, message)
        for lines in client.replies:
            assert well_formed(lines) == "", (name, client.replies)
        assert final and final[0][:1] == case.kind.encode(), (name, final)
        relayed = [a for a in up.accepted if MARKER.encode() in a.data]
        if case.kind == "2":  # with every recipient the client was told 2xx for
            told = {rcpt for rcpt, lines in zip(case.rcpts, client.replies[3:], strict=False)
                    if lines[-1][:1] == b"2"}  # fmt: skip
            assert len(relayed) == 1 and {r.decode() for r in relayed[0].rcpt_tos} == told
        elif not case.script.get(".", "").startswith("2"):  # (an upstream 2500 may have)
            assert relayed == [], (name, final)
        assert not any(MARKER.encode() in line for r in client.replies for line in r)
        assert not any(MARKER in line or "Traceback" in line for line in proxy.log.lines)
        if case.script:  # and the proxy goes on serving (the upstream as usual again)
            assert converse(proxy.port, [PARTNER], clean("next"))[1][-1][:1] == b"2"
    gc.collect()  # an exception nobody retrieved is logged when its future goes
    assert not any(r.exc_info for r in caplog.records), caplog.text
    assert "Traceback" not in caplog.text and "never retrieved" not in caplog.text


# ------------------------------------------------------------------ the reply texts


def _literals() -> list[tuple[str, int, str]]:
    """Every reply the proxy's code spells out: ``"451 4.3.0 ..."`` strings (and bytes),
    ``(451, "4.4.2 ...")`` tuples, f-strings included (their leading constant part)."""

    def text(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            value = node.value
            return value.decode("latin-1") if isinstance(value, bytes) else value
        if isinstance(node, ast.JoinedStr) and node.values:
            return text(node.values[0])
        return None

    found = []
    for path in sorted(Path(mailguard.proxy.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Tuple) and len(node.elts) == 2:
                code, words = node.elts
                said = text(words)
                value = code.value if isinstance(code, ast.Constant) else None
                if type(value) is int and said and 200 <= value < 600:
                    found.append((where, value, said))
                continue
            said = text(node)
            if said and (m := re.match(r"([2-5][0-9]{2})[ -](.*)", said, re.DOTALL)):
                found.append((where, int(m.group(1)), m.group(2)))
    return found


def test_every_reply_the_proxy_spells_out_has_an_enhanced_code_of_its_class():
    literals = _literals()
    assert len(literals) > 30  # the scan finds them (it is not vacuous)
    checked = 0
    for where, code, said in literals:
        if code // 100 == 3:
            continue
        m = re.match(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?= |\Z)", said)
        if m is None:
            continue  # aiosmtpd's own words, reworded on the way out (test below)
        checked += 1
        assert int(m.group(1)) == code // 100, (where, code, said)
        subject, detail = int(m.group(2)), int(m.group(3))
        assert detail <= _RFC3463.get(subject, -1), (where, code, said)
    assert checked > 25


@pytest.mark.parametrize("text", sorted(REWORDED))
def test_aiosmtpds_error_replies_go_out_with_an_enhanced_code_of_their_class(text):
    said = REWORDED[text]
    assert said[:4] == text[:4] and said.endswith(text[4:])
    assert well_formed([said.encode() + b"\r\n"]) == ""
    assert _ENHANCED.match(said.encode() + b"\r\n", 4)


@pytest.mark.parametrize(("reply", "expected"), [
    ((250, ""), "250 2.0.0"),
    ((451, ""), "451 4.0.0"),
    ((451, "5.7.1 greylisted"), "451 4.7.1 greylisted"),
    ((550, "4.1.1 <a@b.example>: unknown"), "550 5.1.1 <a@b.example>: unknown"),
    ((550, "20 mailboxes"), "550 20 mailboxes"),
    ((250, "ok\x00\r\nRSET"), "250-ok\r\n250 RSET"),
    ((250, "ok\rRSET"), "250 ok RSET"),
    ((250, "d\u00e9j\u00e0"), "250 d?j?"),
    ((550, "a\n\n \nb"), "550-a\r\n550 b"),
])  # fmt: skip
def test_a_reply_passed_on_is_one_the_client_can_read(reply, expected):
    assert format_reply(reply) == expected


def test_a_long_upstream_line_is_cut_to_512_octets():
    said = format_reply((550, "5.7.1 " + "x" * 2000 + "\n" + "y" * 700))
    lines = [line + "\r\n" for line in said.split("\r\n")]
    assert [len(line) for line in lines] == [512, 512]
    assert well_formed([line.encode() for line in lines]) == ""


def test_size_refusals_say_5_3_4(tmp_path):
    with ScriptedUpstream() as up, proxy_to(up.port, tmp_path, max_message_bytes=100) as proxy:
        client = Client(proxy.port)
        client.say(b"EHLO client.example\r\n")
        said = client.say(f"MAIL FROM:<{SENDER}> SIZE=1000\r\n".encode())
        assert said[-1].startswith(b"552 5.3.4 "), said
        assert client.code(f"MAIL FROM:<{SENDER}>\r\n".encode()) == 250
        assert client.code(f"RCPT TO:<{PARTNER}>\r\n".encode()) == 250
        assert client.code(b"DATA\r\n") == 354
        said = client.say(stuffed(clean()))
        assert said[-1].startswith(b"552 5.3.4 "), said
        assert client.say(b"DATA\r\n")[-1].startswith(b"503 5.5.1 ")
        client.close()
    assert up.accepted == []


# ------------------------------------------------------------------ our own failures


def test_an_internal_error_at_data_is_451_and_ends_the_transaction(tmp_path):
    """RFC 5321: after the reply to the end of data, failed or not, the transaction is
    over; the client's next MAIL on the same connection opens a new one (it was 503)."""
    with (
        ScriptedUpstream() as up,
        proxy_to(up.port, tmp_path, on_block="split", on_warn="split") as proxy,
    ):
        assert proxy.server is not None
        proxy.server.journal.close()  # the split's journal fails: an internal error
        with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client:
            client.ehlo()
            assert client.mail(SENDER)[0] == 250
            for rcpt in TWENTY:
                assert client.rcpt(rcpt)[0] == 250
            code, text = client.data(bulk(TWENTY))
            assert (code, text[:6]) == (451, b"4.3.0 ")
            assert client.mail(SENDER)[0] == 250  # no RSET in between
            assert client.rcpt(PARTNER)[0] == 250
            assert client.data(clean("after"))[0] == 250
    assert [MARKER.encode() in a.data and b"after" in a.data for a in up.accepted] == [True]


# ------------------------------------------------------------------ clients that leave


def test_a_client_gone_in_the_middle_of_its_message_relays_nothing(tmp_path):
    with ScriptedUpstream() as up, proxy_to(up.port, tmp_path) as proxy:
        client = Client(proxy.port)
        for line in (b"EHLO x", f"MAIL FROM:<{SENDER}>".encode(), f"RCPT TO:<{PARTNER}>".encode()):
            assert client.say(line + b"\r\n")[-1][:1] == b"2"
        assert client.code(b"DATA\r\n") == 354
        client.sock.sendall(clean()[:40])  # half a message, then gone
        client.close()
        assert wait_until(lambda: up.lines and up.lines[0][-1] == b"RSET\r\n", 10), up.lines
        assert send_ok(proxy)  # the same upstream connection, clean for the next
    first = up.lines[0].index(b"RSET\r\n")
    assert b"DATA\r\n" not in up.lines[0][:first]
    assert [b"next" in a.data for a in up.accepted] == [True] and up.connections == 1


def test_a_client_gone_while_the_upstream_answers_its_rcpt_leaves_nothing_open(tmp_path):
    """The upstream has MAIL and RCPT and has not answered: its connection is dropped,
    neither pooled for the next client nor left in a transaction."""
    with ScriptedUpstream({"RCPT": STALL}, {}) as up, proxy_to(up.port, tmp_path) as proxy:
        client = Client(proxy.port)
        for line in (b"EHLO x", f"MAIL FROM:<{SENDER}>".encode()):
            assert client.say(line + b"\r\n")[-1][:1] == b"2"
        client.sock.sendall(f"RCPT TO:<{PARTNER}>\r\n".encode())
        assert wait_until(lambda: up.lines and up.lines[0][-1].startswith(b"RCPT"), 10)
        client.close()
        assert wait_until(lambda: up.closed == 1, 10)
        assert proxy.server is not None and proxy.server.relay.idle == 0
        assert send_ok(proxy)
    assert up.lines[0][-1].startswith(b"RCPT") and up.connections == 2


def send_ok(proxy: RunningProxy) -> bool:
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=30) as client:
        return client.sendmail(SENDER, [PARTNER], clean("next")) == {}


# ------------------------------------------------------------------ shutdown


def stop(proxy: RunningProxy) -> None:
    """As SIGTERM does; leaving the ``with`` then only waits for the proxy's thread."""
    assert proxy._loop is not None and proxy._stop is not None
    proxy._loop.call_soon_threadsafe(proxy._stop.set)
    proxy._loop = None


def test_stopping_tells_every_client_421_and_closes(tmp_path):
    with ScriptedUpstream() as up, proxy_to(up.port, tmp_path) as proxy:
        idle = Client(proxy.port)
        idle.say(b"EHLO idle.example\r\n")
        midway = Client(proxy.port)
        for line in (b"EHLO x", f"MAIL FROM:<{SENDER}>".encode(), f"RCPT TO:<{PARTNER}>".encode()):
            assert midway.say(line + b"\r\n")[-1][:1] == b"2"
        started = time.monotonic()
        stop(proxy)
        for client in (idle, midway):
            said = client.reply()
            assert said and said[-1].startswith(b"421 4.3.2 "), said
            assert well_formed(said) == "" and client.eof()
            client.close()
        assert time.monotonic() - started < 3
        # the transaction the client left open upstream was reset, the connection closed
        assert wait_until(lambda: up.closed == 1, 10)
    assert up.lines[0][-2:] == [b"RSET\r\n", b"QUIT\r\n"] and up.accepted == []


def test_stopping_answers_a_message_in_hand_before_its_421(tmp_path):
    """A message being relayed when the proxy stops gets its own answer (here the 451 of
    an upstream that does not answer), then 421; never a 421 in its place."""
    with (
        ScriptedUpstream({".": STALL}, {}) as up,
        proxy_to(up.port, tmp_path, relay_timeout=1.0) as proxy,
    ):
        client = Client(proxy.port)
        for line in (b"EHLO x", f"MAIL FROM:<{SENDER}>".encode(), f"RCPT TO:<{PARTNER}>".encode(),
                     b"DATA"):  # fmt: skip
            assert client.say(line + b"\r\n")[-1][:1] in (b"2", b"3")
        client.sock.sendall(stuffed(clean()))
        assert wait_until(lambda: up.lines and up.lines[0][-1] == b".\r\n", 10)
        stop(proxy)
        answer, goodbye = client.reply(), client.reply()
        assert answer[-1].startswith(b"451 4.4.2 mailguard: upstream failed (TimeoutError)")
        assert goodbye[-1].startswith(b"421 4.3.2 ") and client.eof()
        client.close()


def test_an_idle_client_hears_421_and_the_connection_closes(tmp_path):
    with ScriptedUpstream() as up, proxy_to(up.port, tmp_path, idle_timeout=0.3) as proxy:
        client = Client(proxy.port)
        client.say(b"EHLO x\r\n")
        said = client.reply()
        assert said[-1].startswith(b"421 4.4.2 ") and well_formed(said) == ""
        assert client.eof()
        client.close()
