"""Spreadsheets (XLSX, XLSM, ODS) read with python-calamine, after their extent is known.

Calamine is fast and runs no macros, but it allocates a sheet as one dense rectangle from
its first to its last used cell, and aborts the whole process when that fails: one cell at
XFD1048576 next to one at A1 asks for 17 billion cells, and an ODS cell repeated 1,000
columns wide on 100,000 repeated rows for 100 million. So the sheet XML is measured first
(cell references, repeat counts) and a sheet whose rectangle is over
``limits.max_attachment_cells`` is never handed to it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from typing import Any

from mailguard.attachments.zipsafe import Refused, office_copy
from mailguard.limits import Limits

# Attribute runs are bounded ({0,2000}): an unclosed tag must not make every later start
# scan to the end of the file (quadratic time).
_ROW_REF = re.compile(rb"<(?:\w+:)?row\b[^>]{0,2000}?\sr=\"(\d{1,9})\"")
_CELL_REF = re.compile(rb"<(?:\w+:)?c\b[^>]{0,2000}?\sr=\"([A-Za-z]{1,5})\d{1,9}\"")
_CELL = re.compile(rb"<(?:\w+:)?c[\s/>]")
_ODS_TOKEN = re.compile(
    rb"<(/?)table:(table-row|table-cell|covered-table-cell)\b([^>]{0,2000}?)(/?)>"
)
_ROWS_REPEATED = re.compile(rb"number-rows-repeated=\"(\d+)\"")
_COLS_REPEATED = re.compile(rb"number-columns-repeated=\"(\d+)\"")
_VALUE = re.compile(rb"value-type=")


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ch - 64
    return n


def xlsx_extent(sheet: bytes) -> int:
    """Cells in the rectangle calamine would allocate for this worksheet XML (an upper
    bound: cells without a reference are each counted as a column of their own)."""
    rows = [int(r) for r in _ROW_REF.findall(sheet)]
    height = max(rows, default=0)
    refs = _CELL_REF.findall(sheet)
    width = max((_column_number(c) for c in set(refs)), default=0)
    unreferenced = len(_CELL.findall(sheet)) - len(refs)
    if unreferenced > 0:
        width += unreferenced
        height = max(height, len(rows), 1)
    return height * width


def ods_extent(content: bytes) -> int:
    """The same for an ODS ``content.xml``: repeated empty rows and cells at the end of a
    sheet (which every ODS writer emits) are not allocated; repeated content is."""
    height = width = 0
    row = repeat = col = used = 0
    for m in _ODS_TOKEN.finditer(content):
        closing, element, attrs, empty = m.groups()
        if element == b"table-row":
            if not closing:
                r = _ROWS_REPEATED.search(attrs)
                repeat, col, used = (int(r.group(1)) if r else 1), 0, 0
            if closing or empty:
                row += repeat
                if used:
                    height, width = row, max(width, used)
                repeat = col = used = 0
        elif not closing:
            c = _COLS_REPEATED.search(attrs)
            col += int(c.group(1)) if c else 1
            if not empty or _VALUE.search(attrs):
                used = col
    return height * width


def workbook_rows(
    data: bytes, fmt: str, limits: Limits, on_sheet: Callable[[str], None]
) -> Iterator[list[Any]]:
    """Rows of every sheet, first to last; ``on_sheet`` is called with each sheet's name
    before its rows. Raises :class:`Refused` for what cannot be read safely."""
    import python_calamine  # imported on first use: most messages carry no spreadsheet

    copy, xml = office_copy(data, limits)
    if fmt == "ods":
        content = xml.get("content.xml")
        if content is None:
            raise Refused("corrupt ODS file (no content.xml)")
        extents = [ods_extent(content)]
    else:
        extents = [xlsx_extent(body) for name, body in xml.items()
                   if name.startswith("xl/worksheets/") and name.endswith(".xml")]  # fmt: skip
    biggest = max(extents, default=0)
    if biggest > limits.max_attachment_cells:
        raise Refused(
            f"a sheet spans {biggest:,} cells (limit {limits.max_attachment_cells:,})", limit=True
        )
    try:
        book = python_calamine.CalamineWorkbook.from_object(io.BytesIO(copy))
        names = list(book.sheet_names)
    except python_calamine.PasswordError:
        raise Refused("password-protected workbook", encrypted=True) from None
    except Exception as exc:  # a Rust-side parse error of any kind
        raise Refused(f"corrupt {fmt.upper()} file ({type(exc).__name__})") from None
    for name in names:
        try:
            sheet = book.get_sheet_by_name(name)
            rows = sheet.iter_rows()
        except Exception as exc:
            raise Refused(f"corrupt {fmt.upper()} sheet ({type(exc).__name__})") from None
        on_sheet(name)
        try:
            yield from rows
        except Exception as exc:  # a cell or row calamine cannot convert
            raise Refused(f"corrupt {fmt.upper()} sheet ({type(exc).__name__})") from None
