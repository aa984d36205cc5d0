"""The milter daemon over real sockets, driven by our byte-exact client.

What only a live daemon shows: progress frames during a slow decision, the time budget,
a malformed frame closing the connection (so the MTA applies its default action), many
connections at once, and the unix socket's handling.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailguard.config import Config
from mailguard.milter import protocol as p
from mailguard.milter.server import ListenSpec, MilterServer
from mailguard.milter.settings import MilterSettings
from tests.support.milter_client import MilterClient

HUGE_CC = ", ".join(f"person{i}@gmail.com" for i in range(60_000))
RISKY = [("From", " hr@serviceco.example"),
         ("Cc", " " + ", ".join(f"p{i}@gmail.com" for i in range(40)))]  # fmt: skip
CLEAN = [("From", " hr@serviceco.example"), ("To", " colleague@serviceco.example")]
CLEAN_PASSED = [(p.CONTINUE, b"")]
"""A clean single-part message is passed at its end: read whole, since the attachment rules
could find a uuencoded file in its text (tests/test_milter_attachments.py)."""


class Running:
    def __init__(self, server: MilterServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        started = threading.Event()

        async def main() -> None:
            await server.start()
            started.set()
            await server.serve(self.stop)

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),))
        self.thread.start()
        assert started.wait(10)

    @property
    def address(self) -> str | tuple[str, int]:
        bound = self.server.bound
        if bound.startswith("unix:"):
            return bound[5:]
        host, port = bound[5:].rsplit(":", 1)
        return host, int(port)

    def client(self) -> MilterClient:
        c = MilterClient(self.address)
        c.negotiate()
        c.connect_info()
        return c

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)
        assert not self.thread.is_alive()
        self.loop.close()


def start(settings: MilterSettings, listen: str = "inet:127.0.0.1:0") -> Running:
    return Running(MilterServer(Config(), ListenSpec.parse(listen), settings=settings))


@pytest.fixture
def running() -> Iterator[Running]:
    r = start(MilterSettings())
    yield r
    r.shutdown()


def test_listen_spec_notations() -> None:
    assert ListenSpec.parse("inet:127.0.0.1:8891") == ListenSpec("inet", "127.0.0.1", 8891)
    assert ListenSpec.parse("inet:8891@localhost") == ListenSpec("inet", "localhost", 8891)
    assert ListenSpec.parse("inet6:[::1]:8891") == ListenSpec("inet", "::1", 8891)
    assert ListenSpec.parse("unix:/run/m.sock") == ListenSpec("unix", path="/run/m.sock")
    assert ListenSpec.parse("local:/run/m.sock") == ListenSpec("unix", path="/run/m.sock")
    for bad in ("8891", "tcp:1.2.3.4:25", "inet:host:port", "inet:1.2.3.4:70000"):
        with pytest.raises(ValueError):
            ListenSpec.parse(bad)


def test_risky_then_clean_on_one_connection(running: Running) -> None:
    c = running.client()
    frames = c.message(RISKY)
    assert [f[0] for f in frames] == [p.REPLYCODE]
    assert frames[0][1].startswith(b"550 5.7.1 mailguard: would expose 40 external")
    c.send(p.ABORT)
    assert c.message(CLEAN) == CLEAN_PASSED
    c.close()


def test_slow_decision_sends_progress_then_its_verdict() -> None:
    r = start(MilterSettings(progress_interval=0.01, decision_timeout=60))
    try:
        c = r.client()
        frames = c.message([("From", " hr@serviceco.example"), ("Cc", " " + HUGE_CC)])
        kinds = [f[0] for f in frames]
        assert kinds[-1] == p.REPLYCODE and frames[-1][1].startswith(b"550 5.7.1")
        assert kinds.count(p.PROGRESS) >= 1 and set(kinds[:-1]) == {p.PROGRESS}
    finally:
        r.shutdown()


@pytest.mark.parametrize(
    ("on_error", "expected"), [("tempfail", p.REPLYCODE), ("accept", p.CONTINUE)]
)
def test_decision_over_budget_gets_on_error(
    on_error: str, expected: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    r = start(MilterSettings(decision_timeout=0.02, progress_interval=0.01, on_error=on_error))
    try:
        c = r.client()
        with caplog.at_level(logging.INFO, logger="mailguard.milter"):
            frames = c.message([("From", " hr@serviceco.example"), ("Cc", " " + HUGE_CC)])
            assert frames[-1][0] == expected
            if expected == p.REPLYCODE:
                assert frames[-1][1].startswith(b"451 4.7.1 ")
            c.send(p.ABORT)  # the abandoned decision stops at its deadline: no wait here
            assert c.message(CLEAN) == CLEAN_PASSED  # the connection carries on
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("exceeded its 0.02 s budget" in m for m in errors)
        assert all("gmail" not in r.getMessage() for r in caplog.records)
    finally:
        r.shutdown()


def test_malformed_frame_closes_the_connection_but_not_the_server(running: Running) -> None:
    c = MilterClient(running.address)
    c.sock.sendall(b"\0\0\0\0")  # a zero-length frame
    assert c.sock.recv(10) == b""
    c.close()
    c = running.client()
    assert c.message(CLEAN) == CLEAN_PASSED
    c.close()


def test_many_concurrent_connections_are_judged_independently(running: Running) -> None:
    clients = [running.client() for _ in range(40)]
    results: dict[int, bytes] = {}

    def work(i: int, client: MilterClient) -> None:
        results[i] = client.message(RISKY if i % 2 else CLEAN)[-1][0]

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: p.REPLYCODE if i % 2 else p.CONTINUE for i in range(40)}
    for c in clients:
        c.close()


def test_log_line_per_decision_without_addresses(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    c = running.client()
    with caplog.at_level(logging.INFO, logger="mailguard.milter"):
        c.send(p.MACRO, b"Ni\x00ABC123\x00")  # Postfix's milter_end_of_header_macros
        c.message(RISKY)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decision ")]
    assert len(lines) == 1
    line = lines[0]
    for part in ("queue_id=ABC123", "action=reject", "verdict=block", "external=40",
                 "personal=40", "rules=MG101,MG102", "ms="):  # fmt: skip
        assert part in line
    assert "@" not in line
    c.close()


def test_unix_socket_mode_and_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "milter.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as after a crash
    r = Running(MilterServer(Config(), ListenSpec("unix", path=str(path)), socket_mode=0o666))
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        with pytest.raises(ValueError, match="already listening"):
            asyncio.run(MilterServer(Config(), ListenSpec("unix", path=str(path))).start())
        c = r.client()
        assert c.message(CLEAN) == CLEAN_PASSED
        c.close()
    finally:
        r.shutdown()
    assert not path.exists()


def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    with pytest.raises(ValueError, match="not a socket"):
        asyncio.run(MilterServer(Config(), ListenSpec("unix", path=str(path))).start())
    assert path.read_text() == "keep me"


def test_a_reload_sent_as_soon_as_the_socket_listens_reloads_and_does_not_kill() -> None:
    """SIGHUP's default action ends the process. The handler used to be installed only
    after the socket listened, so a reload sent as soon as the milter answered (a service
    manager, a deploy script; a test under load) could kill it. Here the SIGHUP is sent
    from inside ``start``, right after the socket listens: the earliest a client can."""
    script = textwrap.dedent(
        """
        import asyncio, logging, os, signal, sys
        from mailguard.config import Config
        from mailguard.checks.base import Services
        from mailguard.milter.server import MilterServer
        from mailguard.milter.server import ListenSpec
        from mailguard.milter.settings import MilterSettings

        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
        reloads = []

        def reload():
            reloads.append(1)
            return Config(), MilterSettings(), Services()

        server = MilterServer(Config(), ListenSpec.parse("inet:127.0.0.1:0"), reload=reload)
        real_start = server.start

        async def start():
            await real_start()
            os.kill(os.getpid(), signal.SIGHUP)

        server.start = start

        async def main():
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(1.0, stop.set)
            await server.serve(stop)

        asyncio.run(main())
        print("reloads", len(reloads))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "reloads 1"
    assert "configuration reloaded" in result.stderr
