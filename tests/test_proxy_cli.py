"""``mailguard proxy`` as a user runs it: help, --hash-password, errors, a real process."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard.cli import app
from mailguard.proxy.auth import verify_password
from tests.conftest import eml
from tests.support.procs import free_ports, port_open, wait_until
from tests.support.smtp_upstream import UpstreamServer, make_test_ca
from tests.test_cli import ARTEFACTS

runner = CliRunner()


@pytest.mark.parametrize("columns", ["200", "80"])
def test_help(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)
    result = runner.invoke(app, ["proxy", "--help"], terminal_width=int(columns))
    assert result.exit_code == 0 and not ARTEFACTS.search(result.output), result.output
    words = " ".join(result.output.split())
    assert "--relay-security" in words and "MAILGUARD_RELAY_PASSWORD" in words


def test_hash_password_reads_stdin_and_prints_a_users_line():
    result = runner.invoke(app, ["proxy", "--hash-password", "script"], input="s3cret\n")
    assert result.exit_code == 0, result.output
    user, _, stored = result.output.strip().partition(":")
    assert user == "script" and "s3cret" not in result.output
    assert verify_password(b"s3cret", stored)


def test_configuration_errors_are_exit_status_2_with_a_message(tmp_path):
    result = runner.invoke(app, ["proxy", "--no-config", "--journal", str(tmp_path / "j")])
    assert result.exit_code == 2 and "no upstream: give --relay HOST:PORT" in result.output
    result = runner.invoke(
        app, ["proxy", "--no-config", "--relay", "x:1", "--relay-security", "ssl"]
    )
    assert result.exit_code == 2 and "expected one of starttls, tls, none" in result.output


def start(tmp_path: Path, port: int, relay_port: int, *extra: str) -> subprocess.Popen[bytes]:
    """The real command, as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mailguard", "proxy", "--no-config", *extra,
         "--listen", f"127.0.0.1:{port}", "--relay", f"127.0.0.1:{relay_port}",
         "--relay-security", "none", "--journal", str(tmp_path / "journal.sqlite")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip


def test_the_real_command_relays_and_stops_on_sigterm(tmp_path):
    port = free_ports(1)[0]
    with UpstreamServer(make_test_ca(tmp_path / "ca"), mode="none") as up:
        proc = start(tmp_path, port, up.port)
        try:
            assert wait_until(lambda: port_open(port), 20), proc.stderr
            raw = eml("From: ops@serviceco.example\nTo: partner@othercorp.example\nSubject: x")
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.sendmail("ops@serviceco.example", ["partner@othercorp.example"], raw)
        finally:
            time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert len(up.received) == 1
    log = err.decode()
    assert "message verdict=pass" in log and "action=accept reply=250" in log
    assert "@" not in log.split("listening on", 1)[1]  # no address in any line after start
    assert Path(tmp_path / "journal.sqlite").exists()


def test_workers_share_one_port_and_stop_together(tmp_path):
    port = free_ports(1)[0]
    with UpstreamServer(make_test_ca(tmp_path / "ca"), mode="none") as up:
        proc = start(tmp_path, port, up.port, "--workers", "2")
        try:
            assert wait_until(lambda: port_open(port), 20), proc.stderr
            time.sleep(0.5)  # both workers listening
            raw = eml("From: ops@serviceco.example\nTo: partner@othercorp.example\nSubject: x")
            for _ in range(6):
                with smtplib.SMTP("127.0.0.1", port) as client:
                    client.sendmail("ops@serviceco.example", ["partner@othercorp.example"], raw)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert len(up.received) == 6
    log = err.decode()
    assert log.count("listening on") == 2 and log.count("stopped") == 2
