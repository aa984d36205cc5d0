"""Archived mail with attachments: the register counts the people listed in attachments
apart from those exposed in headers, and the Art. 33 record names the data found."""

from __future__ import annotations

import json
import mailbox

from mailguard.archive.register import Register, Tally
from mailguard.config import from_mapping
from mailguard.engine import Engine
from mailguard.outputs.scan_html_art33 import art33_rows
from mailguard.outputs.scan_json import render_json
from mailguard.outputs.scan_text import render_text
from mailguard.redact import Privacy
from tests.support import attachments as fx


def register_of(messages: list[bytes]) -> Register:
    engine = Engine(from_mapping({"internal_domains": ["clinic.example"]}))
    tally = Tally()
    for i, raw in enumerate(messages):
        tally.add_report(engine.check(raw, source=f"sent#{i}", mode="archived"), len(raw))
    register = Register(["sent"])
    register.merge(tally)
    return register


def test_register_counts_people_in_attachments_apart_from_those_in_headers():
    patients = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(250)))])
    cc = ", ".join(f"p{i}@gmail.com" for i in range(20))
    exposed = f"From: office@clinic.example\r\nTo: office@clinic.example\r\nCc: {cc}\r\n"
    exposed += "Subject: newsletter\r\n\r\nHello\r\n"
    register = register_of([patients, exposed.encode()])
    summary = register.summary()
    assert summary["people_listed_in_attachments"] == 250
    assert summary["unique_exposed_addresses"] == 21  # 20 in Cc, plus the one external To
    data = json.loads(render_json(register, Privacy()))
    (listed,) = [i for i in data["incidents"] if "attachments" in i]
    assert listed["attachments"]["people"] == 250
    assert "Health / patients" in listed["attachments"]["data"]
    assert "identifiers" in listed["attachments"]["data"]
    text = render_text(register, Privacy())
    assert "250 people listed in attachments of incidents" in text


def test_art33_record_lists_the_categories_of_data_found():
    patients = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(250)))])
    (incident,) = register_of([patients]).incidents
    rows = dict(art33_rows(incident))
    nature = rows["Nature of the breach"]
    assert "files attached to the message list 250 people" in nature
    assert "To/Cc instead of Bcc" not in nature  # one recipient: no header exposure
    records = rows["Categories and approximate number of personal data records"]
    assert "Attached files listing 250 people" in records and "Health / patients" in records
    assert "250 people listed in attachments" in rows["Approximate number of data subjects"]


def test_scan_command_reads_attachments_in_an_mbox(tmp_path):
    from typer.testing import CliRunner

    from mailguard.cli import app

    box = mailbox.mbox(tmp_path / "sent.mbox")
    box.add(fx.message([("v.vcf", "text/vcard", fx.vcards(120))]))
    box.flush()
    out = tmp_path / "register.json"
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "sent.mbox"), "-o", str(out)])
    assert result.exit_code in (0, 1), result.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["people_listed_in_attachments"] == 120


def test_imap_fetches_a_body_for_attachments_only_when_the_type_can_carry_files():
    engine = Engine(from_mapping({"rules": {"MG301": {"enabled": False}}}))
    head = b"From: a@ours.example\r\nTo: b@theirs.example\r\nSubject: x\r\n"
    assert not engine.needs_body(head + b"Content-Type: text/plain\r\n\r\n")
    assert not engine.needs_body(head + b"\r\n")
    assert engine.needs_body(head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n')
    no_files = {"rules": {c: {"enabled": False} for c in ("MG301", "MG601", "MG602", "MG603")}}
    multipart = head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    assert not Engine(from_mapping(no_files)).needs_body(multipart)
