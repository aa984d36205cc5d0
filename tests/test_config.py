"""Configuration discovery, precedence and strictness."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mailguard
from mailguard import config as config_mod
from mailguard import configfile
from mailguard.commands.settings import ConfigSource, load_settings
from mailguard.errors import ConfigError
from tests.conftest import ROOT, eml

TWELVE_ORGS = eml(
    "From: p@buyer.example\nTo: " + ", ".join(f"c{i}@org{i}.example" for i in range(12))
)


def test_defaults_without_any_file(tmp_path):
    assert config_mod.discover(tmp_path) is None
    cfg = config_mod.load(search_from=tmp_path)
    assert cfg.internal_domains == ()
    assert cfg.scoring.warn_at == 30 and cfg.scoring.block_at == 70


def test_mailguard_toml_found_upward(tmp_path):
    (tmp_path / "mailguard.toml").write_text('internal_domains = ["acme.example"]\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert config_mod.discover(deep) == tmp_path / "mailguard.toml"
    assert config_mod.load(search_from=deep).internal_domains == ("acme.example",)


def test_pyproject_tool_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.mailguard.rules.MG101]\nmin_parties = 3\n'
    )
    cfg = config_mod.load(search_from=tmp_path)
    assert cfg.rule_settings["MG101"].options["min_parties"] == 3


def test_pyproject_without_table_is_skipped(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert config_mod.discover(tmp_path) is None


def test_nearest_file_wins(tmp_path):
    (tmp_path / "mailguard.toml").write_text('internal_domains = ["outer.example"]\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "mailguard.toml").write_text('internal_domains = ["inner.example"]\n')
    assert config_mod.load(search_from=inner).internal_domains == ("inner.example",)


def test_rule_by_name_and_code_cannot_both_be_set():
    with pytest.raises(ConfigError, match="configured twice"):
        config_mod.from_mapping({"rules": {"MG101": {}, "exposed-external-parties": {}}})


def test_rule_options_change_decisions():
    assert mailguard.check(TWELVE_ORGS).verdict == "warn"
    strict = config_mod.from_mapping({"rules": {"MG101": {"mass_parties": 12}}})
    assert mailguard.check(TWELVE_ORGS, config=strict).verdict == "block"
    off = config_mod.from_mapping({"rules": {"exposed-external-parties": {"enabled": False}}})
    assert mailguard.check(TWELVE_ORGS, config=off).verdict == "pass"


def test_severity_and_weight_overrides():
    cfg = config_mod.from_mapping({"rules": {"MG101": {"severity": "critical", "weight": 75}}})
    finding = mailguard.check(TWELVE_ORGS, config=cfg).findings[0]
    assert finding.severity == "critical"
    assert finding.weight == 75  # 75 at 10 parties; 12 parties ramp by 5*2/40 (rounds away)


def test_scoring_thresholds():
    cfg = config_mod.from_mapping({"scoring": {"warn_at": 10, "block_at": 40}})
    report = mailguard.check(TWELVE_ORGS, config=cfg)
    assert report.score == 42 and report.verdict == "block"


def test_mailing_list_patterns():
    data = eml("From: a@one.example\nTo: news@lists.big.example, x@two.example, y@three.example")
    cfg = config_mod.from_mapping(
        {"mailing_lists": ["*@lists.big.example"], "rules": {"MG101": {"min_parties": 2}}}
    )
    base = config_mod.from_mapping({"rules": {"MG101": {"min_parties": 2}}})
    assert mailguard.check(data, config=base).recipients["exposed_parties"] == 3
    listed = mailguard.check(data, config=cfg)
    assert listed.recipients["exposed_parties"] == 2
    assert listed.recipients["mailing_lists"] == 1
    assert listed.recipients["visible"] == 3


def test_personal_domains_replace_and_extend():
    data = eml("From: a@club.example\nTo: p@gmail.com, q@myisp.example")
    assert mailguard.check(data).recipients["personal"] == 1
    extended = config_mod.from_mapping({"extra_personal_domains": ["myisp.example"]})
    assert mailguard.check(data, config=extended).recipients["personal"] == 2
    replaced = config_mod.from_mapping({"personal_domains": ["myisp.example"]})
    assert mailguard.check(data, config=replaced).recipients["personal"] == 1
    assert mailguard.check(data, config=replaced).exposed()[0].kind == "organisation"


@pytest.mark.parametrize(
    "mapping",
    [
        {"internal_domains": "acme.example"},
        {"internal_domains": [1]},
        {"rules": {"MG101": {"enabled": "yes"}}},
        {"rules": {"MG101": {"weight": 101}}},
        {"rules": {"MG101": {"severity": "severe"}}},
        {"rules": {"MG301": {"extra_terms": "x"}}},
        {"rules": {"MG101": {"min_parties": True}}},
        {"rules": {"MG101": 3}},
        {"scoring": {"warn_at": "30"}},
        {"limits": {"max_depth": 3}},
    ],
)
def test_wrong_types_are_errors(mapping):
    with pytest.raises(ConfigError):
        config_mod.from_mapping(mapping)


# ---------------------------------------------------------------- errors of config files
#
# Every way a config file can be wrong is a ConfigError naming the file (the CLI turns it
# into exit status 2), never a traceback and never a silent fall-back to the defaults.

LATIN1 = 'internal_domains = ["caf\xe9.example"]\n'.encode("latin-1")


@pytest.mark.parametrize("name", ["mailguard.toml", "pyproject.toml"])
def test_non_utf8_file_is_a_config_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    body = LATIN1 if name == "mailguard.toml" else b"[tool.mailguard]\n" + LATIN1
    path.write_bytes(body)
    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        config_mod.load_file(path)
    assert str(path) in str(caught.value)
    assert "line 2" in str(caught.value) or name == "mailguard.toml"
    # Found by discovery, the same file is the same error (not a skipped file).
    with pytest.raises(ConfigError, match="not UTF-8"):
        config_mod.load(search_from=tmp_path)


def test_pyproject_with_invalid_toml_in_its_mailguard_table_is_an_error(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text(
        '[project]\nname = "x"\n\n[tool.mailguard]\ninternal_domains = ["a.example"]\n\n'
        "[tool.mailguard]\nwarn_at = 3\n"
    )
    with pytest.raises(ConfigError, match="invalid TOML") as caught:
        config_mod.load(search_from=tmp_path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "header",
    ["[tool.mailguard]", "[ tool . mailguard ]", '[tool."mailguard"]', "[tool.mailguard.rules]"],
)
def test_every_spelling_of_the_table_counts_when_the_toml_is_broken(tmp_path, header):
    (tmp_path / "pyproject.toml").write_text(f"{header}\nx = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config_mod.load(search_from=tmp_path)


def test_broken_pyproject_without_our_table_is_ignored_at_debug_level(tmp_path, caplog):
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n[project]\n')
    with caplog.at_level("DEBUG", logger="mailguard.config"):
        assert config_mod.discover(tmp_path) is None
    assert any(
        r.levelname == "DEBUG" and str(path) in r.getMessage() and "ignor" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    path.write_bytes(b'[project]\nname = "caf\xe9"\n')
    caplog.clear()
    with caplog.at_level("DEBUG", logger="mailguard.config"):
        assert config_mod.discover(tmp_path) is None
    assert str(path) in caplog.text


def test_named_pyproject_without_our_table_is_an_error(tmp_path):
    """``--config pyproject.toml`` asks for settings; none there must not mean defaults."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"no \[tool.mailguard\] table"):
        config_mod.load(path)


@pytest.mark.parametrize(
    "text",
    ["tool = 3\n", "[tool]\nmailguard = 3\n", "[tool]\nmailguard = [1, 2]\n"],
)
def test_pyproject_tool_tables_of_the_wrong_type(tmp_path, text):
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config_mod.load_file(path)
    assert str(path) in str(caught.value)


def test_directory_as_config_file(tmp_path):
    with pytest.raises(ConfigError, match="Is a directory") as caught:
        config_mod.load(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_missing_config_file_says_why(tmp_path):
    with pytest.raises(ConfigError, match="No such file or directory"):
        config_mod.load(tmp_path / "nope.toml")


def test_unreadable_config_file_as_another_user(tmp_path):
    """Run as root (the suite's usual case) by dropping to nobody in a child process."""
    path = tmp_path / "mailguard.toml"
    path.write_text("")
    path.chmod(0o600)
    tmp_path.chmod(0o755)
    code = (
        "import os\n"
        "from pathlib import Path\n"
        "from mailguard import config\n"
        "from mailguard.errors import ConfigError\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        f"    config.load(Path({str(path)!r}))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"cannot read config {path}: Permission denied" in out.stdout


def test_fifo_or_device_as_config_never_hangs(tmp_path):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ConfigError, match="not a regular file"):
            config_mod.load(path)


def test_oversized_config_file(tmp_path):
    path = tmp_path / "mailguard.toml"
    path.write_text("# " + "x" * (config_mod.MAX_CONFIG_BYTES + 10) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        config_mod.load(path)


def test_unsearchable_directory_during_discovery(tmp_path):
    """Discovery stats files in every parent; a refused stat is an error, not a traceback."""
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    tmp_path.chmod(0o755)
    locked.chmod(0o700)
    code = (
        "import os\n"
        "from pathlib import Path\n"
        "from mailguard import config\n"
        "from mailguard.errors import ConfigError\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        f"    print('found', config.discover(Path({str(locked / 'inner')!r})))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Permission denied" in out.stdout and str(locked) in out.stdout, out.stdout


@pytest.mark.parametrize(
    "text",
    [
        "[scoring]\nwarn_at = nan\n",
        "[scoring]\nwarn_at = inf\n",
        "[scoring]\nwarn_at = 1e400\n",
        "[rules.MG101]\nmin_parties = nan\n",
        "[milter]\ndecision_timeout = nan\n",
        "[milter]\non_block = []\n",
        '[milter]\noutgoing_networks = ["10.0.0.0/33"]\n',
        "rules = 3\n",
        "[rules]\nMG999 = {}\n",
        '[rules.""]\n',
    ],
)
def test_odd_values_are_config_errors(tmp_path, text):
    """Through the loader every command uses: each section is validated by its owner."""
    path = tmp_path / "mailguard.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(ConfigSource(path))
    assert str(path) in str(caught.value)


# What tomllib can hand over: tables, arrays, strings, integers, floats (nan, inf), booleans.
_scalars = st.one_of(
    st.text(max_size=12), st.integers(), st.floats(), st.booleans(),
    st.sampled_from(["MG101", "exposed-external-parties", "monitor", "reject", "10.0.0.0/8"]),
)  # fmt: skip
_keys = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["internal_domains", "scoring", "limits", "rules", "milter", "MG101", "MG301",
         "warn_at", "block_at", "enabled", "weight", "severity", "min_parties", "mode",
         "max_addresses", "on_block", "outgoing_networks", "decision_timeout", "tool",
         "mailguard"]
    ),
)  # fmt: skip
_toml_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _toml_values, max_size=5))
def test_any_parsed_toml_is_a_config_or_a_config_error(data):
    with contextlib.suppress(ConfigError):
        config_mod.from_mapping(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_in_a_config_file_are_a_config_or_a_config_error(tmp_path_factory, raw):
    base = tmp_path_factory.mktemp("cfg")
    for name, prefix in (("mailguard.toml", b""), ("pyproject.toml", b"[tool.mailguard]\n")):
        path = base / name
        path.write_bytes(prefix + raw)
        try:
            config_mod.load_file(path)
        except ConfigError as exc:
            assert str(path) in str(exc)


@pytest.mark.parametrize("name", ["internal_domains", "mailing_lists", "personal_domains"])
def test_api_config_refuses_one_string_for_a_list(name):
    with pytest.raises(ConfigError, match=name):
        mailguard.Config(**{name: "example.org"})


def test_example_milter_config_starts_in_monitor_mode_and_shows_the_defaults():
    """The README says: start in monitor mode. The example file a newcomer copies must too,
    and every other key it sets must be the default it claims to show."""
    from mailguard.milter.settings import MilterSettings

    loaded = load_settings(ConfigSource(ROOT / "examples" / "milter" / "mailguard.toml"))
    cfg = loaded.config
    assert loaded.milter.mode == "monitor"
    defaults = config_mod.Config()
    assert cfg.scoring == defaults.scoring
    assert cfg.limits == defaults.limits
    assert replace(loaded.milter, mode="enforce") == MilterSettings()


# ---------------------------------------------------------------- the Python API


def test_load_config_is_exported_and_changes_the_verdict_through_the_api(tmp_path):
    """The CLI reads config files; the library does not unless asked via load_config()."""
    assert "load_config" in mailguard.__all__
    (tmp_path / "mailguard.toml").write_text("[rules.MG101]\nmass_parties = 12\n")
    # The suite runs each test from tmp_path: the file is in the current directory.
    assert mailguard.check(TWELVE_ORGS).verdict == "warn"
    assert mailguard.check(TWELVE_ORGS, config=mailguard.load_config()).verdict == "block"
    named = mailguard.load_config(str(tmp_path / "mailguard.toml"))  # a str path works too
    assert mailguard.Engine(named).check(TWELVE_ORGS).verdict == "block"
    assert mailguard.load_config(search_from=str(tmp_path)).source == tmp_path / "mailguard.toml"


def test_discovery_passes_over_a_pyproject_whose_tool_is_not_a_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text("tool = 3\n")
    assert config_mod.discover(tmp_path) is None


# ---------------------------------------------------------------- sections and owners
#
# The file layer reads; each section's owner validates it. The decision config (what
# ``mailguard.Config`` holds) never sees ``[milter]``; every command's loader does.

MILTER_TOML = '[milter]\nmode = "monitor"\nmax_connections = 7\n'


def test_config_holds_decision_settings_only():
    from dataclasses import fields

    names = {f.name for f in fields(config_mod.Config)}
    assert "milter" not in names
    with pytest.raises(TypeError):
        config_mod.Config(milter=None)  # type: ignore[call-arg]


def test_config_module_does_not_load_the_milter():
    """Importing the decision config (and the library) must not pull in the mail server."""
    code = (
        "import sys, mailguard, mailguard.config\n"
        "print(sorted(m for m in sys.modules if m.startswith('mailguard.milter')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout


def test_one_file_two_owners(tmp_path):
    path = tmp_path / "mailguard.toml"
    path.write_text('internal_domains = ["acme.example"]\n' + MILTER_TOML)
    loaded = load_settings(ConfigSource(path))
    assert loaded.config.internal_domains == ("acme.example",)
    assert loaded.config.source == path
    assert (loaded.milter.mode, loaded.milter.max_connections) == ("monitor", 7)
    # The library's loader reads the same file and keeps the decision part.
    assert mailguard.load_config(path) == loaded.config


def test_milter_section_is_validated_by_its_owner_not_by_the_decision_config(tmp_path):
    path = tmp_path / "mailguard.toml"
    path.write_text('[milter]\non_block = "shrug"\n')
    assert mailguard.load_config(path).internal_domains == ()  # not the library's business
    with pytest.raises(ConfigError, match=re.escape(f"{path}: milter.on_block: expected one of")):
        load_settings(ConfigSource(path))
    path.write_text("milter = 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: milter must be a table")):
        load_settings(ConfigSource(path))


@pytest.mark.parametrize("load", ["library", "commands"])
def test_unknown_top_level_keys_are_refused_by_every_loader(tmp_path, load):
    path = tmp_path / "mailguard.toml"
    path.write_text("[miltr]\nmode = 'monitor'\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['miltr'\]") as caught:
        if load == "library":
            mailguard.load_config(path)
        else:
            load_settings(ConfigSource(path))
    assert str(path) in str(caught.value)
    assert "'milter'" in str(caught.value)  # the known keys include every owner's section


def test_scoring_and_limits_sections_are_validated_by_their_owners():
    from mailguard.limits import Limits
    from mailguard.scoring import Scoring

    assert Scoring.from_mapping({"warn_at": 5}, "f.toml") == Scoring(warn_at=5)
    assert Limits.from_mapping({"max_mime_parts": 9}).max_mime_parts == 9
    with pytest.raises(ConfigError, match=r"^f.toml: scoring: need 0 <= warn_at <= block_at"):
        Scoring.from_mapping({"warn_at": 80, "block_at": 10}, "f.toml")
    with pytest.raises(ConfigError, match=r"^f.toml: limits.max_depth|^f.toml: limits: unknown"):
        Limits.from_mapping({"max_depth": 3}, "f.toml")
    with pytest.raises(ConfigError, match=r"^config: scoring: need 0"):
        config_mod.from_mapping({"scoring": {"warn_at": 80, "block_at": 10}})
    with pytest.raises(ConfigError, match="scoring: need 0"):
        mailguard.Scoring(warn_at=80, block_at=10)  # the API refuses it too


def test_flags_go_on_top_of_the_file(tmp_path):
    path = tmp_path / "mailguard.toml"
    path.write_text('internal_domains = ["file.example"]\n' + MILTER_TOML)
    source = ConfigSource(path, internal_domains=("flag.example",), milter_mode="enforce")
    loaded = load_settings(source)
    assert loaded.config.internal_domains == ("flag.example",)
    assert (loaded.milter.mode, loaded.milter.max_connections) == ("enforce", 7)
    assert load_settings(ConfigSource(path, no_config=True)).config == config_mod.Config()


def test_reload_reads_the_file_found_at_start_again(tmp_path, monkeypatch):
    """The milter's SIGHUP reload: the same file, read anew, through the same loader."""
    (tmp_path / "mailguard.toml").write_text(MILTER_TOML)
    monkeypatch.chdir(tmp_path)
    reload = ConfigSource().loader()
    assert reload().milter.max_connections == 7
    (tmp_path / "mailguard.toml").write_text("[milter]\nmax_connections = 8\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a reload does not search again from a new directory
    assert reload().milter.max_connections == 8
    (tmp_path / "mailguard.toml").write_text("[milter]\nmax_connections = 0\n")
    with pytest.raises(ConfigError, match="max_connections"):
        reload()


def test_file_layer_keeps_its_old_names_in_the_config_module():
    """Scripts that used ``mailguard.config.discover`` & co. keep working."""
    assert config_mod.discover is configfile.discover
    assert config_mod.MAX_CONFIG_BYTES == configfile.MAX_CONFIG_BYTES
    assert config_mod.CONFIG_FILE == "mailguard.toml"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("@example.org", "write the domain without '@': 'example.org'"),
        ("*.example.org", "subdomains are included already: write 'example.org'"),
        ("hr@example.org", "an address, not a domain"),
        ("", "an empty domain"),
        ("exa mple.org", "not a domain name"),
        ("exam\x00ple.org", "not a domain name"),
    ],
)
@pytest.mark.parametrize(
    "key", ["internal_domains", "personal_domains", "extra_personal_domains", "partner_domains"]
)
def test_a_domain_list_entry_that_can_never_match_is_a_config_error(
    key: str, entry: str, says: str
) -> None:
    """It would otherwise match nothing, silently: every colleague an outside party."""
    with pytest.raises(ConfigError, match=re.escape(f"{key}: {entry!r}: {says}")):
        config_mod.from_mapping({key: [entry]})


@pytest.mark.parametrize("entry", ["example.org", "EXAMPLE.ORG.", "bücher.example", "[10.0.0.1]"])
def test_domain_list_entries_in_any_valid_spelling_are_accepted(entry: str) -> None:
    assert config_mod.from_mapping({"internal_domains": [entry]}).internal_domains == (entry,)
