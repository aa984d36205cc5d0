"""``mailguard keygen`` and ``mailguard approve``, and approvals through ``check``: the key
files' safety rules, the confirmation, and that no key material is ever shown."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard.approval import HEADER
from mailguard.approval_keys import read_key
from mailguard.cli import app
from tests.conftest import ROOT

runner = CliRunner()


def run(*args: str, input: bytes | None = None):
    return runner.invoke(app, list(args), input=input)


def mailout(n: int = 40) -> bytes:
    to = ", ".join(f"contact{i}@partner{i}.example" for i in range(n))
    return (
        f"From: Partnerships <partners@acme.example>\r\nTo: {to}\r\nSubject: Joint statement\r\n"
        "\r\nDear partners,\r\n\r\nthe joint statement.\r\n"
    ).encode()


def key_forms(path: Path) -> list[str]:
    """Every way the secret could be printed: hex, base64, base64url, repr."""
    secret = base64.b64decode(tomllib.loads(path.read_text())["secret"])
    return [
        secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="), repr(secret)[2:-1],
        base64.b64encode(secret).decode()[:20],
    ]  # fmt: skip


def assert_no_key(text: str, key: Path) -> None:
    for form in key_forms(key):
        assert form not in text


@pytest.fixture
def setup(tmp_path):
    """A key, a config that accepts it, and the message to approve."""
    key = tmp_path / "ops.key"
    result = run("keygen", str(key), "--key-id", "ops-2026a")
    assert result.exit_code == 0, result.output
    config = tmp_path / "mailguard.toml"
    config.write_text('[approval]\nkeys = ["ops.key"]\n')  # relative: from the config's folder
    message = tmp_path / "mailout.eml"
    message.write_bytes(mailout())
    return key, config, message


def test_keygen_writes_a_private_key_whatever_the_umask(tmp_path):
    key = tmp_path / "k.key"
    old = os.umask(0)
    try:
        result = run("keygen", str(key))
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = read_key(key)
    assert len(loaded.secret) == 32 and loaded.id in result.output
    assert_no_key(result.output, key)
    other = tmp_path / "k2.key"
    assert run("keygen", str(other)).exit_code == 0
    assert read_key(other).secret != loaded.secret and read_key(other).id != loaded.id


def test_keygen_never_overwrites(tmp_path):
    key = tmp_path / "k.key"
    assert run("keygen", str(key)).exit_code == 0
    before = key.read_bytes()
    result = run("keygen", str(key))
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output and key.read_bytes() == before
    target = tmp_path / "elsewhere"
    link = tmp_path / "link.key"
    link.symlink_to(target)
    assert run("keygen", str(link)).exit_code == 2 and not target.exists()


def test_keygen_refuses_a_bad_key_id(tmp_path):
    result = run("keygen", str(tmp_path / "k.key"), "--key-id", "../x")
    assert result.exit_code == 2 and "key id" in result.output
    assert not (tmp_path / "k.key").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_key_others_may_read_is_refused_without_showing_it(setup, mode):
    key, config, message = setup
    key.chmod(mode)
    for args in (
        ["approve", str(message), "--key", str(key), "--yes", "--no-config"],
        ["check", str(message), "--config", str(config)],
    ):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert f"has mode {mode:04o}" in result.output and "chmod 600" in result.output
        assert_no_key(result.output, key)


def test_key_file_errors_name_the_file_not_its_content(tmp_path):
    bad = tmp_path / "bad.key"
    secretish = "c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw=="
    bad.write_text(f'format = "mailguard-approval-key-1"\nid = "x"\nsecret = {secretish}\n')
    bad.chmod(0o600)
    message = tmp_path / "m.eml"
    message.write_bytes(mailout())
    result = run("approve", str(message), "--key", str(bad), "--yes", "--no-config")
    assert result.exit_code == 2 and "not a mailguard approval key file" in result.output
    assert secretish not in result.output
    missing = run("approve", str(message), "--key", str(tmp_path / "nope.key"), "--yes")
    assert missing.exit_code == 2 and "cannot read approval key" in missing.output


def test_approve_with_yes_then_check_passes_with_the_approval_shown(setup, tmp_path):
    key, config, message = setup
    out = tmp_path / "approved.eml"
    result = run("approve", str(message), "--key", str(key), "--yes", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "BLOCK" in result.output and "approved with key ops-2026a" in result.output
    signed = out.read_bytes()
    assert signed.count(HEADER.encode()) == 1
    assert signed.replace(signed[signed.index(HEADER.encode()) :].split(b"\r\n\r\n")[0], b"")
    text = run("check", str(out), "--config", str(config))
    assert text.exit_code == 0, text.output
    assert text.output.startswith("PASS") and "approved with key ops-2026a" in text.output
    assert "without the approval: block" in text.output and "MG101" in text.output
    doc = json.loads(run("check", str(out), "--config", str(config), "-f", "json").output)
    entry = doc["messages"][0]
    assert entry["verdict"] == "pass" and entry["approval"]["key_id"] == "ops-2026a"
    assert entry["approval"]["expires"].endswith("Z") and entry["findings"]
    sarif = json.loads(run("check", str(out), "--config", str(config), "-f", "sarif").output)
    (suppression,) = sarif["runs"][0]["results"][0]["suppressions"]
    assert suppression["status"] == "accepted" and "ops-2026a" in suppression["justification"]
    for output in (result.output, text.output, json.dumps(doc), json.dumps(sarif)):
        assert_no_key(output, key)


def test_check_names_what_changed_and_blocks(setup, tmp_path):
    key, config, message = setup
    out = tmp_path / "approved.eml"
    assert run("approve", str(message), "--key", str(key), "--yes", "-o", str(out)).exit_code == 0
    out.write_bytes(out.read_bytes().replace(b"To: ", b"To: one.more@else.example, "))
    result = run("check", str(out), "--config", str(config))
    assert result.exit_code == 1 and "MG701" in result.output
    assert "recipients changed since approval" in result.output
    unconfigured = run("check", str(out), "--no-config")
    assert unconfigured.exit_code == 1 and "no approval keys are configured" in unconfigured.output


def test_approve_lists_the_addresses_only_when_asked(setup, tmp_path):
    key, _, message = setup
    out = str(tmp_path / "out.eml")
    quiet = run("approve", str(message), "--key", str(key), "--yes", "-o", out)
    listed = run("approve", str(message), "--key", str(key), "--yes", "--show-addresses",
                 "-o", out)  # fmt: skip
    assert "contact7@partner7.example" not in quiet.output
    assert "contact7@partner7.example" in listed.output and listed.exit_code == 0


def test_an_output_that_is_no_regular_file_is_written_into_not_replaced(setup, tmp_path):
    """A FIFO stands in for /dev/null or /dev/stdout: renaming over it would replace it."""
    import threading

    key, _, message = setup
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run("approve", str(message), "--key", str(key), "--yes", "-o", str(fifo))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode) and HEADER.encode() in got[0]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_approve_writes_to_stdout_and_reads_stdin_only_with_yes(setup):
    key, _, message = setup
    result = run("approve", "-", "--key", str(key), input=message.read_bytes())
    assert result.exit_code == 2 and "--yes" in result.output
    result = run("approve", "-", "--key", str(key), "--yes", input=message.read_bytes())
    assert result.exit_code == 0 and HEADER in result.stdout
    assert_no_key(result.output, key)


def test_approve_without_a_terminal_refuses_unless_yes(setup, tmp_path):
    key, _, message = setup
    out = tmp_path / "out.eml"
    result = run("approve", str(message), "--key", str(key), "-o", str(out))
    assert result.exit_code == 2 and "no terminal to ask on" in result.output
    assert not out.exists()


@pytest.mark.parametrize("bad", ["24", "1y", "", "-5h", "h", "100d"])
def test_validity_must_be_a_duration_within_bounds(setup, bad):
    key, _, message = setup
    result = run("approve", str(message), "--key", str(key), "--yes", "--valid-for", bad)
    assert result.exit_code == 2 and "valid" in result.output


def test_an_unreadable_message_is_not_approved(setup, tmp_path):
    key, _, _ = setup
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    result = run("approve", str(empty), "--key", str(key), "--yes")
    assert result.exit_code == 2 and "cannot approve" in result.output


def _on_a_terminal(args: list[str], answer: bytes, cwd: Path) -> tuple[int, str]:
    """Run mailguard with a pseudo-terminal as stdin/stderr and answer its question."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailguard", *args], stdin=follower, stderr=follower,
        stdout=subprocess.DEVNULL, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(leader, answer + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(leader)
    return proc.wait(timeout=30), seen.decode("utf-8", "replace")


@pytest.mark.parametrize(("answer", "code"), [(b"y", 0), (b"n", 1)])
def test_approve_asks_on_a_terminal(setup, tmp_path, answer, code):
    key, _, message = setup
    out = tmp_path / "out.eml"
    status, seen = _on_a_terminal(
        ["approve", str(message), "--key", str(key), "-o", str(out), "--no-config"],
        answer, tmp_path,
    )  # fmt: skip
    assert status == code, seen
    assert "Approve" in seen and "MG101" in seen
    assert out.exists() == (code == 0)
    assert_no_key(seen, key)


# ------------------------------------------------------------------ milter frames


def _milter_frames(headers, body: bytes, keys, mode: str = "enforce", **offer: int):
    """A message through the milter session, judged as the server judges it."""
    from mailguard.engine import Engine
    from mailguard.milter.decision import outcome_for
    from mailguard.milter.settings import MilterSettings
    from mailguard.services import Services
    from tests.test_milter_session import feed_message, new_session

    settings = MilterSettings(mode=mode)
    s = new_session(settings, **offer)
    step = feed_message(s, headers, body)
    assert step.decide is not None
    engine = Engine(services=Services(approval=keys))
    report = engine.check(step.decide.raw_message(s.caps.leading_space),
                          envelope=step.decide.envelope)  # fmt: skip
    return report, outcome_for(report, settings, s.caps, step.decide)


def _fields(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    block, body = raw.split(b"\r\n\r\n", 1)
    text = block.decode().replace("\r\n ", "\n ")
    fields = []
    for line in text.split("\r\n"):
        name, _, value = line.partition(":")
        fields.append((name, value))
    return fields, body


def test_the_milter_deletes_the_approval_field_at_its_index_and_logs_the_key():
    from mailguard.approval import sign as sign_raw
    from mailguard.approval_keys import Key, Keyring
    from mailguard.milter import protocol as p
    from mailguard.milter.decision import log_fields

    key = Key("ops-2026a", bytes(range(32)))
    signed = sign_raw(mailout(), key, 3600, time.time())
    fields, body = _fields(signed)
    report, outcome = _milter_frames(fields, body, Keyring([key]))
    assert report.verdict == "pass" and outcome.action == "accept"
    assert outcome.frames == [p.delete_header(1, HEADER), p.SIMPLE[p.CONTINUE]]
    logged = log_fields(report, outcome)
    assert list(logged)[:2] == ["action", "approved"] and logged["approved"] == "ops-2026a"
    # Two approval fields: malformed, refused; in monitor mode accepted with both deleted,
    # highest index first (each deletion leaves the lower indexes in place).
    twice = [*fields, (HEADER, fields[-1][1])]
    report, outcome = _milter_frames(twice, body, Keyring([key]))
    assert outcome.action == "reject" and b"malformed approval" in outcome.frames[-1]
    report, outcome = _milter_frames(twice, body, Keyring([key]), mode="monitor")
    kinds = [f[4:5] for f in outcome.frames]
    assert outcome.frames[:2] == [p.delete_header(2, HEADER), p.delete_header(1, HEADER)]
    assert p.ADDHEADER in kinds  # monitor mode's verdict headers, added after every delete
    assert max(i for i, k in enumerate(kinds) if k == p.CHGHEADER) < kinds.index(p.ADDHEADER)
    # An MTA that did not grant header changes gets no deletion frames.
    _, outcome = _milter_frames(fields, body, Keyring([key]), actions=p.SMFIF_ADDHDRS)
    assert not [f for f in outcome.frames if f[4:5] == p.CHGHEADER]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('keys = ["missing.key"]', "cannot read approval key"),
        ('keys = "ops.key"', "approval.keys must be a list"),
        ('keys = ["ops.key", "copy.key"]', "two approval keys have the id 'ops-2026a'"),
        ('key = ["ops.key"]', "unknown key(s) ['key']"),
    ],
)
def test_approval_section_errors_are_config_errors(setup, table, words):
    key, config, message = setup
    copy = key.with_name("copy.key")
    copy.write_bytes(key.read_bytes())
    copy.chmod(0o600)
    config.write_text(f"[approval]\n{table}\n")
    result = run("check", str(message), "--config", str(config))
    assert result.exit_code == 2 and words in result.output, result.output
    assert_no_key(result.output, key)
