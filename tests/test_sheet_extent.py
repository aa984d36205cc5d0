"""A spreadsheet is measured before calamine reads it, the way calamine itself places its
cells, whatever way the XML is written.

Why: calamine allocates a sheet as one dense rectangle and aborts the whole process
(SIGABRT) when that allocation fails. The measurement used to be a set of patterns over
one way of writing a sheet; a fuzzer got past it with single quotes, spaces around ``=``,
a dashed namespace prefix, rows without ``r``, a cell whose row is not its row's, and a
worksheet part named ``xl/evil.bin`` or ``sheet1.XML`` -- each a two-cell workbook that
killed ``check``, ``scan --jobs 1`` and the library with no report.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailguard.attachments.sheets import ods_extent, xlsx_extent
from mailguard.attachments.zipsafe import Refused
from tests.conftest import ROOT

_CT = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/'
    'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
    '"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WB = (
    '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
    '2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
)


def _wb_rels(target: str) -> str:
    return (
        '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
        f'officeDocument/2006/relationships/worksheet" Target="{target}"/></Relationships>'
    )


def sheet_xml(cells: str, prefix: str = "") -> str:
    ns = f"xmlns:{prefix[:-1]}" if prefix else "xmlns"
    return (
        f'<?xml version="1.0"?><{prefix}worksheet {ns}="http://schemas.openxmlformats.org/'
        f'spreadsheetml/2006/main"><{prefix}sheetData>{cells}</{prefix}sheetData>'
        f"</{prefix}worksheet>"
    )


def xlsx(cells: str, *, part: str = "xl/worksheets/sheet1.xml", prefix: str = "") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CT)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WB)
        z.writestr("xl/_rels/workbook.xml.rels", _wb_rels(part.removeprefix("xl/")))
        z.writestr(part, sheet_xml(cells, prefix))
    return out.getvalue()


_NAME = '<c r="A1" t="inlineStr"><is><t>name</t></is></c>'
FAR = '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
#: Each a two-cell workbook whose rectangle is A1:XFD1048576 (17 billion cells).
HOSTILE = {
    "double quotes": (f'<row r="1">{_NAME}</row>{FAR}', {}),
    "single quotes": (f"<row r='1'>{_NAME}</row>{FAR}".replace('"', "'"), {}),
    "spaces around =": (f'<row r="1">{_NAME}</row>{FAR}'.replace('r="', 'r = "'), {}),
    "tab before r": (f'<row r="1">{_NAME}</row>{FAR}'.replace(' r="', '\tr="'), {}),
    "character references": (
        f'<row r="1">{_NAME}</row><row r="&#49;048576"><c r="&#88;FD1048576"><v>1</v></c></row>',
        {},
    ),
    "rows without r": (
        f"<row>{_NAME}</row>"
        + "<row><c><v>1</v></c></row>" * 3
        + '<row><c r="XFD1048576"><v>1</v></c></row>',
        {},
    ),
    "cell row not its row's": (f'<row r="1">{_NAME}<c r="XFD1048576"><v>1</v></c></row>', {}),
    "dashed prefix": (
        f'<x-y:row r="1">{_NAME}</x-y:row>{FAR}'.replace("<c ", "<x-y:c ")
        .replace("</c>", "</x-y:c>").replace("<row", "<x-y:row").replace("</row>", "</x-y:row>")
        .replace("<is>", "<x-y:is>").replace("</is>", "</x-y:is>")
        .replace("<t>", "<x-y:t>").replace("</t>", "</x-y:t>")
        .replace("<v>", "<x-y:v>").replace("</v>", "</x-y:v>"),
        {"prefix": "x-y:"},
    ),
    "part named .bin": (f'<row r="1">{_NAME}</row>{FAR}', {"part": "xl/evil.bin"}),
    "part named .XML": (f'<row r="1">{_NAME}</row>{FAR}', {"part": "xl/worksheets/sheet1.XML"}),
    "rows out of order": (f'{FAR}<row r="1">{_NAME}</row>', {}),
}  # fmt: skip

_PROBE = """
import json, sys
from mailguard import check
from tests.test_sheet_extent import HOSTILE, message_with, xlsx
out = {}
for name, (cells, kw) in HOSTILE.items():
    report = check(message_with(xlsx(cells, **kw)))
    out[name] = [f.message for f in report.findings if f.code == "MG603"]
print(json.dumps(out))
"""


def message_with(attachment: bytes) -> bytes:
    import base64

    body = base64.encodebytes(attachment).decode()
    return (
        "From: a@example.org\r\nTo: b@partner.example\r\nSubject: list\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
        "Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet;"
        ' name="staff.xlsx"\r\nContent-Disposition: attachment; filename="staff.xlsx"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--b--\r\n"
    ).encode()


def test_every_way_of_writing_a_huge_sheet_is_refused_not_fatal():
    """In a child process: the old measurement let calamine abort it (-6)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    found = json.loads(proc.stdout)
    for name in HOSTILE:
        assert found[name], f"{name}: no 'could not be inspected' finding"
        assert "cells" in found[name][0] or "corrupt" in found[name][0], found[name]


# ---------------------------------------------------------------------------- against calamine

_QUOTE = st.sampled_from(['"', "'"])
_EQ = st.sampled_from(["=", " = ", "\t=\t"])


@st.composite
def _sheets(draw: st.DrawFn) -> str:
    """Small sheets written every way calamine accepts: rows and cells with and without
    ``r``, written empty or not, valued or empty, quoted either way."""
    q, eq = draw(_QUOTE), draw(_EQ)
    parts = []
    row = 0
    for _ in range(draw(st.integers(0, 6))):
        row += draw(st.integers(0, 4))
        r = f" r{eq}{q}{row + 1}{q}" if draw(st.booleans()) else ""
        if draw(st.integers(0, 5)) == 0:
            parts.append(f"<row{r}/>")
            continue
        cells = []
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.integers(0, 3))
            ref = ""
            if draw(st.booleans()):
                col = draw(st.integers(0, 40))
                letters = ""
                n = col + 1
                while n:
                    n, rem = divmod(n - 1, 26)
                    letters = chr(65 + rem) + letters
                ref = f" r{eq}{q}{letters}{row + 1 + draw(st.integers(0, 2))}{q}"
            if kind == 0:
                cells.append(f"<c{ref}/>")
            elif kind == 1:
                cells.append(f"<c{ref}></c>")
            else:
                cells.append(f"<c{ref}><v>{draw(st.integers(0, 99))}</v></c>")
        parts.append(f"<row{r}>{''.join(cells)}</row>")
    return "".join(parts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sheets())
def test_the_measure_bounds_what_calamine_allocates(cells):
    import python_calamine

    doc = sheet_xml(cells).encode()
    try:
        measured = xlsx_extent(doc)
    except Refused:
        return  # refused (rows going back): calamine never sees it
    book = python_calamine.CalamineWorkbook.from_object(io.BytesIO(xlsx(cells)))
    sheet = book.get_sheet_by_name("Sheet1")
    allocated = sheet.height * sheet.width if sheet.to_python() else 0
    assert allocated <= measured, (cells, allocated, measured)


def test_ordinary_sheets_measure_what_they_hold():
    rows = "".join(
        f'<row r="{r}">' + "".join(f'<c r="{c}{r}"><v>{r}</v></c>' for c in "ABC") + "</row>"
        for r in range(1, 11)
    )
    assert xlsx_extent(sheet_xml(rows).encode()) == 30
    assert xlsx_extent(b"<worksheet><cols/></worksheet>") == 0  # no sheetData: no cells


def test_ods_repeats_are_read_whatever_the_quotes():
    body = (
        b"<office:document-content xmlns:office='o' xmlns:table='t'><office:body><table:table>"
        b"<table:table-row table:number-rows-repeated='100000'>"
        b"<table:table-cell table:number-columns-repeated = '1000' office:value-type='string'>"
        b"<text:p xmlns:text='x'>a</text:p></table:table-cell></table:table-row>"
        b"</table:table></office:body></office:document-content>"
    )
    assert ods_extent(body) == 100_000 * 1000
    trailing = body.replace(
        b" office:value-type='string'><text:p xmlns:text='x'>a</text:p></table:table-cell>",
        b"/>",
    )
    assert ods_extent(trailing) == 0  # repeated empty cells are not allocated


def test_a_doctype_anywhere_is_refused():
    with pytest.raises(Refused):
        xlsx_extent(b'<!DOCTYPE x [<!ENTITY a "b">]><worksheet><sheetData/></worksheet>')


@st.composite
def _plain_sheets(draw: st.DrawFn) -> str:
    """Sheets as Excel writes them (every cell and row with ``r``), sometimes with one
    twist that must send them to the careful path."""
    row, parts = 0, []
    for _ in range(draw(st.integers(0, 8))):
        row += draw(st.integers(1, 3))
        cols = sorted(draw(st.sets(st.integers(0, 800), max_size=5)))
        cells = "".join(
            f'<c r="{_letters(c)}{row}"><v>{draw(st.integers(0, 9))}</v></c>' for c in cols
        )
        parts.append(f'<row r="{row}">{cells}</row>')
    doc = "".join(parts)
    twist = draw(st.sampled_from(["", "quote", "cell without r", "back", "amp"]))
    if twist == "quote":
        doc = doc.replace('r="', "r='", 1).replace('"><v>', "'><v>", 1)
    elif twist == "cell without r":
        doc += f'<row r="{row + 1}"><c><v>1</v></c><c r="B{row + 1}"><v>1</v></c></row>'
    elif twist == "back":
        doc += '<row r="1"><c r="A1"><v>1</v></c></row>'
    elif twist == "amp":
        doc += (
            f'<row r="{row + 1}"><c r="A{row + 1}" t="inlineStr"><is><t>a&amp;b</t></is></c></row>'
        )
    return doc


def _letters(col: int) -> str:
    out, n = "", col + 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


@settings(max_examples=300, deadline=None)
@given(_plain_sheets())
def test_the_plain_path_equals_the_careful_one(cells):
    from mailguard.attachments import sheets

    doc = sheet_xml(cells).encode()
    fast = sheets._plain_extent(doc)
    try:
        careful = sheets._Sheet().extent(doc)
    except Refused:
        assert fast is None
        return
    assert fast is None or fast == careful, (cells, fast, careful)
    if "'" not in cells and "&" not in cells and "<c>" not in cells:
        rows = [int(r) for r in __import__("re").findall(r'<row r="(\d+)"', cells)]
        if rows == sorted(rows):
            assert fast is not None  # the usual sheet takes the fast path


@pytest.mark.parametrize("quote", ['"', "'"])  # the pattern path, and the parser's
def test_measuring_grows_linearly_with_the_sheet(quote):
    from tests.support.doubling import assert_doubling_linear

    def prepare(n: int):
        rows = "".join(
            f'<row r="{r}">' + "".join(f'<c r="{c}{r}"><v>1</v></c>' for c in "ABCD") + "</row>"
            for r in range(1, n + 1)
        ).replace('"', quote)
        doc = sheet_xml(rows).encode()
        return lambda: xlsx_extent(doc)

    assert_doubling_linear(prepare, [4_000, 8_000, 16_000], what="the sheet's rows")
