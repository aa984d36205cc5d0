"""Attachment fixtures written by the tests: real XLSX (openpyxl), ODS (odfpy), encrypted
XLSX (msoffcrypto-tool), CSV and vCard by hand, and hostile files built byte by byte."""

from __future__ import annotations

import base64
import io
import random
import zipfile

from mailguard import Engine

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DIAGNOSES = ("asthma", "type 2 diabetes", "COPD", "hypertension", "depression", "epilepsy")


def message(
    files: list[tuple[str, str, bytes]],
    *,
    to: str = "someone@partner.example",
    sender: str = "office@clinic.example",
    subject: str = "the list",
) -> bytes:
    """A multipart/mixed message with a text part and these (name, type, bytes) files."""
    parts = [b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease see attached.\r\n"]
    for name, ctype, data in files:
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
        parts.append(
            f'Content-Type: {ctype}; name="{name}"\r\n'
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n".encode()
            + body
        )
    head = (
        f"From: Office <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BOUNDARY"\r\n\r\n'
    ).encode()
    return head + b"".join(b"--BOUNDARY\r\n" + p for p in parts) + b"--BOUNDARY--\r\n"


def nhs_numbers(n: int, seed: int = 1) -> list[str]:
    """``n`` distinct NHS numbers with a valid mod-11 check digit."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < n:
        digits = [rng.randint(0, 9) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            found["".join(map(str, digits)) + str(check)] = None
    return list(found)


def patient_rows(n: int) -> list[list[object]]:
    header: list[object] = ["Name", "Date of birth", "NHS number", "Email", "Diagnosis"]
    rows = [header]
    for i, nhs in enumerate(nhs_numbers(n)):
        rows.append([f"Patient {i}", f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9}", nhs,
                     f"patient{i}@example.net", DIAGNOSES[i % len(DIAGNOSES)]])  # fmt: skip
    return rows


def xlsx(rows: list[list[object]], sheet: str = "Sheet1") -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def ods(rows: list[list[object]], sheet: str = "Sheet1") -> bytes:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    doc = OpenDocumentSpreadsheet()
    table = Table(name=sheet)
    for row in rows:
        tr = TableRow()
        for value in row:
            cell = TableCell(valuetype="string")
            cell.addElement(P(text=str(value)))
            tr.addElement(cell)
        table.addElement(tr)
    doc.spreadsheet.addElement(table)
    out = io.BytesIO()
    doc.write(out)
    return out.getvalue()


def encrypted_xlsx(rows: list[list[object]], password: str = "s3cret") -> bytes:
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(xlsx(rows))).encrypt(password, out)
    return out.getvalue()


def csv_bytes(rows: list[list[object]], delimiter: str = ",") -> bytes:
    return "".join(delimiter.join(map(str, r)) + "\r\n" for r in rows).encode()


def vcards(n: int) -> bytes:
    """``n`` volunteers as Android and Apple phones export them (vCard 2.1 and 3.0 mixed)."""
    out = []
    for i in range(n):
        if i % 2:
            out.append(f"BEGIN:VCARD\r\nVERSION:2.1\r\nN:Volunteer;{i}\r\nFN:Volunteer {i}\r\n"
                       f"TEL;CELL;PREF:+44 7700 9{i:05d}\r\nEND:VCARD\r\n")  # fmt: skip
        else:
            out.append(f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Volunteer {i}\r\n"
                       f"item1.EMAIL;type=INTERNET;type=pref:vol{i}@example.org\r\n"
                       "item1.X-ABLabel:_$!<Other>!$_\r\nEND:VCARD\r\n")  # fmt: skip
    return "".join(out).encode()


def price_list() -> bytes:
    rows: list[list[object]] = [["Product", "Size", "Price"], ["Widget", "S", "4.50"]]
    rows += [["Widget", "L", "6"], ["Gadget", "-", "12"], ["Gizmo", "-", "3"], ["Bolt", "M8", "1"]]
    return csv_bytes(rows)


# ------------------------------------------------------------------ hostile files


def zip_bomb(size: int = 1 << 28) -> bytes:
    """One entry that inflates ``size`` bytes of zeros from about a thousandth of that."""
    out = io.BytesIO()
    block = b"\0" * (1 << 20)
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z,
        z.open("people.csv", "w", force_zip64=True) as entry,
    ):
        for _ in range(size >> 20):
            entry.write(block)
    return out.getvalue()


def lying_zip(real: bytes, claimed: int, name: str = "people.csv") -> bytes:
    """A ZIP whose entry claims ``claimed`` bytes uncompressed but holds ``real``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, real)
    data = bytearray(out.getvalue())
    size = claimed.to_bytes(4, "little") if claimed < 1 << 32 else b"\xff\xff\xff\xff"
    data[22:26] = size  # local header: uncompressed size
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = size
    return bytes(data)


def billion_laughs_xlsx() -> bytes:
    """A real XLSX whose shared strings declare the classic nested entities."""
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    strings = (
        f'<?xml version="1.0"?><!DOCTYPE sst [{entities}]>'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" '
        'uniqueCount="1"><si><t>&lol9;</t></si></sst>'
    ).encode()
    return _replace_entry(xlsx([["Email"], ["a@example.org"]]), "xl/sharedStrings.xml", strings)


def far_cell_xlsx() -> bytes:
    """A real XLSX with one cell at A1 and one at XFD1048576 (a 17-billion-cell rectangle)."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active["A1"] = "Email"
    book.active["XFD1048576"] = "x"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _replace_entry(data: bytes, name: str, body: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in source.infolist():
            z.writestr(info.filename, source.read(info) if info.filename != name else body)
        if name not in source.namelist():
            z.writestr(name, body)
    return out.getvalue()


def csv_rows(n: int) -> bytes:
    """A CSV export of ``n`` people (name, email, mobile)."""
    lines = ["Name,Email,Mobile\r\n"]
    lines += [f"Person {i},person{i}@example.org,07700 {i % 1000000:06d}\r\n" for i in range(n)]
    return "".join(lines).encode()


def hostile_message(case: str, size: int) -> bytes:
    """The hostile attachments of tests/test_attachments_hostile.py, as messages."""
    zip_type, ods_type = "application/zip", "application/vnd.oasis.opendocument.spreadsheet"
    if case == "zip_bomb":
        return message([("people.zip", zip_type, zip_bomb(size))])
    if case == "zip_bomb_ratio":
        return message([("people.zip", zip_type, zip_bomb(size))])
    if case == "xlsx_bomb":
        bomb = _replace_entry(xlsx([["Email"]]), "xl/worksheets/sheet1.xml", b"\0" * size)
        return message([("people.xlsx", XLSX_TYPE, bomb)])
    if case == "billion_laughs":
        return message([("people.xlsx", XLSX_TYPE, billion_laughs_xlsx())])
    if case == "claims_2gb":
        return message([("people.zip", zip_type, lying_zip(csv_rows(20_000), size))])
    if case == "lies_small":
        lines = b"a@b.example\r\n" * (size // 13)
        return message([("people.zip", zip_type, lying_zip(lines, 1024))])
    if case == "far_cell":
        return message([("people.xlsx", XLSX_TYPE, far_cell_xlsx())])
    if case == "ods_repeat":
        return message([("people.ods", ods_type, repeated_ods())])
    if case == "csv_rows":
        return message([("people.csv", "text/csv", csv_rows(size))])
    raise ValueError(case)


def repeated_ods() -> bytes:
    """An ODS whose one non-empty cell is repeated 1,000 wide on 100,000 rows."""
    cell = (
        '<table:table-row table:number-rows-repeated="100000"><table:table-cell '
        'office:value-type="string" table:number-columns-repeated="1000"><text:p>x</text:p>'
        "</table:table-cell></table:table-row>"
    )
    content = ods([["Email"]]).replace(b"", b"")
    source = zipfile.ZipFile(io.BytesIO(content))
    xml = source.read("content.xml")
    xml = xml.replace(b"</table:table>", cell.encode() + b"</table:table>", 1)
    return _replace_entry(content, "content.xml", xml)


# ------------------------------------------------------------------ sweep helpers

SWEEP_PEOPLE = 150
SWEEP_LIST = csv_rows(SWEEP_PEOPLE)
"""The readable list of people that sits beside each hostile part in the sweep tests."""


def people_and_findings(data: bytes, engine: Engine | None = None) -> tuple[int, dict[str, str]]:
    """People MG601 counts in a message, and each finding's message by code."""
    report = (engine or Engine()).check(data)
    found = {f.code: f for f in report.findings}
    count = found["MG601"].evidence["people"] if "MG601" in found else 0
    return count, {code: f.message for code, f in found.items()}


def zipped(entries: list[tuple[str, bytes]]) -> bytes:
    """A deflated ZIP archive of these (name, bytes) entries."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()
