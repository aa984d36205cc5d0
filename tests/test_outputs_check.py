"""Snapshots of the ``check`` formats (text, JSON, SARIF) for a fixed set of reports.

The reports come from the calibration examples and one hostile message, judged by the real
engine, under each privacy policy the CLI can ask for. A change to what any format shows is
a reviewed diff of ``tests/snapshots/check_*`` (``MAILGUARD_UPDATE_SNAPSHOTS=1`` rewrites
them). The redaction key is fixed, so hashes are the same on every run.
"""

from __future__ import annotations

import pytest

from mailguard import Engine, Report
from mailguard.outputs import FORMATS, render
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
    assert_snapshot(f"check_{fmt}_{policy}.{EXTENSIONS[fmt]}", render(judged, fmt, options))


def test_snapshots_cover_every_format():
    assert set(EXTENSIONS) == set(FORMATS)
