"""Snapshots of the scan register's formats (text, JSON, CSV, HTML) for fixed registers.

Each register is built the way the scanner builds one (reports judged in archive mode and
tallied) or by hand where only dates and verdicts matter (the chart's layouts), with fixed
provenance, elapsed time and generation time, and rendered under each privacy policy. The
HTML snapshots were recorded before the register's HTML was split into modules: they are
the proof that the split changed no byte. ``MAILGUARD_UPDATE_SNAPSHOTS=1`` rewrites them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from mailguard import Engine
from mailguard.archive.register import PATH, SOURCE, Incident, Register, Tally
from mailguard.outputs.scan import SCAN_FORMATS, render_register
from mailguard.outputs.scan_html import render_html
from mailguard.redact import Privacy, Redactor
from tests.conftest import EXAMPLES, eml
from tests.support.snapshot import assert_snapshot
from tests.test_outputs_check import HOSTILE, KEY

GENERATED = datetime(2025, 3, 3, 10, 15, tzinfo=UTC)
EXAMPLE_FILES = [
    "03-patient-council-cc.eml",
    "04-hiv-charity-cc.eml",
    "07-partner-company.eml",
    "08-sports-club-fixtures.eml",
    "09-supplier-update.eml",
    "10-mailing-list-post.eml",
    "11-bcc-header-left-in-payload.eml",
]
PROVENANCE: dict[str, Any] = {
    "mailguard_version": "0.1.0",
    "rule_set": {"version": "0.1.0", "digest": "sha256:" + "0123456789abcdef" * 4},
    "mode": "archived",
    "since": "2019-01-01",
    "until": None,
    "config_file": "/home/jane.doe@riverside.example/mailguard.toml",
    "internal_domains": ["riverside.example"],
    "internal_domains_default": None,
    "scoring": {"warn_at": 30, "block_at": 60},
    "enabled_rules": ["MG101", "MG102", "MG301"],
    "disabled_rules": ["MG104"],
    "rules": {
        "MG101": {"severity": "high", "weight": 80, "options": {"min_parties": 5}},
        "MG102": {"severity": "medium", "weight": 10, "options": {}},
        "MG301": {"severity": "high", "weight": 20, "options": {"terms": "shipped <list>"}},
    },
    "personal_domains": "shipped list",
    "extra_personal_domains": [],
    "mailing_list_patterns": 0,
    "limits": {"max_recipients": 100000, "max_header_bytes": 1048576},
}


def full() -> Register:
    """Every section filled: incidents of each kind, errors, failed sources, a folder."""
    engine = Engine()
    register = Register(
        ["/mail/Sent.mbox", "/home/jane.doe/Archive", "imaps://jane.doe@mail.riverside.example/"]
    )
    tally = Tally()
    for n, name in enumerate(EXAMPLE_FILES):
        data = (EXAMPLES / name).read_bytes()
        report = engine.check(data, source=f"/mail/Sent.mbox@{n * 4096}", mode="archived")
        tally.add_report(report, size=len(data))
    hostile = engine.check(
        HOSTILE, source="/home/jane.doe/Archive/ann@gmail.com.eml", mode="archived"
    )
    tally.add_report(hostile, size=len(HOSTILE))
    members = ", ".join(f"member{n}@{d}" for n in range(6) for d in ("gmail.com", "aol.com"))
    undated = eml(f"From: club@riverside.example\nTo: {members}\nSubject: =1+1 fixtures")
    tally.add_report(
        engine.check(
            undated, source="imaps://jane.doe@mail.riverside.example/Sent;UID=7", mode="archived"
        )
    )
    tally.add_error("/mail/Sent.mbox#12", "message cut off <script>alert(1)</script>")
    tally.add_error("/home/jane.doe/Archive/private", "permission denied", PATH)
    tally.add_error(
        "imaps://jane.doe@mail.riverside.example/", "login refused for jane.doe", SOURCE
    )
    register.merge(tally)
    register.since = date(2019, 1, 1)
    register.elapsed = 83.25
    register.provenance = PROVENANCE
    return register


def empty() -> Register:
    """Nothing found, and not everything read: the register must not say "all clear"."""
    register = Register(["/mail/Sent.mbox", "/mail/gone.mbox"])
    tally = Tally()
    for n in range(3):
        tally.count("pass", datetime(2024, 5, n + 1, tzinfo=UTC), 700)
    tally.add_error("/mail/gone.mbox", "No such file or directory", SOURCE)
    register.merge(tally)
    register.interrupted = True
    register.elapsed = 0.5
    return register


LIMITED = {
    "code": "MG002",
    "name": "input-limits",
    "severity": "medium",
    "message": "input exceeds safe limits: recipients (100,000)",
    "weight": 25,
    "evidence": {"limits": ["recipients (100,000)"]},
    "tags": [
        "input",
        "hostile",
        "partial-read",
    ],  # as Finding.to_dict() gives them: the register decides from tags
}


def _dated(months: list[tuple[datetime | None, str]]) -> Register:
    register = Register(["/mail/Sent.mbox"])
    tally = Tally()
    for n, (when, verdict) in enumerate(months):
        tally.count(verdict, when, 1000)
        tally.incidents.append(
            Incident(
                source=f"/mail/Sent.mbox#{n}",
                message_id=f"<m{n}@riverside.example>",
                date=when,
                sender="office@riverside.example",
                subject=f"Mailout {n}",
                verdict=verdict,
                score=70 if verdict == "block" else 40,
                findings=[LIMITED] if n == 0 else [],
                recipients={"visible": 6, "visible_external": 5, "personal": 2, "mailing_lists": n},
                exposed=[f"p{n}@gmail.com"],
                personal=[f"p{n}@gmail.com"],
                domains={"gmail.com": 1},
                exposed_count=1,
                personal_count=1,
            )
        )
    register.merge(tally)
    register.elapsed = 4000.0
    return register


def timeline() -> Register:
    """Three years of incidents: gaps filled with empty months, thinned labels."""
    return _dated(
        [
            (datetime(2021 + (m // 12), m % 12 + 1, 10, tzinfo=UTC), "block" if m % 3 else "warn")
            for m in range(0, 36, 2)
        ]
        + [(None, "warn")]
    )


def bogus_date() -> Register:
    """One Date header from 1970: only the months with incidents are drawn."""
    return _dated(
        [
            (datetime(1970, 1, 1, tzinfo=UTC), "warn"),
            (datetime(2024, 6, 1, 12, 0, tzinfo=UTC), "block"),
            (datetime(2024, 6, 2, tzinfo=UTC), "warn"),
        ]
    )


REGISTERS: dict[str, Callable[[], Register]] = {
    "full": full,
    "empty": empty,
    "timeline": timeline,
    "bogus_date": bogus_date,
}
POLICIES = {
    "default": (False, False),
    "addresses": (True, False),
    "redacted": (False, True),
    "redacted_addresses": (True, True),
}
CASES = [("full", policy) for policy in POLICIES] + [
    (name, "default") for name in REGISTERS if name != "full"
]


def render(fmt: str, register: Register, show: bool, redact: bool, pretty: bool = True) -> str:
    """Snapshots are the ``--pretty`` form, so a diff is readable; the default is compact."""
    privacy = Privacy(show, Redactor(KEY) if redact else None)
    return render_register(register, fmt, privacy, generated=GENERATED, pretty=pretty)


EXTENSIONS = {"text": "txt", "json": "json", "csv": "csv", "html": "html"}


@pytest.mark.parametrize(("name", "policy"), CASES)
@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_scan_format_snapshot(fmt, name, policy):
    text = render(fmt, REGISTERS[name](), *POLICIES[policy])
    assert_snapshot(f"scan_{fmt}_{name}_{policy}.{EXTENSIONS[fmt]}", text)
    if fmt == "json":
        compact = render(fmt, REGISTERS[name](), *POLICIES[policy], pretty=False)
        assert compact.count("\n") == 1 and len(compact) < len(text)
        assert json.loads(compact) == json.loads(text)


def test_snapshots_cover_every_format():
    assert set(EXTENSIONS) == set(SCAN_FORMATS)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        render_register(empty(), "xml", Privacy())


def test_html_takes_one_policy_not_two():
    register = empty()
    with pytest.raises(TypeError):
        render_html(register, Privacy(), redactor=Redactor(KEY))
    policy = Privacy(True, Redactor(KEY))
    assert render_html(register, policy, generated=GENERATED) == render_html(
        register, redactor=Redactor(KEY), show_addresses=True, generated=GENERATED
    )


def canary_register() -> Register:
    """Every field that can name a person or quote a message holds a canary."""
    register = Register(["/home/canary-registered-source/Sent.mbox"])
    tally = Tally()
    findings = [
        {
            "code": "MG105",
            "name": "unparseable-recipients",
            "severity": "low",
            "message": "bad entry <canary-finding@partner.example>",
            "weight": 5,
            "evidence": {"entries": ["canary-evidence@partner.example"]},
        },
        {
            "code": "MG301",
            "name": "sensitive-context",
            "severity": "high",
            "message": "sensitive context: 'canary-quoted-word' in subject",
            "weight": 20,
            "evidence": {"labels": ["HIV"], "matched": ["canary-quoted-word"]},
            "redacted": {"message": "sensitive context: HIV (in subject)", "evidence": {}},
        },
    ]
    for n, when in enumerate([datetime(2024, 2, 1, tzinfo=UTC), None]):
        tally.count("block", when, 100)
        tally.incidents.append(
            Incident(
                source=f"/home/canary-source-{n}/mail.eml",
                message_id=f"<canary-message-id-{n}@host.example>",
                date=when,
                sender=f"canary-sender-{n}@riverside.example",
                subject=f"canary-subject-{n}",
                verdict="block",
                score=90,
                findings=findings,
                recipients={"visible": 2, "visible_external": 2, "personal": 1},
                exposed=[f"canary-exposed-{n}@gmail.com", f"canary-org-{n}@partner.example"],
                personal=[f"canary-exposed-{n}@gmail.com"],
                domains={"gmail.com": 1, "partner.example": 1},
                sensitive=["HIV"],
                exposed_count=2,
                personal_count=1,
            )
        )
    tally.add_error("/home/canary-error-source/m.eml", "cannot parse canary-error-text")
    tally.add_error("/home/canary-folder", "canary-folder-error", PATH)
    tally.add_error("imaps://canary-login@mail.example/", "canary-login refused", SOURCE)
    register.merge(tally)
    register.provenance = {**PROVENANCE, "config_file": "/home/canary-config/mailguard.toml"}
    return register


@pytest.mark.parametrize("show", [False, True])
@pytest.mark.parametrize("fmt", SCAN_FORMATS)
def test_redacted_register_shows_no_canary_in_any_format(fmt, show):
    """The class, not the example: a format that shows any personal field without asking
    the policy leaks a canary here, whichever field it is."""
    redactor = Redactor(KEY)
    text = render_register(canary_register(), fmt, Privacy(show, redactor), generated=GENERATED)
    assert "canary" not in text.lower()
    # The data formats list hashes under --redact, the HTML only when asked; the CSV has
    # one row per incident and no address column.
    listed = fmt != "csv" and (show or fmt != "html")
    assert (redactor.address("canary-exposed-0@gmail.com") in text) is listed


@pytest.mark.parametrize("fmt", SCAN_FORMATS)
def test_plain_register_shows_what_it_should(fmt):
    """The canaries above are real: without redaction the same register shows them."""
    text = render_register(canary_register(), fmt, Privacy(), generated=GENERATED)
    assert "canary-source-0" in text
    assert "canary-exposed-0@gmail.com" not in text  # not asked for
    shown = render_register(canary_register(), fmt, Privacy(True), generated=GENERATED)
    assert ("canary-exposed-0@gmail.com" in shown) is (fmt != "csv")
