"""Every example in every rule file is a test: docs and behaviour cannot drift apart."""

from __future__ import annotations

import re

import pytest

from mailguard import Engine, Envelope
from mailguard.config import from_mapping
from mailguard.rules import load_rules
from mailguard.services import Services
from tests.support.fake_dns import fake_service
from tests.support.history import history_service

RULES = load_rules()
CASES = [
    pytest.param(rule, ex, id=f"{rule.code}-{'fires' if ex.triggers else 'quiet'}-{ex.name}")
    for rule in RULES
    for ex in rule.examples
]


@pytest.mark.parametrize(("rule", "example"), CASES)
def test_rule_example(rule, example, tmp_path):
    # A rule that needs DNS runs against an in-process fake resolver (no network): its
    # examples say which names the fake knows. One that needs history gets a real store
    # learned from the example's `sent` messages.
    services = Services(dns=fake_service()) if "dns" in rule.needs else None
    if "history" in rule.needs:
        services = Services(history=history_service(tmp_path / "history.db", example.sent))
    engine = Engine(from_mapping(example.config), services=services)
    envelope = None
    if example.envelope is not None:
        envelope = Envelope(
            example.envelope.get("mail_from"), tuple(example.envelope.get("rcpt_to", ()))
        )
    data = example.message.lstrip("\n").replace("\n", "\r\n").encode("utf-8")
    report = engine.check(data, envelope=envelope, smtp_data=example.smtp_data, mode=example.mode)
    hits = [f for f in report.findings if f.code == rule.code]
    assert bool(hits) == example.triggers, (
        report.verdict,
        [(f.code, f.message) for f in report.findings],
    )
    if example.weight is not None:
        assert hits[0].weight == example.weight


@pytest.mark.parametrize("rule", RULES, ids=[r.code for r in RULES])
def test_rule_has_examples_both_ways(rule):
    assert any(ex.triggers for ex in rule.examples), "needs an example that triggers"
    assert any(not ex.triggers for ex in rule.examples), "needs an example that must not trigger"


CONFIG_WORDS = {
    "internal_domains", "personal_domains", "extra_personal_domains", "mailing_lists",
    "partner_domains",
    "warn_at", "block_at",
}  # fmt: skip


@pytest.mark.parametrize("rule", RULES, ids=[r.code for r in RULES])
def test_documented_options_exist(rule):
    """An option named in a rule's docs (`like_this`) must exist, so docs can't rot."""
    from mailguard.limits import Limits

    limits = {f"limits.{name}" for name in Limits.__dataclass_fields__}
    known = set(rule.options) | CONFIG_WORDS | limits | {"weight", "severity", "enabled", "mode"}
    for other in RULES:  # rules may refer to each other's options (MG102 -> MG101)
        known |= set(other.options)
    text = " ".join(rule.doc.values())
    for name in re.findall(r"`([a-z]+(?:_[a-z]+)+|limits\.[a-z_]+)`", text):
        assert name in known, f"{rule.code} docs mention `{name}`, which is no option"


def test_codes_are_unique_and_sorted():
    codes = [r.code for r in RULES]
    assert codes == sorted(set(codes))
    assert all(re.fullmatch(r"MG\d{3}", c) for c in codes)


def test_readme_rule_table_matches_rule_files():
    """The README's rule table is written for newcomers; it must say what the files say."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(MG\d{3})` \| `([a-z-]+)` \| (\w+) \| (\d+) \| (.+) \|$", readme, re.M)
    assert [(code, name, sev, int(w), summary) for code, name, sev, w, summary in rows] == [
        (r.code, r.name, r.severity, r.weight, r.summary) for r in RULES
    ]
