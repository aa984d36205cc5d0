"""The command line as a user drives it: exit codes, formats, inputs, privacy."""

from __future__ import annotations

import json
import signal
import time

import pytest
from typer.testing import CliRunner

from mailguard.cli import app
from tests.conftest import EXAMPLES, eml

runner = CliRunner()
TRACERS = str(EXAMPLES / "01-contact-tracers-cc.eml")
PARTNER = str(EXAMPLES / "07-partner-company.eml")
SPORTS = str(EXAMPLES / "08-sports-club-fixtures.eml")


def run(*args: str, input: bytes | None = None):
    return runner.invoke(app, list(args), input=input)


def test_block_exits_1_and_explains():
    result = run("check", TRACERS)
    assert result.exit_code == 1
    assert "BLOCK" in result.output
    assert "MG101" in result.output
    assert "296 visible in To/Cc" in result.output
    assert "how to fix" in result.output


def test_pass_exits_0():
    result = run("check", PARTNER)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("PASS")


def test_fail_on_warn():
    assert run("check", SPORTS).exit_code == 0
    assert run("check", SPORTS, "--fail-on", "warn").exit_code == 1


def test_folder_is_searched_recursively(tmp_path):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "one.eml").write_bytes((EXAMPLES / "07-partner-company.eml").read_bytes())
    (tmp_path / "two.eml").write_bytes((EXAMPLES / "08-sports-club-fixtures.eml").read_bytes())
    (tmp_path / "notes.txt").write_text("not a message")
    result = run("check", str(tmp_path), "--format", "json")
    doc = json.loads(result.output)
    assert sorted(m["source"].rsplit("/", 1)[1] for m in doc["messages"]) == ["one.eml", "two.eml"]
    assert doc["summary"] == {"messages": 2, "pass": 1, "warn": 1, "block": 0, "error": 0}


def test_stdin():
    result = run(
        "check",
        "-",
        "--format",
        "json",
        input=(EXAMPLES / "01-contact-tracers-cc.eml").read_bytes(),
    )
    doc = json.loads(result.output)
    assert doc["messages"][0]["source"] == "<stdin>"
    assert doc["messages"][0]["verdict"] == "block"
    assert result.exit_code == 1


def test_missing_file_is_an_error_but_others_are_checked():
    result = run("check", "/nonexistent/x.eml", PARTNER, "--format", "json")
    assert result.exit_code == 2
    doc = json.loads(result.output)
    first, second = doc["messages"]
    assert first["verdict"] == "error"
    assert "no such file" in first["findings"][0]["message"]
    assert second["verdict"] == "pass"


def test_unreadable_message_exits_2():
    result = run("check", "-", input=b"")
    assert result.exit_code == 2
    assert "ERROR" in result.output and "MG001" in result.output


def test_json_contract():
    result = run("check", TRACERS, PARTNER, "--format", "json")
    doc = json.loads(result.output)
    assert doc["schema_version"] == 1
    msg = doc["messages"][0]
    assert set(msg) >= {"source", "verdict", "score", "recipients", "findings"}
    assert isinstance(msg["score"], int)
    assert set(msg["recipients"]) >= {
        "to", "cc", "bcc", "visible", "visible_internal", "visible_external",
        "external_domains", "personal",
    }  # fmt: skip
    assert msg["recipients"]["visible"] == 296
    finding = msg["findings"][0]
    assert set(finding) >= {"code", "name", "severity", "message", "weight"}
    assert sum(f["weight"] for f in msg["findings"]) >= msg["score"]
    without_id = {k: v for k, v in msg.items() if k != "message_id"}
    assert "@" not in json.dumps(without_id), "addresses must not appear unless asked for"


def test_show_addresses_and_redact():
    plain = run("check", SPORTS, "--format", "json", "--show-addresses")
    listed = json.loads(plain.output)["messages"][0]["addresses"]
    assert len(listed) == 12 and all("@" in a["address"] for a in listed)
    assert {a["kind"] for a in listed} == {"personal"}
    redacted = run("check", SPORTS, "--format", "json", "--redact")
    hashed = json.loads(redacted.output)["messages"][0]["addresses"]
    assert len({a["address"] for a in hashed}) == 12
    assert "@" not in json.dumps(hashed)
    assert "@" not in json.dumps(json.loads(redacted.output)["messages"][0]["findings"])
    text = run("check", SPORTS)
    assert "@" not in text.output, "text output lists no addresses by default"


def test_redaction_key_from_environment_is_stable(monkeypatch):
    monkeypatch.setenv("MAILGUARD_REDACT_KEY", "audit-2026")
    a = run("check", SPORTS, "--format", "json", "--redact").output
    b = run("check", SPORTS, "--format", "json", "--redact").output
    assert a == b
    monkeypatch.setenv("MAILGUARD_REDACT_KEY", "other")
    assert run("check", SPORTS, "--format", "json", "--redact").output != a


def test_smtp_payload_with_envelope(tmp_path):
    payload = tmp_path / "payload.txt"
    payload.write_bytes(
        eml("From: HR <hr@serviceco.example>\nTo: a@gmail.com, b@hotmail.com", "..dotted\r\n.")
    )
    result = run(
        "check", str(payload), "--smtp-data", "--mail-from", "hr@serviceco.example",
        "--rcpt-to", "a@gmail.com", "--rcpt-to", "<b@hotmail.com>", "--format", "json",
    )  # fmt: skip
    msg = json.loads(result.output)["messages"][0]
    assert msg["recipients"]["envelope_recipients"] == 2
    assert msg["recipients"]["envelope_recipients_visible"] == 2
    assert "MG103" in [f["code"] for f in msg["findings"]]


def test_internal_domain_flag_overrides(tmp_path):
    msg = tmp_path / "m.eml"
    msg.write_bytes(eml("From: x@acme.example\nTo: a@partner.example, b@acme.example"))
    doc = json.loads(
        run("check", str(msg), "--format", "json", "--internal-domain", "partner.example").output
    )
    assert doc["messages"][0]["recipients"]["visible_internal"] == 1
    assert doc["messages"][0]["recipients"]["visible_external"] == 1


def test_output_file(tmp_path):
    out = tmp_path / "report.sarif"
    result = run("check", TRACERS, "--format", "sarif", "--output", str(out))
    assert result.exit_code == 1
    assert result.output == ""
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"


def test_sarif_structure():
    doc = json.loads(run("check", TRACERS, PARTNER, "--format", "sarif").output)
    run0 = doc["runs"][0]
    rules = run0["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert "MG101" in ids and ids == sorted(ids)
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["help"]["markdown"]
        assert rule["defaultConfiguration"]["level"] in ("note", "warning", "error")
    results = run0["results"]
    assert {r["ruleId"] for r in results} == {"MG101", "MG102"}
    for r in results:
        assert ids[r["ruleIndex"]] == r["ruleId"]
        assert r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(".eml")
    assert run0["invocations"][0]["executionSuccessful"] is True


def test_rules_and_explain():
    listing = run("rules")
    assert listing.exit_code == 0
    assert "MG101" in listing.output and "exposed-external-parties" in listing.output
    by_name = run("explain", "exposed-external-parties")
    by_code = run("explain", "MG101")
    assert by_code.output == by_name.output
    for section in ("What it does", "Why it matters", "Example", "How to fix", "min_parties"):
        assert section in by_code.output
    assert run("explain", "MG999").exit_code == 2


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("mailguard ")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[rules.MG101]\nmin_partys = 3\n", "unknown option"),
        ("[rules.MG101]\nmin_parties = 'three'\n", "expected int"),
        ("[rules.MG101]\nmin_parties = 1\n", "at least 2"),
        ("[rules.MG999]\nenabled = false\n", "unknown rule"),
        ("internal_domain = ['x.example']\n", "unknown key"),
        ("[scoring]\nwarn_at = 80\nblock_at = 50\n", "warn_at <= block_at"),
        ("[limits]\nmax_addresses = -1\n", "non-negative"),
        ("this is not toml", "invalid TOML"),
    ],
)
def test_bad_config_exits_2(tmp_path, content, needle):
    cfg = tmp_path / "mailguard.toml"
    cfg.write_text(content)
    result = run("check", PARTNER, "--config", str(cfg))
    assert result.exit_code == 2
    assert needle in result.output


def test_usage_error_exits_2():
    assert run("check", PARTNER, "--format", "yaml").exit_code == 2
    assert run("check").exit_code == 2


# ------------------------------------------------------------------ config file errors

BAD_CONFIGS = {
    "non-utf8 mailguard.toml": ("mailguard.toml", b'internal_domains = ["caf\xe9.example"]\n'),
    "non-utf8 pyproject.toml": (
        "pyproject.toml",
        b'[tool.mailguard]\ninternal_domains = ["caf\xe9.example"]\n',
    ),
    "duplicate [tool.mailguard]": (
        "pyproject.toml",
        b'[tool.mailguard]\ninternal_domains = ["a.example"]\n[tool.mailguard]\nx = 1\n',
    ),
    "directory": ("mailguard.toml", None),
}


def _command(name: str, config: list[str]) -> list[str]:
    if name == "milter":
        return ["milter", "--listen", "inet:127.0.0.1:1", *config]
    return [name, PARTNER, *config]


@pytest.mark.parametrize("command", ["check", "scan", "milter"])
@pytest.mark.parametrize(
    ("case", "how"),
    # A directory named mailguard.toml is not a file to discover, only one to name.
    [(case, how) for case in sorted(BAD_CONFIGS) for how in ("discovered", "--config")
     if not (case == "directory" and how == "discovered")],
)  # fmt: skip
def test_config_file_errors_exit_2_with_the_path(tmp_path, monkeypatch, case, how, command):
    name, content = BAD_CONFIGS[case]
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    config = ["--config", str(path)] if how == "--config" else []
    result = run(*_command(command, config))
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert str(path) in result.output
    assert "Traceback" not in result.output


def test_milter_keeps_its_config_when_a_reload_finds_a_broken_file(tmp_path):
    from tests.support.milter_process import MilterProcess
    from tests.support.procs import free_ports

    (port,) = free_ports(1)
    with MilterProcess('internal_domains = ["a.example"]\n', inet_port=port) as milter:
        config = milter.dir / "mailguard.toml"
        config.write_bytes(b'internal_domains = ["caf\xe9.example"]\n')
        milter.proc.send_signal(signal.SIGHUP)
        line = _wait_for_line(milter, "reload failed")
        assert str(config) in line and "not UTF-8" in line
        assert milter.proc.poll() is None, "a bad file on reload must not stop the milter"
        config.write_text('internal_domains = ["b.example"]\n')
        milter.proc.send_signal(signal.SIGHUP)
        _wait_for_line(milter, "configuration reloaded")
        assert "Traceback" not in milter.log()


def _wait_for_line(milter, needle: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in milter.log().splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    pytest.fail(f"no {needle!r} in the milter's log:\n{milter.log()}")
