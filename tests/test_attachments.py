"""Personal data in attachments (rules MG601-MG603): the scenarios of issue 14 end to end,
on files the tests write with the libraries people's own tools use."""

from __future__ import annotations

import pytest

from mailguard import Engine, Envelope
from mailguard.attachments.identifiers import iban, nhs_number, payment_card, uk_ni_number
from mailguard.checks.base import CheckContext
from mailguard.config import from_mapping
from tests.support import attachments as fx

EXTERNAL = "someone@partner.example"
CONFIG = {"internal_domains": ["clinic.example"]}


def check(data: bytes, config: dict | None = None, **kwargs):
    return Engine(from_mapping(config if config is not None else CONFIG)).check(data, **kwargs)


def codes(report) -> dict[str, object]:
    return {f.code: f for f in report.findings}


def test_patient_list_with_diagnoses_to_one_external_recipient_is_blocked():
    data = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(250)))])
    report = check(data)
    found = codes(report)
    assert report.verdict == "block", report.findings
    people = found["MG601"]
    assert people.evidence["people"] == 250
    assert set(people.evidence["kinds"]) >= {"email", "nhs_number", "date_of_birth", "name"}
    assert people.evidence["internal_only"] is False
    assert "Health / patients" in found["MG602"].evidence["labels"]
    assert "column 'Diagnosis' of patients.xlsx" in found["MG602"].evidence["places"]


def test_the_same_list_to_colleagues_only_is_a_warning():
    data = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(250)))],
                      to="gp@clinic.example")  # fmt: skip
    report = check(data, envelope=Envelope("office@clinic.example", ("gp@clinic.example",)))
    assert report.verdict == "warn", report.findings
    assert codes(report)["MG601"].evidence["internal_only"] is True


def test_an_external_envelope_recipient_is_not_internal():
    data = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(250)))],
                      to="gp@clinic.example")  # fmt: skip
    report = check(data, envelope=Envelope("office@clinic.example", ("x@elsewhere.example",)))
    assert report.verdict == "block"


def test_a_five_row_price_list_passes_without_attachment_findings():
    report = check(fx.message([("prices.csv", "text/csv", fx.price_list())]))
    assert report.verdict == "pass"
    assert not [c for c in codes(report) if c.startswith("MG6")]


def test_a_vcard_of_120_volunteers_is_blocked():
    report = check(fx.message([("volunteers.vcf", "text/vcard", fx.vcards(120))]))
    people = codes(report)["MG601"]
    assert people.evidence["people"] == 120
    assert set(people.evidence["kinds"]) == {"email", "phone", "name"}
    assert report.verdict == "block"


def test_an_encrypted_xlsx_is_a_note_not_an_error_nor_a_silent_pass():
    data = fx.message([("payroll.xlsx", fx.XLSX_TYPE, fx.encrypted_xlsx(fx.patient_rows(20)))])
    report = check(data)
    found = codes(report)
    assert report.verdict == "pass"
    assert "MG603" in found and "MG601" not in found
    assert found["MG603"].evidence["encrypted"] == 1
    assert "password-protected" in found["MG603"].message


def test_ods_and_a_csv_inside_a_zip_are_read():
    rows = fx.patient_rows(30)
    ods = fx.message([("list.ods", "application/vnd.oasis.opendocument.spreadsheet", fx.ods(rows))])
    assert codes(check(ods))["MG601"].evidence["people"] == 30
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("export/people.csv", fx.csv_bytes(rows))
        z.writestr("export/readme.pdf", b"%PDF-1.4")
    report = check(fx.message([("export.zip", "application/zip", buf.getvalue())]))
    assert codes(report)["MG601"].evidence["people"] == 30
    assert "MG602" in codes(report)


def test_a_person_in_two_files_counts_once():
    rows = fx.patient_rows(12)
    data = fx.message([("a.csv", "text/csv", fx.csv_bytes(rows)),
                       ("b.csv", "text/csv", fx.csv_bytes(rows, ";"))])  # fmt: skip
    assert codes(check(data))["MG601"].evidence["people"] == 12


@pytest.mark.parametrize(
    ("rows", "people"),
    [
        # Identifiers count only under their header and with a valid check digit.
        ([["NHS number"], ["943 476 5919"], ["943 476 5918"]], 1),
        ([["Order"], ["9434765919"]], 0),
        ([["NI number"], ["AB123456C"], ["BG123456C"], ["QQ123456C"], ["DA123456A"]], 1),
        ([["Card number"], ["4111 1111 1111 1111"], ["4111 1111 1111 1112"]], 1),
        ([["IBAN"], ["GB82 WEST 1234 5698 7654 32"], ["GB82 WEST 1234 5698 7654 33"]], 1),
        # A name alone is no person; a name with a date of birth is.
        ([["Name"], ["Ann"]], 0),
        ([["Name", "DOB"], ["Ann", "1970-01-01"]], 1),
        ([["Phone"], ["07700 900123"], ["n/a"]], 1),
        ([["Title", "Reference"], ["Report", "12345678"]], 0),
    ],
)
def test_people_need_an_identifying_value(rows, people):
    report = check(fx.message([("t.csv", "text/csv", fx.csv_bytes(rows))]))
    found = codes(report).get("MG601")
    assert (found.evidence["people"] if found else 0) == people


def test_identifier_checks():
    assert nhs_number("9434765919") and not nhs_number("9434765918")
    assert not nhs_number("0000000000")
    assert uk_ni_number("AB 12 34 56 C") and not uk_ni_number("GB123456A")
    assert not uk_ni_number("AO123456A")  # O is never a second prefix letter
    assert payment_card("4111-1111-1111-1111") and not payment_card("1111111111111117")
    assert iban("DE89 3704 0044 0532 0130 00") and not iban("DE89 3704 0044 0532 0130 01")


def test_free_text_identifier_needs_its_keyword_nearby():
    text = b"Notes\r\nNHS number: 943 476 5919\r\nticket 9434765919 closed\r\n"
    report = check(fx.message([("notes.txt", "text/plain", text)]))
    assert codes(report)["MG601"].evidence["kinds"] == ["nhs_number"]
    assert codes(report)["MG601"].evidence["people"] == 1


def test_csv_dialects_and_encodings_are_sniffed():
    rows = [["Nom", "Courriel"], ["Zoé", "zoe@example.fr"], ["Anaïs", "anais@example.fr"]]
    for raw in (fx.csv_bytes(rows, ";").decode().encode("cp1252"),
                b"\xef\xbb\xbf" + fx.csv_bytes(rows, "\t"),
                fx.csv_bytes(rows, "|").decode().encode("utf-16")):  # fmt: skip
        report = check(fx.message([("export.csv", "text/csv", raw)]))
        assert codes(report)["MG601"].evidence["people"] == 2


def test_redacted_findings_do_not_quote_file_or_column_names():
    data = fx.message([("ward 7 patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(5)))])
    for finding in check(data).findings:
        shown = finding.redacted
        text = shown.message if shown else finding.message
        text += str(shown.evidence if shown and shown.evidence else finding.evidence)
        assert "ward 7" not in text and "Diagnosis" not in text, finding


def test_no_attachment_rule_enabled_means_no_analysis(monkeypatch):
    def boom(self):
        raise AssertionError("analysed although no rule reads attachments")

    # The provider itself (a property: looked up at run time, compiled build or not).
    monkeypatch.setattr(CheckContext, "attachments", property(boom))
    config = {**CONFIG, "rules": {c: {"enabled": False} for c in ("MG601", "MG602", "MG603")}}
    data = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(5)))])
    assert check(data, config).verdict == "pass"


def test_bands_and_internal_weight_are_configurable():
    data = fx.message([("v.vcf", "text/vcard", fx.vcards(30))])
    assert codes(check(data))["MG601"].weight == 40
    config = {**CONFIG, "rules": {"MG601": {"warn_people": 50, "block_people": 60}}}
    assert codes(check(data, config))["MG601"].weight == 10
    internal = fx.message([("v.vcf", "text/vcard", fx.vcards(30))], to="gp@clinic.example")
    config = {**CONFIG, "rules": {"MG601": {"internal_percent": 25}}}
    assert codes(check(internal, config))["MG601"].weight == 10


def test_sheet_names_file_names_and_extra_terms_mark_special_categories():
    rows = [["Name", "Email"], ["Ann", "ann@example.net"]]
    sheet = fx.message([("list.xlsx", fx.XLSX_TYPE, fx.xlsx(rows, sheet="HIV clinic"))])
    assert "sheet name 'HIV clinic' of list.xlsx" in codes(check(sheet))["MG602"].evidence["places"]
    custom = fx.message([("nightingale cohort.csv", "text/csv", fx.csv_bytes(rows))])
    assert "MG602" not in codes(check(custom))
    config = {**CONFIG, "sensitive": {"extra_terms": ["nightingale"]}}
    assert codes(check(custom, config))["MG602"].evidence["labels"] == ["organisation-defined"]


def test_rfc2231_file_names_and_inline_text_parts():
    body = fx.csv_bytes([["Email"], ["ann@example.net"], ["bob@example.org"]])
    raw = fx.message([("x.csv", "text/csv", body)]).replace(
        b'filename="x.csv"', b"filename*0*=utf-8''HIV%20clinic%20;\r\n filename*1*=list.csv"
    )
    report = check(raw)
    assert "file name of HIV clinic list.csv" in codes(report)["MG602"].evidence["places"]
    inline = (
        b"From: a@clinic.example\r\nTo: b@partner.example\r\nSubject: x\r\n\r\nann@example.net\r\n"
    )
    assert "MG601" not in codes(check(inline))  # the message's own text is no attachment


@pytest.mark.parametrize(
    ("name", "ctype", "make"),
    [
        ("p.xlsx", fx.XLSX_TYPE, lambda: fx.xlsx(fx.patient_rows(40))),
        ("p.ods", "application/vnd.oasis.opendocument.spreadsheet",
         lambda: fx.ods(fx.patient_rows(40))),
        ("p.vcf", "text/vcard", lambda: fx.vcards(40)),
        ("p.csv", "text/csv", lambda: fx.csv_bytes(fx.patient_rows(40))),
    ],
)  # fmt: skip
def test_damaged_files_never_make_an_error_verdict(name, ctype, make):
    import random

    data = make()
    rng = random.Random(7)
    engine = Engine(from_mapping(CONFIG))
    for cut in (1, 2, 30, len(data) // 3, len(data) // 2, len(data) - 1):
        report = engine.check(fx.message([(name, ctype, data[:cut])]))
        assert report.verdict != "error" and "MG001" not in codes(report), report.findings
    for _ in range(40):
        damaged = bytearray(data)
        for _ in range(8):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        report = engine.check(fx.message([(name, ctype, bytes(damaged))]))
        assert report.verdict != "error", report.findings


def test_special_categories_follow_the_sensitive_section():
    data = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(5)))])
    assert "MG602" in codes(check(data))
    only_hiv = {**CONFIG, "sensitive": {"categories": ["hiv"]}}
    assert "MG602" not in codes(check(data, only_hiv))
    off = {**CONFIG, "sensitive": {"enabled": False}}
    assert "MG602" not in codes(check(data, off))
    assert "MG601" in codes(check(data, off))


def test_a_file_cut_short_by_the_end_of_the_message_says_so():
    data = fx.message([("patients.xlsx", fx.XLSX_TYPE, fx.xlsx(fx.patient_rows(200)))])
    cut = data[: len(data) // 2]  # as a server that keeps the first part of a body
    found = codes(check(cut))["MG603"]
    assert "cut short, the message ends inside it" in found.message
