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


class _Sheet:
    """One pass of expat over a part's XML, placing cells where calamine places them.

    Why a real XML parser, not patterns: the same sheet can be written with single
    quotes, spaces around ``=``, any namespace prefix, rows or cells without ``r``, or a
    cell reference whose row is not its row's. calamine's XML reader (quick-xml) accepts
    them all, so a pattern that missed one let a crafted two-cell sheet make calamine ask
    for 512 GB and abort the process (SIGABRT: no report, no verdict).

    calamine's rules, followed here (``xlsx/cells_reader.rs``; it expands ``<c/>`` into a
    start and an end, as expat does): only ``sheetData`` is read, up to its end;
    ``<row r>`` sets the row and its end moves to the next; ``<c r>`` sets the column,
    and every cell moves to the next column. Its range runs from the first valued cell's
    row to the LAST one's (not the lowest and highest: rows that go back wrap around in
    u32), so cells whose rows go back are refused here; the columns span the lowest to the
    highest. Cells without a value, which calamine leaves out, are counted: a bound.
    """

    def __init__(self) -> None:
        self._row = self._col = 0
        self._first = self._last = -1
        self._lo, self._hi = 1 << 62, -1
        self._state = 0  # 0 before sheetData, 1 in it, 2 after it
        self._in_cell = False

    def extent(self, doc: bytes) -> int:
        import xml.parsers.expat

        parser = xml.parsers.expat.ParserCreate()
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.StartDoctypeDeclHandler = _refuse_doctype
        try:
            parser.Parse(doc, True)
        except xml.parsers.expat.ExpatError as exc:
            raise Refused(f"corrupt XLSX sheet (not well-formed XML: {exc.code})") from None
        if self._first < 0:
            return 0
        return (self._last - self._first + 1) * (self._hi - self._lo + 1)

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        # Called for every element: the common names are tested before any split.
        local = name if ":" not in name else name.rpartition(":")[2]
        if self._state != 1:
            if self._state == 0 and local == "sheetData":
                self._state = 1
        elif local == "c":
            if self._in_cell:
                raise Refused("corrupt XLSX sheet (a cell inside a cell)")
            self._in_cell = True
            ref = attrs.get("r")
            if ref is None:
                row, col = self._row, self._col
            else:
                row, col = _cell_position(ref)
                self._col = col
            if row < self._last:
                raise Refused("corrupt XLSX sheet (cells out of row order)")
            if self._first < 0:
                self._first = row
            self._last = row
            if col < self._lo:
                self._lo = col
            if col > self._hi:
                self._hi = col
        elif local == "row":
            r = attrs.get("r")
            if r is not None:
                self._row = _row_number(r)

    def _end(self, name: str) -> None:
        if self._state != 1:
            return
        local = name if ":" not in name else name.rpartition(":")[2]
        if local == "c":
            self._in_cell = False
            self._col += 1
        elif local == "row":
            self._row += 1
            self._col = 0
        elif local == "sheetData":
            self._state = 2


def _refuse_doctype(*_: object) -> None:
    raise Refused("XML with a DOCTYPE (refused unparsed)", limit=True)


_COLUMNS: dict[str, int] = {}
"""Column letters seen, and their 0-based number: at most 3 letters, so a bounded cache."""
_DIGITS = "0123456789"


def _row_number(r: str) -> int:
    """0-based, as calamine's ``get_row``."""
    if not r.isascii() or not r.isdigit() or not 0 < int(r) <= 1 << 20:
        raise Refused("corrupt XLSX sheet (a row number out of range)")
    return int(r) - 1


def _cell_position(ref: str) -> tuple[int, int]:
    """0-based (row, column) of a reference such as ``XFD1048576``."""
    letters = ref.rstrip(_DIGITS)
    col = _COLUMNS.get(letters)
    if col is None:
        if not 0 < len(letters) <= 3 or not letters.isascii() or not letters.isalpha():
            raise Refused("corrupt XLSX sheet (a cell reference out of range)")
        col = -1
        for ch in letters.upper():
            col = (col + 1) * 26 + ord(ch) - 65
        if col >= 1 << 14:
            raise Refused("corrupt XLSX sheet (a cell reference out of range)")
        _COLUMNS[letters] = col
    return _row_number(ref[len(letters) :]), col


def xlsx_extent(sheet: bytes) -> int:
    """Cells in the rectangle calamine would allocate for this worksheet XML (an upper
    bound: empty-valued cells, which calamine leaves out, are counted)."""
    if b"sheetData" not in sheet:
        return 0
    fast = _plain_extent(sheet)
    return fast if fast is not None else _Sheet().extent(sheet)


_ANY_C = re.compile(rb"<c[\s/>]")
_PLAIN_C = re.compile(rb'<c r="([A-Z]{1,3})([0-9]{1,7})"[\s/>]')
_ANY_R = re.compile(rb"\sr\s*=")
_PREFIXED = re.compile(rb"<[A-Za-z_][\w.-]*:")


def _plain_extent(sheet: bytes) -> int | None:
    """The extent of a sheet written as Excel, LibreOffice and the usual libraries write
    one, from patterns at C speed (2 to 2.7x faster than :class:`_Sheet`); None for any other
    sheet, which :class:`_Sheet` measures. Plain means: no prefixes, no single quotes,
    references (``&``), comments, CDATA or DOCTYPE (``<!``); every cell's ``r`` first
    and in this exact form, no other ``r`` attribute but the rows', rows in order. Then
    every cell's position is its reference, as :class:`_Sheet` would find
    (tests/test_sheet_extent.py compares the two)."""
    if b"'" in sheet or b"&" in sheet or b"<!" in sheet or _PREFIXED.search(sheet) is not None:
        return None
    refs = _PLAIN_C.findall(sheet)
    cells = len(refs)
    if len(_ANY_C.findall(sheet)) != cells:
        return None
    if len(_ANY_R.findall(sheet)) != cells + sheet.count(b"<row r="):
        return None
    if not cells:
        return 0
    rows = [int(r) for _, r in refs]
    if rows != sorted(rows) or rows[0] == 0 or rows[-1] > 1 << 20:
        return None
    columns = {c for c, _ in refs}
    numbers = [_cell_position(c.decode() + "1")[1] for c in columns]
    return (rows[-1] - rows[0] + 1) * (max(numbers) - min(numbers) + 1)


class _Ods:
    """The same for an ODS ``content.xml``: repeated empty rows and cells at the end of a
    sheet (which every ODS writer emits) are not allocated; repeated content is. Parsed
    with expat for the same reason as :class:`_Sheet` (quotes, prefixes, spacing)."""

    def __init__(self, doc: bytes) -> None:
        self._doc = doc
        self.height = self.width = 0
        self._row = self._repeat = self._col = self._used = 0
        self._events = 0
        self._open: list[tuple[str, int, bool, int]] = []  # (element, col, valued, events)

    def extent(self) -> int:
        import xml.parsers.expat

        parser = xml.parsers.expat.ParserCreate()
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.StartDoctypeDeclHandler = _refuse_doctype
        self._parser = parser
        try:
            parser.Parse(self._doc, True)
        except xml.parsers.expat.ExpatError as exc:
            raise Refused(f"corrupt ODS file (not well-formed XML: {exc.code})") from None
        return self.height * self.width

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self._events += 1
        local = name.rpartition(":")[2]
        if local == "table-row":
            self._repeat, self._col, self._used = _repeats(attrs, "number-rows-repeated"), 0, 0
            self._open.append((local, 0, False, self._events))
        elif local in ("table-cell", "covered-table-cell"):
            self._col += _repeats(attrs, "number-columns-repeated")
            valued = any(k.rpartition(":")[2] == "value-type" for k in attrs)
            self._open.append((local, self._col, valued, self._events))

    def _end(self, name: str) -> None:
        local = name.rpartition(":")[2]
        if local not in ("table-row", "table-cell", "covered-table-cell") or not self._open:
            self._events += 1
            return
        element, col, valued, seen = self._open.pop()
        at = self._parser.CurrentByteIndex
        empty = seen == self._events and self._doc[at - 2 : at] == b"/>"
        self._events += 1
        if element == "table-row":
            self._row += self._repeat
            if self._used:
                self.height, self.width = self._row, max(self.width, self._used)
            self._repeat = self._col = self._used = 0
        elif not empty or valued:
            self._used = col


def _repeats(attrs: dict[str, str], local: str) -> int:
    for key, value in attrs.items():
        if key.rpartition(":")[2] == local:
            if not value.isascii() or not value.strip().isdigit():
                raise Refused("corrupt ODS file (a repeat count that is not a number)")
            return int(value)
    return 1


def ods_extent(content: bytes) -> int:
    """Cells calamine would allocate for an ODS ``content.xml`` (see :class:`_Ods`)."""
    return _Ods(content).extent()


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
    else:  # every part calamine might be pointed at, whatever its name
        extents = [xlsx_extent(body) for body in xml.values()]
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
