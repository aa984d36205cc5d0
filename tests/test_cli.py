"""The command line as a user drives it: exit codes, formats, inputs, privacy."""

from __future__ import annotations

import json
import re
import signal
import time
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mailguard
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
    # An input error with the OS reason, on stderr and in the report (a pipeline keeping
    # only the report must see it), and the other file is still judged.
    assert result.stderr == "mailguard: cannot read /nonexistent/x.eml: No such file or directory\n"
    doc = json.loads(result.stdout)
    missing, other = doc["messages"]
    assert other["verdict"] == "pass"
    assert missing["source"] == "/nonexistent/x.eml" and missing["verdict"] == "error"
    assert missing["findings"][0]["message"] == (
        "message could not be checked: cannot read: No such file or directory"
    )
    assert doc["summary"]["error"] == 1


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


# ------------------------------------------------------------------ help and usage

COMMANDS = [[], ["check"], ["scan"], ["milter"], ["rules"], ["explain"]]
# What some typer versions print instead of a normal CLI's help: type names in angle
# brackets, arguments in braces, pydantic's "Value error, " prefix.
ARTEFACTS = re.compile(r"<(?:bool|str|int|float|path|list\[[^\]]*\])>|\{\w+\}|Value error")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mailguard")
@pytest.mark.parametrize("columns", ["200", "80", "40"])
def test_help_reads_like_a_normal_cli(command, columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)
    result = runner.invoke(app, [*command, "--help"], terminal_width=int(columns))
    assert result.exit_code == 0, result.output
    assert not ARTEFACTS.search(result.output), result.output
    # Argument help is shown (typer below 0.26 with click 8.2+ dropped it).
    words = " ".join(result.output.split())
    if command == ["check"] and columns != "40":
        assert "PATHS..." in words and "folders (searched recursively)" in words
    if command == ["scan"] and columns != "40":
        assert "SOURCES..." in words and "mbox files, Maildirs" in words


def test_help_paragraphs_are_not_broken_mid_sentence(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["scan", "--help"], terminal_width=200)
    lines = [line.strip() for line in result.output.splitlines()]
    assert any(line.startswith("2 a source or message could not be read") for line in lines), (
        result.output
    )


@pytest.mark.parametrize(
    "args",
    [
        ["check", PARTNER, "--format", "xml"],
        ["scan", PARTNER, "--format", "xml"],
        ["scan", PARTNER, "--jobs", "many"],
        ["check", PARTNER, "--fail-on", "never"],
    ],
)
def test_usage_errors_read_like_a_normal_cli(args):
    result = run(*args)
    assert result.exit_code == 2
    assert "Invalid value" in result.output
    assert not ARTEFACTS.search(result.output), result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mailguard")
def test_h_is_help(command):
    assert run(*command, "-h").output == run(*command, "--help").output


def test_version_short_option():
    long, short = run("--version"), run("-V")
    assert short.exit_code == 0 and short.output == long.output
    assert short.output.startswith("mailguard ")


# ------------------------------------------------------------------ text output


def _reports(*paths: str):
    from mailguard.engine import Engine

    engine = Engine(mailguard.Config())
    return [engine.check(Path(p).read_bytes(), source=Path(p).name[:2]) for p in paths]


def test_wrapped_lines_keep_their_indent_on_a_narrow_terminal(monkeypatch):
    from mailguard.outputs import RenderOptions
    from mailguard.outputs.text import render_text

    monkeypatch.setenv("COLUMNS", "40")
    out = render_text(_reports(TRACERS, SPORTS), RenderOptions(), color=True)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines()
    assert max(len(line) for line in lines) <= 40
    body = [
        line for line in lines if not re.match(r"(BLOCK|WARN|PASS|ERROR)\s|\d+ messages? ", line)
    ]
    assert len(body) > 12, "the findings must have wrapped at 40 columns"
    assert all(line.startswith("      ") for line in body), "\n".join(lines)
    # The words survive the wrapping.
    assert "how to fix: Put the recipients in Bcc" in " ".join(" ".join(lines).split())


def test_piped_text_is_not_wrapped(monkeypatch):
    from mailguard.outputs import RenderOptions
    from mailguard.outputs.text import render_text

    monkeypatch.setenv("COLUMNS", "40")
    out = render_text(_reports(TRACERS), RenderOptions(), color=False)
    assert any(len(line) > 100 for line in out.splitlines())
    assert all(line.startswith("      ") for line in out.splitlines()[1:-1])


@pytest.mark.parametrize(("n", "noun"), [(1, "1 message checked"), (2, "2 messages checked")])
def test_summary_line_agrees_in_number(n, noun):
    result = run("check", *[PARTNER] * n)
    assert result.output.splitlines()[-1].startswith(noun + ":"), result.output


def test_quiet_check_shows_only_problems_and_the_summary():
    loud = run("check", TRACERS, PARTNER, SPORTS)
    quiet = run("check", "-q", TRACERS, PARTNER, SPORTS)
    assert quiet.exit_code == loud.exit_code == 1
    assert "07-partner-company.eml" in loud.output
    assert "07-partner-company.eml" not in quiet.output
    assert "01-contact-tracers-cc.eml" in quiet.output and "08-sports" in quiet.output
    assert quiet.output.splitlines()[-1] == "3 messages checked: 1 block, 1 warn, 1 pass"
    assert run("check", "--quiet", PARTNER).output == "1 message checked: 1 pass\n"


def test_quiet_scan_has_no_progress_and_keeps_the_register(tmp_path, monkeypatch):
    import mailguard.commands.scan_run as command

    seen: list[bool] = []
    real = command._progress_bar

    def spy(total):
        seen.append(True)
        return real(total)

    monkeypatch.setattr(command, "_progress_bar", spy)
    loud = run("scan", str(EXAMPLES))
    assert seen, "the progress bar is asked for without --quiet"
    seen.clear()
    quiet = run("scan", "-q", str(EXAMPLES))
    assert not seen
    assert quiet.exit_code == loud.exit_code == 1
    assert quiet.output.count("BLOCK ") == loud.output.count("BLOCK ") > 0


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("register.html", lambda t: t.lstrip().lower().startswith("<!doctype html")),
        ("REGISTER.HTM", lambda t: t.lstrip().lower().startswith("<!doctype html")),
        ("register.json", lambda t: "incidents" in json.loads(t)),
        ("register.csv", lambda t: t.splitlines()[0].count(",") > 3),
        ("register.txt", lambda t: "messages scanned" in t and not t.startswith("<")),
    ],
)
def test_scan_output_format_follows_the_file_extension(tmp_path, name, check):
    out = tmp_path / name
    result = run("scan", str(EXAMPLES), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert check(out.read_text()), out.read_text()[:300]


def test_explicit_format_wins_over_the_extension(tmp_path):
    out = tmp_path / "register.html"
    run("scan", str(EXAMPLES), "-o", str(out), "--format", "json")
    assert "incidents" in json.loads(out.read_text())


@pytest.mark.parametrize(("name", "key"), [("report.json", "messages"), ("report.sarif", "runs")])
def test_check_output_format_follows_the_file_extension(tmp_path, name, key):
    out = tmp_path / name
    run("check", TRACERS, "-o", str(out))
    assert key in json.loads(out.read_text())


def test_scan_summary_agrees_in_number(tmp_path):
    one = run("scan", TRACERS)
    assert "1 message scanned" in one.output and ": 1 incident (1 block" in one.output
    two = run("scan", TRACERS, SPORTS)
    assert "2 messages scanned" in two.output and ": 2 incidents (" in two.output
    (tmp_path / "m.eml").write_bytes(
        eml("From: a@club.example\nTo: x@gmail.com, y@partner.example\nSubject: hi")
    )
    pair = run("scan", str(tmp_path / "m.eml"), "--fail-on", "block")
    assert "1 message scanned" in pair.output and "0 incidents" in pair.output, pair.output


def test_readme_python_and_config_examples_run(tmp_path):
    """A newcomer pastes the README's Python and its mailguard.toml: both must work."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(\w*)\n(.*?)```", readme, re.S)
    python = [body for lang, body in blocks if lang == "python"]
    toml = [body for lang, body in blocks if lang == "toml"]
    assert len(python) >= 2 and "load_config" in "".join(python)
    (tmp_path / "mailout.eml").write_bytes(Path(TRACERS).read_bytes())
    settings = next(body for body in toml if "internal_domains" in body)  # not a rule file
    (tmp_path / "mailguard.toml").write_text(settings, encoding="utf-8")
    for directory in tomllib.loads(settings).get("rule_paths", []):
        (tmp_path / directory).mkdir()  # the reader's own rules folder, empty here
    namespace: dict[str, object] = {}
    exec(compile("\n".join(python), "README.md", "exec"), namespace)
    config = namespace["config"]
    assert isinstance(config, mailguard.Config)
    assert config.source == tmp_path / "mailguard.toml"
    assert config.internal_domains  # the README's example settings were read


# ------------------------------------------------------------------ the commands layer
#
# cli.py parses options; mailguard.commands does the work, callable without a parser.


def test_check_command_runs_without_the_cli(tmp_path, capsys):
    from mailguard.commands.check import run_check
    from mailguard.commands.settings import ConfigSource

    out = tmp_path / "report.json"
    assert run_check([TRACERS, PARTNER], ConfigSource(no_config=True), output=out) == 1
    doc = json.loads(out.read_text())
    assert [m["verdict"] for m in doc["messages"]] == ["block", "pass"]
    assert run_check([PARTNER], fail_on="warn") == 0
    assert capsys.readouterr().out.startswith("PASS")
    (tmp_path / "mailguard.toml").write_text('[milter]\nmode = "shrug"\n')
    with pytest.raises(mailguard.ConfigError, match=r"milter\.mode"):
        run_check([PARTNER])  # the one loader: every section is validated


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"since": "2024-13-01"}, "--since: expected a date"),
        ({"since": "2024-02-01", "until": "2024-01-01"}, "--since is after --until"),
        ({"jobs": 0}, "--jobs must be at least 1"),
    ],
)
def test_scan_command_refuses_bad_options_before_reading_anything(tmp_path, kwargs, needle):
    from mailguard.commands import CommandError
    from mailguard.commands.scan import run_scan

    (tmp_path / "mailguard.toml").write_text("not toml at all")  # would fail if read first
    with pytest.raises(CommandError, match=needle):
        run_scan([str(tmp_path)], **kwargs)


def test_explain_renderer_lives_in_the_commands_layer():
    import mailguard.cli as cli
    from mailguard.commands.rules import explain, rules_table

    assert not hasattr(cli, "explain_text")
    assert run("explain", "MG101").output == explain("exposed-external-parties") + "\n"
    assert run("rules").output == "\n".join(rules_table()) + "\n"
    with pytest.raises(mailguard.ConfigError):
        explain("MG999")


def test_cli_holds_no_logic_of_its_own():
    """cli.py and its parts (cli_*.py) reach the library only through mailguard.commands."""
    from tests.test_architecture_layers import PACKAGE, imports_of

    files = sorted(PACKAGE.glob("cli*.py"))
    assert len(files) >= 3, files
    allowed = {"mailguard", "mailguard.errors", "mailguard.scoring"}
    for path in files:
        used = imports_of(path.read_text(encoding="utf-8"), f"mailguard.{path.stem}")
        others = {m for m in used if not m.startswith(("mailguard.commands", "mailguard.cli"))}
        assert others <= allowed, (path.name, used)
