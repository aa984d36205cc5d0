"""The proxy against an upstream with STARTTLS/TLS, AUTH and faults (support/smtp_upstream.py).

What a script sees (SMTP replies) and what the upstream received, through real sockets and
real TLS with a private test CA.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailguard.config import Config
from mailguard.proxy.settings import ProxySettings
from tests.conftest import eml
from tests.support.proxy import RunningProxy
from tests.support.scripted_smtp import STALL, ScriptedUpstream
from tests.support.smtp_upstream import Faults, UpstreamServer, make_test_ca

SENDER = "ops@serviceco.example"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


def settings_for(up: UpstreamServer, tls: dict[str, Path], **kw: object) -> ProxySettings:
    base = ProxySettings(relay=f"127.0.0.1:{up.port}", relay_ca=str(tls["ca"]))
    return replace(base, **kw)  # type: ignore[arg-type]


def send(proxy: RunningProxy, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", proxy.port) as client:
        return client.sendmail(SENDER, rcpts, raw)


def people(n: int, domain: str = "gmail.com") -> list[str]:
    return [f"person{i}@{domain}" for i in range(n)]


def bulk(rcpts: list[str], marker: str = "bulk") -> bytes:
    return eml(f"From: {SENDER}\nTo: {', '.join(rcpts)}\nSubject: {marker}", "Hello all")


def clean(marker: str = "clean") -> bytes:
    return eml(f"From: {SENDER}\nTo: partner@othercorp.example\nSubject: {marker}", "Agenda")


@pytest.fixture
def upstream(tls: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[UpstreamServer]:
    monkeypatch.setenv("MAILGUARD_RELAY_PASSWORD", "s3cret-relay")
    with UpstreamServer(tls, mode="starttls", user="relayuser", password="s3cret-relay") as up:
        yield up


def test_starttls_and_auth_upstream_with_connection_reuse(upstream, tls, tmp_path):
    settings = settings_for(upstream, tls, relay_user="relayuser")
    with RunningProxy(settings, journal=tmp_path / "j") as proxy:
        for i in range(3):
            with smtplib.SMTP("127.0.0.1", proxy.port) as client:
                client.sendmail(SENDER, ["partner@othercorp.example"], clean(f"m{i}"))
    assert len(upstream.received) == 3
    assert all(r.tls and r.login == b"relayuser" for r in upstream.received)
    assert len(upstream.handler.peers) == 1  # three client sessions, one upstream connection
    assert all(b"s3cret" not in line.encode() for line in proxy.log.lines)


def test_implicit_tls_upstream(tls, tmp_path):
    with UpstreamServer(tls, mode="tls") as up:
        settings = settings_for(up, tls, relay_security="tls")
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            send(proxy, ["partner@othercorp.example"], clean())
        assert [r.tls for r in up.received] == [True]


def test_an_unverifiable_upstream_certificate_is_a_clear_temporary_refusal(upstream, tmp_path):
    settings = ProxySettings(relay=f"127.0.0.1:{upstream.port}")  # system CAs: not ours
    with (
        RunningProxy(settings, journal=tmp_path / "j") as proxy,
        smtplib.SMTP("127.0.0.1", proxy.port) as client,
    ):
        client.ehlo()
        assert client.mail(SENDER)[0] == 250  # the upstream hears MAIL with the first RCPT
        code, text = client.rcpt("partner@othercorp.example")
    assert code == 451 and text.startswith(b"4.7.5 mailguard: TLS with the upstream failed")
    assert b"certificate" in text
    assert upstream.received == []


def test_split_when_the_upstream_drops_after_ten_copies_then_the_retry_sends_the_rest(
    tls, tmp_path
):
    rcpts = people(20)
    raw = bulk(rcpts, "drop")
    with UpstreamServer(tls, mode="none", faults=Faults(drop_after=10)) as up:
        settings = settings_for(up, tls, relay_security="none", on_block="split", on_warn="split")
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            with pytest.raises(smtplib.SMTPDataError) as first:
                send(proxy, rcpts, raw)
            assert first.value.smtp_code == 451
            text = first.value.smtp_error.decode()
            assert "10 of 20 copies delivered, 10 not yet" in text and "@" not in text
            assert len(up.received) == 10
            assert send(proxy, rcpts, raw) == {}  # the client's retry
    delivered = Counter(r for got in up.received for r in got.rcpt_tos)
    assert delivered == Counter(rcpts)  # nothing lost, nothing twice
    assert all(len(got.rcpt_tos) == 1 for got in up.received)
    assert "sent=10 earlier=10" in proxy.messages()[-1]


def test_ten_thousand_and_one_recipients(tls, tmp_path):
    rcpts = [f"user{i}@example.net" for i in range(10_001)]
    raw = eml(f"From: {SENDER}\nTo: {SENDER}\nSubject: many", "hi")
    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(up, tls, relay_security="none")
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            refused = send(proxy, rcpts, raw)
    assert list(refused) == [rcpts[-1]]
    code, text = refused[rcpts[-1]]
    assert code == 452 and text.startswith(b"4.5.3 Too many recipients")
    assert len(up.received) == 1 and len(up.received[0].rcpt_tos) == 10_000


# ------------------------------------------------------------------ the client side


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    from mailguard.proxy.auth import hash_password

    path = tmp_path / "users"
    path.write_text(f"# proxy users\nscript:{hash_password('client-pass')}\n")
    return path


def test_client_auth_and_starttls(tls, users_file, tmp_path):
    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(
            up, tls, relay_security="none", users_file=str(users_file),
            tls_cert=str(tls["cert"]), tls_key=str(tls["key"]),
        )  # fmt: skip
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            with smtplib.SMTP("127.0.0.1", proxy.port) as client:
                client.ehlo()
                assert client.has_extn("starttls") and client.has_extn("auth")  # loopback
                assert client.mail(SENDER)[0] == 530  # login first
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.login("script", "wrong")
            context = ssl.create_default_context(cafile=str(tls["ca"]))
            with smtplib.SMTP("localhost", proxy.port) as client:
                client.starttls(context=context)
                client.login("script", "client-pass")
                client.sendmail(SENDER, ["partner@othercorp.example"], clean())
    assert len(up.received) == 1
    assert users_file.read_text().count("client-pass") == 0  # stored as a hash only


def test_a_public_listen_address_needs_users_and_tls(tls, users_file, tmp_path):
    from mailguard.errors import ConfigError
    from mailguard.proxy.server import ProxyServer

    base = ProxySettings(relay="127.0.0.1:25", listen="0.0.0.0:0", journal=str(tmp_path / "j"))
    with pytest.raises(ConfigError, match="open relay"):
        ProxyServer(Config(), base)
    with pytest.raises(ConfigError, match="without encryption"):
        ProxyServer(Config(), replace(base, users_file=str(users_file)))


def test_an_idle_client_is_disconnected_with_421(tls, tmp_path):
    import socket

    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(up, tls, relay_security="none", idle_timeout=0.5)
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            sock.close()
    assert data.startswith(b"220 ") and b"\r\n421 " in data


def test_commands_keep_a_client_from_being_idle(tls, tmp_path):
    """A command restarts the idle clock (the proxy keeps one timer and checks the time)."""
    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(up, tls, relay_security="none", idle_timeout=0.6)
        with (
            RunningProxy(settings, journal=tmp_path / "j") as proxy,
            smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as client,
        ):
            started = time.monotonic()
            while time.monotonic() - started < 2.0:  # over three idle timeouts
                assert client.noop()[0] == 250
                time.sleep(0.2)
            time.sleep(1.0)  # quiet for longer than the timeout: 421, then closed
            assert client.getreply()[0] == 421


def test_a_client_leaving_mid_command_never_leaves_a_broken_connection_in_the_pool(tmp_path):
    import socket

    from tests.support.procs import wait_until

    with ScriptedUpstream({"DATA": STALL}) as up:
        settings = ProxySettings(relay=f"127.0.0.1:{up.port}", relay_security="none")
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            file = sock.makefile("rb")
            file.readline()
            for line in (b"EHLO x", f"MAIL FROM:<{SENDER}>".encode(),
                         b"RCPT TO:<partner@othercorp.example>", b"DATA"):  # fmt: skip
                sock.sendall(line + b"\r\n")
                while file.readline()[3:4] == b"-":
                    pass
            sock.sendall(clean() + b".\r\n")  # the proxy checks it and sends DATA upstream
            assert wait_until(lambda: up.lines and up.lines[0][-1:] == [b"DATA\r\n"], 10)
            file.close()
            sock.close()  # gone while the proxy waits for the upstream's 354
            assert wait_until(lambda: up.closed == 1, 10)  # that connection was dropped...
            assert up.lines[0][-1] == b"DATA\r\n"  # ...without a word (no RSET or QUIT as text)
            assert proxy.server.relay.idle == 0
            assert not any("Traceback" in line for line in proxy.log.lines)


def test_a_refused_data_is_reset_before_the_connection_is_reused(tmp_path):
    """RFC 5321 keeps the transaction after a refused DATA: without RSET, the next MAIL on
    that connection would be a nested MAIL (503)."""
    with ScriptedUpstream({"DATA": ("554 5.5.1 no thanks", "354 go ahead")}) as up:
        settings = ProxySettings(relay=f"127.0.0.1:{up.port}", relay_security="none")
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send(proxy, ["partner@othercorp.example"], clean())
            assert (refused.value.smtp_code, refused.value.smtp_error) == (554, b"5.5.1 no thanks")
            assert send(proxy, ["partner@othercorp.example"], clean("again")) == {}
            assert proxy.server.relay.opened == 1  # the same upstream connection, reset between
    assert b"RSET\r\n" in up.lines[0] and len(up.accepted) == 1


def test_an_upstream_that_stops_answering_is_a_451_after_relay_timeout(tmp_path):
    with ScriptedUpstream({"DATA": STALL}) as up:
        settings = ProxySettings(relay=f"127.0.0.1:{up.port}", relay_security="none",
                                 relay_timeout=0.5)  # fmt: skip
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            for _ in range(2):  # the second on a new connection: the first was given up
                started = time.monotonic()
                with (
                    smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as client,
                    pytest.raises(smtplib.SMTPDataError) as refused,
                ):
                    client.sendmail(SENDER, ["partner@othercorp.example"], clean())
                assert 0.4 < time.monotonic() - started < 5
                assert refused.value.smtp_code == 451
                assert refused.value.smtp_error == (
                    b"4.4.2 mailguard: upstream failed (TimeoutError)"
                )
            assert proxy.server.relay.opened == 2 and proxy.server.relay.idle == 0


def test_an_unreachable_upstream_is_a_temporary_refusal_without_a_traceback(tmp_path):
    from tests.support.procs import free_ports

    dead = free_ports(1)[0]
    settings = ProxySettings(relay=f"127.0.0.1:{dead}", relay_security="none")
    with (
        RunningProxy(settings, journal=tmp_path / "j") as proxy,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        send(proxy, ["partner@othercorp.example"], clean())
    ((code, text),) = refused.value.recipients.values()
    assert code == 451 and text.startswith(b"4.4.1 mailguard: cannot reach the upstream")
    assert not any("Traceback" in line for line in proxy.log.lines)


def test_garbage_and_abandoned_sessions_leave_the_proxy_serving(tls, tmp_path):
    import random
    import socket

    from tests.support.procs import wait_until

    rng = random.Random(12)
    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(up, tls, relay_security="none")
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            for _ in range(3):  # clients that give up half-way, with an upstream transaction open
                sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
                file = sock.makefile("rb")
                file.readline()
                for line in (b"EHLO x", f"MAIL FROM:<{SENDER}>".encode(),
                             b"RCPT TO:<partner@othercorp.example>"):  # fmt: skip
                    sock.sendall(line + b"\r\n")
                    while (reply := file.readline())[3:4] == b"-":
                        pass
                file.close()  # (the socket stays open while a file object holds it)
                sock.close()
                # Its upstream connection goes back to the pool (after RSET), not lost.
                assert wait_until(lambda: proxy.server.relay.idle == 1, 10)
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            file = sock.makefile("rb")
            file.readline()
            for _ in range(200):  # random bytes, random lengths, some NULs and 8-bit
                line = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
                sock.sendall(line.replace(b"\n", b"") + b"\r\n")
                reply = file.readline()
                assert reply[:3].isdigit() and reply[3:4] in (b" ", b"-"), reply
                while reply[3:4] == b"-":
                    reply = file.readline()
                if reply.startswith(b"502"):  # too many unknown commands: closed
                    break
            sock.close()
            send(proxy, ["partner@othercorp.example"], clean("after the garbage"))
    assert len(up.received) == 1
    assert len(up.handler.peers) == 1  # the abandoned transactions' connection was reused
    assert not any("Traceback" in line or "internal error" in line for line in proxy.log.lines)


def test_a_dns_lookup_never_holds_the_event_loop(tls, tmp_path):
    """With [dns] on and a DNS server that never answers, the message is decided on a
    worker thread; meanwhile the loop keeps serving another client."""
    import socket
    import threading

    from mailguard.resolver import DnsService
    from mailguard.services import Services

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives, never answers
    silent.bind(("127.0.0.1", 0))
    dns = DnsService((f"127.0.0.1:{silent.getsockname()[1]}",), timeout=1.0, deadline=1.5)
    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(up, tls, relay_security="none")
        with RunningProxy(settings, journal=tmp_path / "j", services=Services(dns=dns)) as proxy:
            done: list[float] = []
            sender = threading.Thread(
                target=lambda: (send(proxy, ["partner@othercorp.example"], clean()),
                                done.append(time.monotonic())),
            )  # fmt: skip
            sender.start()
            time.sleep(0.3)  # the message is waiting for DNS by now
            with smtplib.SMTP("127.0.0.1", proxy.port) as other:
                started = time.monotonic()
                assert other.noop()[0] == 250
                answered = time.monotonic()
            sender.join(20)
    silent.close()
    assert done and answered - started < 0.5 and answered < done[0]
    assert len(up.received) == 1
    assert "MG402" not in proxy.messages()[0]  # unknown is never a finding


def test_rewrite_that_cannot_cure_falls_back_and_never_pretends(tls, tmp_path):
    import mailguard
    from tests.support import custom_rule

    rules = custom_rule.write_rule(tmp_path / "rules")
    (tmp_path / "mailguard.toml").write_text(f'rule_paths = ["{rules}"]\n')
    config = mailguard.load_config(tmp_path / "mailguard.toml")
    people = [f"p{i}@gmail.com" for i in range(60)]
    raw = custom_rule.payslip_message(", ".join(people))
    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(up, tls, relay_security="none", on_block="rewrite")
        with (
            RunningProxy(settings, config, journal=tmp_path / "j") as proxy,
            pytest.raises(smtplib.SMTPDataError) as refused,
        ):
            send(proxy, people, raw)
    assert refused.value.smtp_code == 550 and up.received == []
    (line,) = proxy.messages()
    assert f"rewrite=fallback:{custom_rule.CODE}" in line and "action=reject" in line


def test_replies_injected_behind_the_starttls_220_are_refused(tmp_path):
    """An upstream (or a man in the middle) that sends more after its 220 to STARTTLS, in
    clear text, would have that read as the encrypted session's replies: refused, 451."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def session() -> None:
        conn, _ = server.accept()
        file = conn.makefile("rb")
        conn.sendall(b"220 upstream\r\n")
        while line := file.readline():
            seen.append(line)
            if line.upper().startswith(b"EHLO"):
                conn.sendall(b"250-upstream\r\n250 STARTTLS\r\n")
            elif line.upper().startswith(b"STARTTLS"):
                conn.sendall(b"220 go ahead\r\n250-upstream\r\n250 AUTH PLAIN\r\n")
        conn.close()

    threading.Thread(target=session, daemon=True).start()
    settings = ProxySettings(relay=f"127.0.0.1:{server.getsockname()[1]}")  # starttls
    with (
        RunningProxy(settings, journal=tmp_path / "j") as proxy,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        send(proxy, ["partner@othercorp.example"], clean())
    code, text = refused.value.recipients["partner@othercorp.example"]
    assert code == 451 and b"sent more than its 220 to STARTTLS" in text
    assert not any(line.upper().startswith((b"MAIL", b"AUTH")) for line in seen)
    server.close()


def test_commands_pipelined_behind_a_client_starttls_are_discarded(tls, tmp_path):
    """A command sent in clear text behind STARTTLS (injected by a man in the middle) is
    not carried into the encrypted session: there, MAIL was never given."""
    import socket

    with UpstreamServer(tls, mode="none") as up:
        settings = settings_for(up, tls, relay_security="none",
                                tls_cert=str(tls["cert"]), tls_key=str(tls["key"]))  # fmt: skip
        with RunningProxy(settings, journal=tmp_path / "j") as proxy:
            raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            file = raw.makefile("rb")

            def reply(f) -> bytes:  # type: ignore[no-untyped-def]
                lines = [f.readline()]
                while lines[-1][3:4] == b"-":
                    lines.append(f.readline())
                return b"".join(lines)

            reply(file)
            raw.sendall(b"EHLO client\r\n")
            assert b"STARTTLS" in reply(file).upper()
            raw.sendall(f"STARTTLS\r\nMAIL FROM:<{SENDER}>\r\n".encode())
            assert reply(file).startswith(b"220")
            context = ssl.create_default_context(cafile=str(tls["ca"]))
            secure = context.wrap_socket(raw, server_hostname="localhost")
            tfile = secure.makefile("rb")
            secure.sendall(b"EHLO client\r\n")
            assert reply(tfile).startswith(b"250")
            secure.sendall(b"RCPT TO:<partner@othercorp.example>\r\n")
            assert reply(tfile).startswith(b"503")  # no MAIL in this session
            secure.sendall(b"QUIT\r\n")
            secure.close()
    assert up.received == []


@pytest.mark.parametrize("upstream_utf8", [True, False])
def test_non_ascii_addresses_need_smtputf8_on_both_sides(tls, tmp_path, upstream_utf8):
    """RFC 6531: a non-ASCII address goes on only under SMTPUTF8, which the client asks for
    on MAIL FROM and the upstream must offer; each refusal names which side lacks it, and
    the ASCII recipients of the same session are relayed all the same."""
    rcpts = ["zoë@othercorp.example", "partner@othercorp.example"]
    raw = clean("utf8")
    with (
        UpstreamServer(tls, mode="none", smtputf8=upstream_utf8) as up,
        RunningProxy(settings_for(up, tls, relay_security="none"), journal=tmp_path / "j") as proxy,
    ):
        for options, expected in (((), b"on MAIL FROM"), (("SMTPUTF8",), b"it offers no")):
            with smtplib.SMTP("127.0.0.1", proxy.port) as client:
                client.command_encoding = "utf-8"  # a client that sends UTF-8 undeclared
                if options and upstream_utf8:
                    assert client.sendmail(SENDER, rcpts, raw, mail_options=options) == {}
                    continue
                refused = client.sendmail(SENDER, rcpts, raw, mail_options=options)
                ((who, (code, text)),) = refused.items()
                assert (who, code) == (rcpts[0], 553)
                assert text.startswith(b"5.6.7 mailguard: ") and expected in text
        delivered = [sorted(r.rcpt_tos) for r in up.received]
    assert not any("Traceback" in line for line in proxy.log.lines)
    if upstream_utf8:
        assert delivered == [["partner@othercorp.example"], sorted(rcpts)]
    else:
        assert delivered == [["partner@othercorp.example"]] * 2


def test_a_pipelined_flood_is_served_in_linear_time(tls, tmp_path):
    """The command lane reads what a client sends in one go (no PIPELINING is offered, but
    nothing stops a client): doubling the commands, or the lines of a message's data, at
    most roughly doubles the time. One session per measurement, and large enough that a
    per-command cost growing with the session (the bug this guards against) would show
    over the ~20 us each command costs through the sockets."""
    import socket

    def session(port: int, payload: bytes) -> float:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.recv(1024)
            started = time.perf_counter()
            sock.sendall(b"EHLO x\r\n" + payload + b"QUIT\r\n")
            got = b""
            while not got.endswith(b"221 2.0.0 Bye\r\n"):
                block = sock.recv(1 << 20)
                assert block, got[-300:]
                got += block
            return time.perf_counter() - started

    def assert_doubling(port: int, make: Callable[[int], bytes], n: int) -> None:
        seen = []
        for _ in range(3):
            small = min(session(port, make(n)) for _ in range(3))
            large = min(session(port, make(2 * n)) for _ in range(3))
            if large < 3 * small:
                return
            seen.append(f"{small:.3f} s -> {large:.3f} s")
        raise AssertionError(f"doubling {n:,} -> {2 * n:,}: " + ", ".join(seen))

    mail = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<partner@othercorp.example>\r\nDATA\r\n".encode()
    with (
        UpstreamServer(tls, mode="none") as up,
        RunningProxy(settings_for(up, tls, relay_security="none"), journal=tmp_path / "j") as proxy,
    ):
        assert_doubling(proxy.port, lambda n: b"NOOP\r\n" * n, 16_000)
        assert_doubling(
            proxy.port, lambda n: mail + b"Subject: s\r\n\r\n" + b"a line\r\n" * n + b".\r\n",
            200_000,
        )  # fmt: skip
        assert up.received and up.received[-1].data.count(b"a line") == 400_000
    assert not any("Traceback" in line for line in proxy.log.lines)
