"""The calibration table of the issue: real incidents must come out as stated."""

from __future__ import annotations

import tomllib

import pytest

import mailguard
from tests.conftest import EXAMPLES

EXPECTED = tomllib.loads((EXAMPLES / "expected.toml").read_text(encoding="utf-8"))


def test_every_example_has_an_expectation():
    files = {p.name for p in EXAMPLES.glob("*.eml")}
    assert files == set(EXPECTED)
    assert len(files) == 11


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_incident_verdict_and_counts(name):
    expected = EXPECTED[name]
    report = mailguard.check((EXAMPLES / name).read_bytes(), source=name)
    r = report.recipients
    assert report.verdict in expected["verdict"], [
        (f.code, f.weight, f.message) for f in report.findings
    ]
    assert r["visible"] == expected["visible"]
    assert r["to"] == expected["to"]
    assert r["cc"] == expected["cc"]
    assert r["bcc"] == expected["bcc"]
    assert r["personal"] == expected["personal"]


def test_sensitive_incidents_name_their_context():
    for name, category in [
        ("02-gender-identity-clinic-to.eml", "gender_identity"),
        ("03-patient-council-cc.eml", "health"),
        ("04-hiv-charity-cc.eml", "hiv"),
    ]:
        report = mailguard.check((EXAMPLES / name).read_bytes())
        mg301 = [f for f in report.findings if f.code == "MG301"]
        assert mg301, name
        assert category in mg301[0].evidence["categories"]


def test_non_sensitive_incidents_have_no_sensitive_finding():
    for name in (
        "01-contact-tracers-cc.eml",
        "08-sports-club-fixtures.eml",
        "09-supplier-update.eml",
    ):
        report = mailguard.check((EXAMPLES / name).read_bytes())
        assert "MG301" not in report.codes, name


def test_bcc_left_in_payload_is_not_a_leak_in_an_archive():
    data = (EXAMPLES / "11-bcc-header-left-in-payload.eml").read_bytes()
    assert mailguard.check(data).verdict in ("warn", "block")
    assert mailguard.check(data, mode="archived").verdict == "pass"


def test_internal_domain_config_changes_the_all_staff_verdict():
    """With internal domains configured wrongly, the memo is an exposure: config matters."""
    data = (EXAMPLES / "06-all-staff-memo.eml").read_bytes()
    cfg = mailguard.Config(internal_domains=("elsewhere.example",))
    report = mailguard.check(data, config=cfg)
    assert report.recipients["visible_internal"] == 0
    # 400 addresses in one organisation (with subdomains) are still a single party.
    assert report.recipients["exposed_parties"] == 1
    assert report.verdict == "pass"
