"""Rule metadata as the rest of the system reads it: vocabularies, the [scoring] table,
the [sensitive] provider and the service seam."""

from __future__ import annotations

import dataclasses

import pytest

from mailguard import Engine, check
from mailguard.config import Config, from_mapping
from mailguard.errors import ConfigError
from mailguard.milter.decision import refusal_reason
from mailguard.report import EMPTY_RECIPIENTS
from mailguard.rules import (
    READS,
    RECIPIENT_COUNTS,
    REMEDIES,
    SERVICES,
    TAG_ENGINE_ERROR,
    TAG_PARTIAL,
    TAG_SENSITIVE,
    ScoringSpec,
    load_rules,
)
from mailguard.scoring import gate, gate_open, points
from mailguard.services import Services
from tests.conftest import eml

RULES = load_rules()


def test_services_fields_are_the_vocabulary() -> None:
    assert tuple(f.name for f in dataclasses.fields(Services)) == SERVICES


def test_recipient_counts_are_in_the_summary() -> None:
    assert set(RECIPIENT_COUNTS) <= set(EMPTY_RECIPIENTS) | {
        "exposed_parties", "mailing_lists", "invalid_entries", "envelope_recipients",
        "envelope_recipients_visible",
    }  # fmt: skip
    summary = check(eml("From: a@b.example\nTo: c@d.example")).recipients
    assert set(RECIPIENT_COUNTS) <= set(summary)


def test_shipped_rules_declare_what_they_read_and_use_known_words() -> None:
    for rule in RULES:
        assert rule.reads and set(rule.reads) <= set(READS), rule.code
        assert set(rule.needs) <= set(SERVICES), rule.code
        assert rule.remedy is None or rule.remedy in REMEDIES, rule.code
        assert "\n" not in rule.sender, rule.code
    tagged = {tag: [r.code for r in RULES if tag in r.tags] for tag in
              (TAG_ENGINE_ERROR, TAG_PARTIAL, TAG_SENSITIVE)}  # fmt: skip
    assert all(len(codes) == 1 for codes in tagged.values()), tagged


def test_every_rule_with_a_remedy_or_a_reply_line_is_one_a_sender_understands() -> None:
    assert {r.remedy for r in RULES if r.remedy} == set(REMEDIES)
    assert all(len(r.sender) <= 200 for r in RULES)


# ------------------------------------------------------------------ scoring


SPEC = ScoringSpec("n", "low", "high", "top")
OPTIONS = {"low": 10, "high": 50, "top": 80}


@pytest.mark.parametrize(
    ("n", "expected"), [(9, None), (10, 40), (12, 42), (30, 60), (50, 80), (500, 80)]
)
def test_points_ramp_from_weight_at_min_to_mass_weight(n: int, expected: int | None) -> None:
    assert points(SPEC, 40, OPTIONS, {"n": n}, {}) == expected


def test_points_threshold_only_and_evidence_references() -> None:
    spec = ScoringSpec("n", "evidence.threshold")
    assert points(spec, 7, {}, {"n": 3, "threshold": 3}, {}) == 7
    assert points(spec, 7, {}, {"n": 2, "threshold": 3}, {}) is None
    assert points(None, 7, {}, {}, {}) == 7  # no [scoring]: the rule's weight


def test_a_ramp_worth_nothing_is_no_finding() -> None:
    assert points(SPEC, 0, OPTIONS, {"n": 10}, {}) is None


def test_the_gate_reads_recipient_counts_and_the_lowest_floor() -> None:
    spec = ScoringSpec("recipients.exposed_parties", "evidence.t", floor=("a", "b"))
    assert gate(spec, {"a": 10, "b": 2}) == ("exposed_parties", 2)
    assert not gate_open(gate(spec, {"a": 10, "b": 2}), {"exposed_parties": 1})
    assert gate_open(gate(spec, {"a": 10, "b": 2}), {"exposed_parties": 2})
    assert gate(ScoringSpec("n", 5), {}) is None  # an evidence count: no gate
    assert gate_open(None, {})


def test_user_weights_still_apply_through_the_scoring_table() -> None:
    to = ", ".join(f"p{i}@gmail.com" for i in range(30))
    data = eml(f"From: a@org.example\nTo: {to}")
    default = {f.code: f.weight for f in check(data).findings}
    cfg = from_mapping({"rules": {"MG101": {"weight": 20, "mass_weight": 60}}})
    changed = {f.code: f.weight for f in check(data, config=cfg).findings}
    assert default["MG101"] == 60 and changed["MG101"] == 40  # 20 + (60-20) * 20/40


# ------------------------------------------------------------------ [sensitive]

CLINIC = eml(
    "From: Riverside Clinic <office@riverside.example>\nTo: a@gmail.com, b@hotmail.com",
    "Dear patients, the clinic reopens on Monday.",
)


def _codes(data: bytes, cfg: Config) -> set[str]:
    return {f.code for f in check(data, config=cfg).findings}


def test_lowered_thresholds_no_longer_depend_on_the_sensitive_rule() -> None:
    """Before, disabling the sensitive-context rule silently disabled MG101's lowering."""
    cfg = from_mapping({"rules": {"MG301": {"enabled": False}}})
    assert _codes(CLINIC, cfg) == {"MG101", "MG102"}
    assert not _codes(CLINIC, from_mapping({"sensitive": {"enabled": False}}))


def test_sensitive_section_terms_and_the_old_place() -> None:
    data = eml("From: a@acme.example\nTo: x@one.example, y@two.example\nSubject: Nightingale")
    assert "MG301" not in _codes(data, Config())
    new = from_mapping({"sensitive": {"extra_terms": ["nightingale"]}})
    old = from_mapping({"rules": {"MG301": {"extra_terms": ["nightingale"]}}})
    assert "MG301" in _codes(data, new) and "MG301" in _codes(data, old)
    assert new.sensitive_settings == old.sensitive_settings
    both = from_mapping(
        {"sensitive": {"extra_terms": []}, "rules": {"MG301": {"extra_terms": ["nightingale"]}}}
    )
    assert "MG301" not in _codes(data, both)  # the new section wins


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ({"categories": ["hiv", "astrology"]}, "unknown"),
        ({"extra_terms": "nightingale"}, "list of strings"),
        ({"enabled": "yes"}, "true or false"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_sensitive_section_is_validated(section: dict, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        from_mapping({"sensitive": section})


# ------------------------------------------------------------------ remedy and wording


def test_refusal_wording_comes_from_remedy_and_sender_lines() -> None:
    exposed = check(
        eml("From: a@org.example\nTo: " + ", ".join(f"p{i}@gmail.com" for i in range(60)))
    )
    assert "would expose 60 external recipients in To/Cc" in refusal_reason(exposed)
    bcc = check(eml("From: a@org.example\nTo: a@org.example\nBcc: x@gmail.com"))
    (rule,) = [f.rule for f in bcc.findings if f.remedy == "remove-bcc-header"]
    assert rule is not None and rule.sender in refusal_reason(bcc)


def test_engine_error_comes_from_the_tagged_rule() -> None:
    report = Engine().check(b"")
    (finding,) = report.findings
    assert TAG_ENGINE_ERROR in finding.tags and report.verdict == "error"


def test_default_services_have_a_clock_and_nothing_else() -> None:
    s = Services()
    assert s.clock is not None and s.missing(SERVICES) == ["dns", "history", "approval"]
