"""Snapshots of the ``check`` formats (text, JSON, SARIF) for a fixed set of reports.

The reports come from the calibration examples and one hostile message, judged by the real
engine, under each privacy policy the CLI can ask for. A change to what any format shows is
a reviewed diff of ``tests/snapshots/check_*`` (``MAILGUARD_UPDATE_SNAPSHOTS=1`` rewrites
them). The redaction key is fixed, so hashes are the same on every run.
"""

from __future__ import annotations

import json

import pytest

from mailguard import Engine, Report
from mailguard.outputs import FORMATS, RenderOptions, render
from mailguard.redact import Privacy, Redactor
from tests.conftest import EXAMPLES, eml
from tests.support.snapshot import assert_snapshot

KEY = b"snapshot-key"
EXAMPLE_FILES = [
    "03-patient-council-cc.eml",
    "04-hiv-charity-cc.eml",
    "07-partner-company.eml",
    "08-sports-club-fixtures.eml",
    "10-mailing-list-post.eml",
    "11-bcc-header-left-in-payload.eml",
]
HOSTILE = eml(
    """From: Jane Doe <jane.doe@riverside.example>
To: ann@gmail.com, bob@hotmail.com, "Carol <script>" <carol@yahoo.com>, dan@partner.example
Cc: eve@supplier.example, broken@@example.com, <x@
Subject: =?utf-8?q?HIV_clinic_group_=3Cscript=3E?=
Message-ID: <jane.doe.1@riverside.example>
Date: Tue, 02 Apr 2024 09:30:00 +0000""",
    "Dear all, the HIV support group meets on Friday.",
)
EXTENSIONS = {"text": "txt", "json": "json", "sarif": "sarif.json"}
POLICIES = {
    "default": lambda: Privacy(),
    "addresses": lambda: Privacy(show_addresses=True),
    # What `check --redact` asks for: addresses listed, as hashes.
    "redacted": lambda: Privacy(show_addresses=True, redactor=Redactor(KEY)),
}


def reports() -> list[Report]:
    engine = Engine()
    found = [
        engine.check((EXAMPLES / name).read_bytes(), source=f"examples/{name}")
        for name in EXAMPLE_FILES
    ]
    found.append(engine.check(HOSTILE, source="/mail/jane.doe@gmail.com.eml"))
    found.append(engine.check(b"", source="<stdin>"))
    found.append(engine.error_report("/mail/unreadable.eml", "permission denied"))
    return found


@pytest.fixture(scope="module")
def judged() -> list[Report]:
    return reports()


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_check_format_snapshot(judged, fmt, policy):
    options = POLICIES[policy]()
    # Snapshots are the --pretty form, so a diff is readable; the default is compact.
    text = render(judged, fmt, options, pretty=True)
    assert_snapshot(f"check_{fmt}_{policy}.{EXTENSIONS[fmt]}", text)
    if fmt != "text":
        compact = render(judged, fmt, options)
        assert "\n" not in compact and len(compact) < len(text)
        assert json.loads(compact) == json.loads(text)


def test_snapshots_cover_every_format():
    assert set(EXTENSIONS) == set(FORMATS)


CANARY = eml(
    """From: Canary Sender <canary-sender@riverside.example>
To: canary-one@gmail.com, canary-two@hotmail.com, canary-three@yahoo.com, x@partner.example
Cc: canary-four@aol.com, canary-broken@@example.com
Subject: canary-subject about the HIV clinic
Message-ID: <canary-message-id@riverside.example>
Date: Tue, 02 Apr 2024 09:30:00 +0000""",
    "Dear all, the HIV support group meets on Friday.",
)


def canary_reports() -> list[Report]:
    engine = Engine()
    return [
        engine.check(CANARY, source="/home/canary-source/mail.eml"),
        engine.error_report("/home/canary-unreadable/m.eml", "cannot parse canary-reason"),
    ]


@pytest.mark.parametrize("show", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
def test_redacted_check_report_shows_no_canary_in_any_format(fmt, show):
    """A format that shows a source, Message-ID, address or quote without asking the policy
    leaks a canary here, whichever field it is; under --redact addresses are listed as
    hashes in every format that lists addresses at all."""
    redactor = Redactor(KEY)
    text = render(canary_reports(), fmt, Privacy(show, redactor))
    assert "canary" not in text.lower()
    assert (redactor.address("canary-one@gmail.com") in text) is (fmt != "sarif")


@pytest.mark.parametrize("fmt", FORMATS)
def test_plain_check_report_shows_what_it_should(fmt):
    """The canaries are real: without redaction the source is there, addresses on request."""
    text = render(canary_reports(), fmt, Privacy())
    assert "canary-source" in text and "canary-one@gmail.com" not in text
    shown = render(canary_reports(), fmt, Privacy(show_addresses=True))
    assert ("canary-one@gmail.com" in shown) is (fmt != "sarif")


def test_one_policy_type_for_every_output():
    """``check`` and ``scan`` formats take the same policy object: none has its own."""
    from mailguard.outputs.scan import ScanRenderOptions

    assert RenderOptions is Privacy and ScanRenderOptions is Privacy
