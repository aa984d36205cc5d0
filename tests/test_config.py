"""Configuration discovery, precedence and strictness."""

from __future__ import annotations

import pytest

import mailguard
from mailguard import config as config_mod
from mailguard.errors import ConfigError
from tests.conftest import eml

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
