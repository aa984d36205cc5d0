"""Custom rules without forking: ``rule_paths`` loads a rule file and its check function
from a directory of the user's, and the rule runs everywhere the shipped ones do (check,
scan, the milter, ``rules``/``explain``/SARIF), scored by the engine from its metadata.
Nothing in ``mailguard/`` knows the rule; the last test says so."""

from __future__ import annotations

import json
import mailbox
import pickle
import re
import secrets
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard import config as config_mod
from mailguard.cli import app
from mailguard.commands.scan_run import run_scan
from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.errors import ConfigError
from mailguard.milter.decision import outcome_for, refusal_reason
from mailguard.milter.server import ListenSpec, MilterServer
from mailguard.milter.session import Capabilities
from mailguard.recipients import Envelope
from mailguard.services import Services
from tests.conftest import ROOT
from tests.support.custom_rule import (
    CODE,
    NAME,
    SENDER,
    WEIGHT,
    payslip_message,
    write_config,
    write_rule,
)
from tests.test_milter_session import feed_message, new_session

runner = CliRunner()


@pytest.fixture
def custom(tmp_path: Path) -> Path:
    """A project directory with ``mailguard.toml`` and ``rules/MG901.toml`` + checks."""
    write_rule(tmp_path / "rules")
    return write_config(tmp_path)


def test_api_check_runs_and_scores_the_custom_rule(custom: Path) -> None:
    cfg = config_mod.load(custom)
    report = Engine(cfg).check(payslip_message())
    (finding,) = [f for f in report.findings if f.code == CODE]
    assert finding.weight == WEIGHT and finding.evidence == {"mentions": 1}
    assert report.verdict == "block" and report.score == WEIGHT
    assert finding.tags == ("content", "custom")
    quiet = Engine(cfg).check(payslip_message().replace(b"PAYSLIP", b"letter"))
    assert quiet.verdict == "pass" and not quiet.findings


def test_the_rule_s_own_examples_hold(custom: Path) -> None:
    cfg = config_mod.load(custom)
    (rule,) = [r for r in cfg.catalog if r.code == CODE]
    engine = Engine(cfg)
    for example in rule.examples:
        data = example.message.replace("\n", "\r\n").encode()
        fired = any(f.code == CODE for f in engine.check(data).findings)
        assert fired == example.triggers, example.name


def test_scoring_comes_from_the_rule_file(custom: Path) -> None:
    cfg = config_mod.load(custom).with_overrides(rules={CODE: {"min_mentions": 2, "weight": 10}})
    engine = Engine(cfg)
    assert not engine.check(payslip_message()).findings  # one mention, min 2
    twice = payslip_message().replace(b"ready.", b"ready; payslip again.")
    (finding,) = engine.check(twice).findings
    assert finding.weight == 10 and finding.evidence == {"mentions": 2}


def test_cli_check_json_and_sarif(custom: Path) -> None:
    msg = custom.parent / "m.eml"
    msg.write_bytes(payslip_message())
    result = runner.invoke(app, ["check", "--config", str(custom), "-f", "json", str(msg)])
    assert result.exit_code == 1, result.output
    (entry,) = json.loads(result.stdout)["messages"]
    assert [f["code"] for f in entry["findings"]] == [CODE]
    assert entry["findings"][0]["tags"] == ["content", "custom"]
    result = runner.invoke(app, ["check", "--config", str(custom), "-f", "sarif", str(msg)])
    run = json.loads(result.stdout)["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert CODE in [r["id"] for r in rules]
    (res,) = run["results"]
    assert res["ruleId"] == CODE and rules[res["ruleIndex"]]["id"] == CODE


def test_config_is_discovered_for_rules_and_explain(custom: Path) -> None:
    # The autouse fixture runs tests from tmp_path, where the mailguard.toml is.
    assert custom.parent == Path.cwd()
    listing = runner.invoke(app, ["rules"])
    assert listing.exit_code == 0 and f"{CODE}  {NAME}" in listing.stdout
    explained = runner.invoke(app, ["explain", NAME])
    assert explained.exit_code == 0, explained.output
    assert "Reads: headers, body. Needs: no service." in explained.stdout
    assert "Remedy: none." in explained.stdout
    assert CODE not in runner.invoke(app, ["rules", "--no-config"]).stdout


def test_scan_of_an_mbox_reports_the_custom_rule(custom: Path, tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "Sent.mbox")
    box.add(payslip_message())
    box.add(payslip_message().replace(b"PAYSLIP", b"letter"))
    box.close()
    out = tmp_path / "register.json"
    code = run_scan(
        [str(tmp_path / "Sent.mbox")], config_mod.load(custom), fmt="json", output=out,
        jobs=2, since=None, until=None, redact=False, show_addresses=False, fail_on="warn",
    )  # fmt: skip
    assert code == 1
    register = json.loads(out.read_text())
    (incident,) = register["incidents"]
    assert [f["code"] for f in incident["findings"]] == [CODE]
    assert incident["score"] == WEIGHT
    # The register says which custom rule files judged it, as it does for the shipped ones.
    made = register["provenance"]
    assert list(made["rule_paths"]) == [str(tmp_path / "rules")]
    assert made["rule_paths"][str(tmp_path / "rules")].startswith("sha256:")
    assert CODE in made["enabled_rules"] and made["skipped_rules"] == {}
    assert made["sensitive"] == {"enabled": True, "categories": [], "extra_terms": []}


def test_imap_body_decision_follows_reads(custom: Path) -> None:
    """The scanner fetches a body when a rule that reads it could score: the custom rule
    reads the body and has no recipient gate, so every message needs its body."""
    head = payslip_message().split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert not Engine(Config()).needs_body(head)  # one party: no shipped rule can score
    assert Engine(config_mod.load(custom)).needs_body(head)
    off = Config(rules={CODE: {"enabled": False}}, rule_paths=config_mod.load(custom).rule_paths)
    assert not Engine(off).needs_body(head)


def test_milter_session_keeps_the_body_and_refuses_with_the_rule_s_wording(
    custom: Path,
) -> None:
    cfg = config_mod.load(custom)
    server = MilterServer(cfg, ListenSpec.parse("inet:127.0.0.1:0"), workers=1)
    try:
        assert server.keep_body
        session = new_session(server.settings)
        session.reload(server.settings, server.keep_body)
        head, body = payslip_message().split(b"\r\n\r\n", 1)
        headers = [tuple(line.decode().split(":", 1)) for line in head.split(b"\r\n")]
        step = feed_message(session, headers, body)  # type: ignore[arg-type]
        assert step.decide is not None
        txn = step.decide
        report = server.engine.check(
            txn.raw_message(session.caps.leading_space), envelope=txn.envelope
        )
        assert CODE in report.codes
        outcome = outcome_for(report, server.settings, Capabilities(0x1FF, 0), txn)
        assert outcome.action == "reject"
        assert SENDER in refusal_reason(report)
        assert any(SENDER.encode() in frame for frame in outcome.frames)
    finally:
        server.pool.shutdown()


def test_milter_keeps_no_body_when_no_rule_reads_it() -> None:
    body_readers = {
        r.code: {"enabled": False}
        for r in Config().catalog
        if {"body", "attachments"} & set(r.reads)
    }
    cfg = Config(rules=body_readers)
    server = MilterServer(cfg, ListenSpec.parse("inet:127.0.0.1:0"), workers=1)
    try:
        assert not server.keep_body
        session = new_session(server.settings)
        session.reload(server.settings, server.keep_body)
        step = feed_message(session, [("From", " a@b.example")], b"x" * 1000)
        assert step.decide is not None
        assert step.decide.body_bytes == 1000 and step.decide.body == b""
    finally:
        server.pool.shutdown()


def test_a_service_the_rule_needs_is_injected_or_the_rule_is_skipped(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", code="MG902", name="resolver-says", needs="dns")
    cfg = config_mod.load(write_config(tmp_path))
    message = payslip_message()

    report = Engine(cfg).check(message)
    assert "MG902" not in report.codes
    assert [(s.code, s.reason) for s in report.skipped] == [
        ("MG902", "needs dns, which is not configured")
    ]
    assert report.to_dict()["skipped"][0]["code"] == "MG902"
    text = runner.invoke(app, ["check", "-"], input=message).stdout
    assert "not run: MG902 resolver-says (needs dns, which is not configured)" in text

    class ThrowawayResolver:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def lookup(self, domain: str) -> str:
            self.asked.append(domain)
            return "no MX"

    resolver = ThrowawayResolver()
    report = Engine(cfg, services=Services(dns=resolver)).check(message)
    # (The shipped DNS rule notes that this resolver is not one it can use.)
    assert [s for s in report.skipped if s.code == "MG902"] == [] and "MG902" in report.codes
    assert resolver.asked == ["acme.example"]
    # Each engine has its own services: the first one still has none.
    assert Engine(cfg).check(message).skipped


def test_envelope_and_mode_reach_custom_checks_like_shipped_ones(custom: Path) -> None:
    report = Engine(config_mod.load(custom)).check(
        payslip_message(), envelope=Envelope("<hr@acme.example>", ("<a@one.example>",)),
        mode="archived",
    )  # fmt: skip
    assert report.codes == [CODE]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (('reads = ["headers", "body"]', 'reads = ["headers", "soul"]'), "'reads' must be among"),
        (("tags = [", 'needs = ["telepathy"]\ntags = ['), "'needs' must be among"),
        (("tags = [", 'remedy = "pray"\ntags = ['), "remedy must be one of"),
        (('min = "min_mentions"', 'min = "no_such_option"'), "no int option"),
        (('count = "mentions"', 'count = "recipients.shoe_size"'), "recipients has no count"),
    ],
)
def test_bad_metadata_is_refused_at_load(tmp_path: Path, change: tuple[str, str], complaint: str):
    rule_dir = write_rule(tmp_path / "rules")
    path = rule_dir / f"{CODE}.toml"
    text = path.read_text()
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError, match=complaint):
        config_mod.load(write_config(tmp_path))


def test_multi_line_sender_wording_is_refused(tmp_path: Path) -> None:
    rule_dir = write_rule(tmp_path / "rules")
    path = rule_dir / f"{CODE}.toml"
    path.write_text(path.read_text().replace(f'sender = "{SENDER}"', 'sender = """a\nb"""'))
    with pytest.raises(ConfigError, match=r"doc\.sender must be one line"):
        config_mod.load(write_config(tmp_path))


def test_a_clash_with_a_shipped_code_or_name_is_refused(tmp_path: Path) -> None:
    write_rule(tmp_path / "rules", code="MG101", name="something-else")
    with pytest.raises(ConfigError, match="MG101"):
        config_mod.load(write_config(tmp_path))


@pytest.mark.parametrize("name", ["json", "colorsys"])  # imported already / not yet
def test_a_check_module_may_not_shadow_an_importable_one(tmp_path: Path, name: str) -> None:
    rule_dir = write_rule(tmp_path / "rules")
    (rule_dir / f"{name}.py").write_text("def mentions(ctx, settings):\n    return []\n")
    path = rule_dir / f"{CODE}.toml"
    path.write_text(re.sub(r'check = ".*"', f'check = "{name}:mentions"', path.read_text()))
    with pytest.raises(ConfigError, match="cannot load check"):
        config_mod.load(write_config(tmp_path))
    module = sys.modules.get(name)
    assert module is None or not str(module.__file__).startswith(str(rule_dir))


def test_a_broken_custom_rule_is_a_clear_cli_error_not_a_traceback(tmp_path: Path) -> None:
    rule_dir = write_rule(tmp_path / "rules")
    path = rule_dir / f"{CODE}.toml"
    path.write_text(re.sub(r'check = ".*"', 'check = "nowhere_at_all:mentions"', path.read_text()))
    write_config(tmp_path)
    for args in (["check", "-"], ["rules"], ["explain", CODE]):
        result = runner.invoke(app, args, input=payslip_message())
        assert result.exit_code == 2, (args, result.output)
        assert "cannot load check 'nowhere_at_all:mentions'" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_rule_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        config_mod.load(write_config(tmp_path, "nowhere"))


def test_nothing_in_the_package_knows_the_custom_rule() -> None:
    for path in (ROOT / "mailguard").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".toml"):
            assert CODE not in path.read_text(encoding="utf-8"), path


def test_the_readme_s_writing_a_rule_example_works(tmp_path: Path) -> None:
    """The newcomer's page is a test: its rule file and function, copied as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Writing a rule", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(toml|python)\n(.*?)```", section, re.S)
    files = {}
    for _, body in blocks:
        first, _, rest = body.partition("\n")
        files[first.removeprefix("# ").strip()] = rest
    config_text = files.pop("mailguard.toml")
    unique = f"payroll_checks_{secrets.token_hex(4)}"  # a module name is process-wide
    for name, text in files.items():
        path = tmp_path / name.replace("payroll_checks", unique)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("payroll_checks", unique))
    (tmp_path / "mailguard.toml").write_text(config_text)
    cfg = config_mod.load(tmp_path / "mailguard.toml")
    report = Engine(cfg).check(payslip_message())
    assert report.codes == ["MG901"] and report.verdict == "block"
    assert "HR portal" in refusal_reason(report)


def test_a_config_with_custom_rules_survives_pickling(custom: Path) -> None:
    """A spawned scan worker gets the config pickled: the resolved check function is left
    out and resolved again from the rule file's directory."""
    cfg = config_mod.load(custom)
    Engine(cfg)  # resolves every check
    copy = pickle.loads(pickle.dumps(cfg))
    (rule,) = [r for r in copy.catalog if r.code == CODE]
    assert "check" not in vars(rule)
    assert Engine(copy).check(payslip_message()).codes == [CODE]
