"""The attachment analysis: every attached file, what it lists, what could not be read.

One pass per message, run only when an enabled rule reads attachments (the check
context's provider). Each file is recognised by its content first and its name second,
read up to the caps of ``[limits]`` (bytes, rows, cells, time; per file and per message),
and summed up as facts: distinct people, kinds of data, special-category columns. What
stopped reading is said in words that quote nothing from the file (``attachment 2 (CSV):
...``), because they reach reports under ``--redact`` too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailguard.attachments import columns
from mailguard.attachments.columns import People, Table, TableFacts, Vocabularies
from mailguard.attachments.mime import Part
from mailguard.attachments.sheets import workbook_rows
from mailguard.attachments.tables import (
    RowCap,
    decode_lines,
    delimited_rows,
    sniff,
    vcards,
)
from mailguard.attachments.zipsafe import Refused, members, open_zip
from mailguard.limits import Limits

_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SHEET_EXT = {"xlsx": "xlsx", "xlsm": "xlsx", "xltx": "xlsx", "xltm": "xlsx",
              "ods": "ods", "ots": "ods"}  # fmt: skip
_TEXT_EXT = {"csv": "csv", "tsv": "csv", "tab": "csv", "txt": "text", "text": "text",
             "dat": "text", "lst": "text", "vcf": "vcard", "vcard": "vcard"}  # fmt: skip
_TEXT_TYPES = {"text/csv": "csv", "application/csv": "csv", "text/comma-separated-values": "csv",
               "text/tab-separated-values": "csv", "text/vcard": "vcard",
               "text/x-vcard": "vcard", "text/directory": "vcard", "text/plain": "text"}  # fmt: skip
LABELS = {"csv": "CSV", "text": "text", "vcard": "vCard", "xlsx": "XLSX", "ods": "ODS",
          "zip": "ZIP", "xls": "XLS"}  # fmt: skip
_TICK = 256
"""Rows between two looks at the clock."""


@dataclass
class FileResult:
    """One file: an attachment, or a file inside an attached ZIP archive."""

    name: str
    format: str
    facts: TableFacts = field(default_factory=TableFacts)
    problem: str | None = None
    """Why it could not be inspected (encrypted, corrupt, over a limit); quotes nothing."""
    encrypted: bool = False
    over_limit: bool = False


@dataclass
class Analysis:
    """The attachments of one message, as the rules read them."""

    files: list[FileResult] = field(default_factory=list)
    people: int = 0
    """Distinct people across all files (a person in two files counts once)."""
    limits: list[str] = field(default_factory=list)
    """Caps reached, for the limits finding: what was skipped, naming no file."""

    @property
    def kinds(self) -> set[str]:
        return columns.kinds_in(f.facts for f in self.files)

    @property
    def special(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for f in self.files:
            for key, places in f.facts.special.items():
                found.setdefault(key, set()).update(f"{p} of {f.name or 'an attachment'}"
                                                    for p in places)  # fmt: skip
        return found

    @property
    def uninspected(self) -> list[FileResult]:
        return [f for f in self.files if f.problem is not None]


EMPTY = Analysis()


class _Budget:
    """The caps of one message and of the file being read."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cells = limits.max_attachments_cells
        self.bytes = limits.max_attachments_bytes
        self.until = time.monotonic() + limits.max_attachments_ms / 1000
        self.file_until = self.until

    def start_file(self) -> None:
        self.file_until = min(self.until, time.monotonic() + self.limits.max_attachment_ms / 1000)

    def rows(self, rows: Iterable[Sequence[Any]], facts: TableFacts) -> Iterator[Sequence[Any]]:
        """The rows, until a cap: then :class:`RowCap` with the reason."""
        max_rows = self.limits.max_attachment_rows
        for n, row in enumerate(rows, 1):
            if n > max_rows:
                raise RowCap(f"stopped after {max_rows:,} rows")
            self.cells -= len(row)
            if self.cells < 0:
                raise RowCap(f"stopped at {self.limits.max_attachments_cells:,} cells per message")
            if not n % _TICK:
                self.clock()
            yield row

    def clock(self) -> None:
        now = time.monotonic()
        if now >= self.file_until:
            which = "message" if now >= self.until else "attachment"
            ms = self.limits.max_attachments_ms if which == "message" else self.limits.max_attachment_ms
            raise RowCap(f"stopped after {ms:,} ms per {which}")


def analyse(parts: Sequence[Part], limits: Limits, vocab: Vocabularies,
            reached: Sequence[str] = ()) -> Analysis:  # fmt: skip
    """Read each attached file within the caps; never raises for what a file holds."""
    result = Analysis(limits=list(reached))
    people = People()
    budget = _Budget(limits)
    for index, part in enumerate(parts, 1):
        if index > limits.max_attachments:
            result.limits.append(f"attachments after the first {limits.max_attachments} not read")
            break
        if budget.bytes <= 0 or time.monotonic() >= budget.until:
            result.limits.append(f"attachments from number {index} on not read (message caps)")
            break
        budget.start_file()
        label = f"attachment {index}"
        cap = min(limits.max_attachment_bytes, budget.bytes)
        result.files += _read_part(part, label, cap, budget, people, vocab, result.limits)
        budget.bytes -= min(cap, part.encoded_size)
    result.people = people.count
    return result


def _read_part(part: Part, label: str, cap: int, budget: _Budget, people: People,
               vocab: Vocabularies, reached: list[str]) -> list[FileResult]:  # fmt: skip
    head = next(part.chunks(min(cap, 8)), b"")
    fmt = _format(part.filename, part.ctype, head)
    if fmt is None:
        return []
    if fmt in ("csv", "text", "vcard"):
        file = FileResult(part.filename, fmt)
        _read_text(part.chunks(cap), file, label, cap, budget, people, vocab, reached)
        return [file]
    data, complete = part.read(cap)
    if not complete:
        why = f"{label} ({LABELS.get(fmt, fmt)}): larger than {cap:,} bytes, not read"
        reached.append(why)
        return [FileResult(part.filename, fmt, problem=why.partition(": ")[2], over_limit=True)]
    return _read_binary(part.filename, fmt, data, label, budget, people, vocab, reached, True)


def _format(name: str, ctype: str, head: bytes) -> str | None:
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if head.startswith(_ZIP):
        return _SHEET_EXT.get(ext, "zip")
    if head.startswith(_OLE):
        return "xls" if ext in ("xls", "xlt", *_SHEET_EXT) else None
    if ext in _TEXT_EXT:
        return _TEXT_EXT[ext]
    if head.lstrip().upper().startswith(b"BEGIN:VCARD"):
        return "vcard"
    return _TEXT_TYPES.get(ctype)


def _read_binary(name: str, fmt: str, data: bytes, label: str, budget: _Budget, people: People,
                 vocab: Vocabularies, reached: list[str], outer: bool) -> list[FileResult]:  # fmt: skip
    file = FileResult(name, fmt)
    try:
        if fmt == "xls":
            _ole(data)
        if fmt == "zip":
            fmt = file.format = _zip_kind(data, budget.limits)
            if fmt == "zip":
                if not outer:
                    raise Refused("an archive inside an archive (only one level is opened)")
                return _read_zip(name, data, label, budget, people, vocab, reached)
            if fmt == "other":
                return []
        facts = file.facts
        columns.names(name, "file name", vocab, facts)
        table: Table | None = None

        def on_sheet(sheet: str) -> None:
            nonlocal table
            columns.names(sheet, f"sheet name '{sheet}'", vocab, facts)
            if any("sheet name" in p for places in facts.special.values() for p in places):
                facts.quoted = True
            table = Table(vocab, people, facts)

        try:
            for row in budget.rows(workbook_rows(data, fmt, budget.limits, on_sheet), facts):
                assert table is not None
                table.row(row)
        except RowCap as cap:
            reached.append(f"{label} ({LABELS[fmt]}): {cap}")
    except Refused as exc:
        file.problem, file.encrypted, file.over_limit = str(exc), exc.encrypted, exc.limit
        if exc.limit:
            reached.append(f"{label} ({LABELS.get(fmt, fmt)}): {exc}")
    return [file]


def _ole(data: bytes) -> None:
    if "EncryptedPackage".encode("utf-16-le") in data:
        raise Refused("encrypted (password-protected) Office document", encrypted=True)
    raise Refused("legacy Excel 97-2003 (.xls) file: not inspected")


def _zip_kind(data: bytes, limits: Limits) -> str:
    names = set(open_zip(data, limits).namelist())
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "content.xml" in names and "mimetype" in names:
        return "ods"
    if "[Content_Types].xml" in names or "mimetype" in names:
        return "other"  # a Word or PowerPoint document: not a list of people
    return "zip"


def _read_zip(name: str, data: bytes, label: str, budget: _Budget, people: People,
              vocab: Vocabularies, reached: list[str]) -> list[FileResult]:  # fmt: skip
    found: list[FileResult] = []
    wanted: Callable[[str], bool] = lambda inner: _format(inner, "", b"") is not None or inner.lower().endswith((".zip", ".xls"))  # noqa: E731
    for n, (inner, body) in enumerate(members(data, budget.limits, wanted), 1):
        where = f"{label}, file {n} inside"
        path = f"{name}/{inner}"
        if isinstance(body, Refused):
            found.append(FileResult(path, "zip", problem=str(body), encrypted=body.encrypted,
                                    over_limit=body.limit))  # fmt: skip
            if body.limit:
                reached.append(f"{where}: {body}")
            continue
        fmt = _format(inner, "", body[:8])
        if fmt in ("csv", "text", "vcard"):
            file = FileResult(path, fmt)
            _read_text([body], file, where, len(body), budget, people, vocab, reached)
            found.append(file)
        elif fmt is not None:
            found += _read_binary(path, fmt, body, where, budget, people, vocab, reached, False)
    return found


def _read_text(chunks: Iterable[bytes], file: FileResult, label: str, cap: int, budget: _Budget,
               people: People, vocab: Vocabularies, reached: list[str]) -> None:  # fmt: skip
    facts = file.facts
    columns.names(file.name, "file name", vocab, facts)
    seen = 0

    def counted(source: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal seen
        for chunk in source:
            seen += len(chunk)
            yield chunk

    lines = decode_lines(counted(chunks))
    try:
        if file.format == "vcard":
            vcards(_ticking(lines, budget), people, facts, budget.limits.max_attachment_rows)
        else:
            sample = [line for _, line in zip(range(200), lines, strict=False)]
            delimiter = sniff(sample)
            rest = _chain(sample, lines)
            if delimiter is None:
                file.format = "text"
                for line in _ticking(rest, budget):
                    columns.free_text(line, vocab, people, facts)
            else:
                table = Table(vocab, people, facts)
                for row in budget.rows(delimited_rows(rest, delimiter), facts):
                    table.row(row)
    except RowCap as exc:
        reason = str(exc) or f"stopped after {budget.limits.max_attachment_rows:,} cards"
        reached.append(f"{label} ({LABELS[file.format]}): {reason}")
        return
    if seen >= cap:
        reached.append(f"{label} ({LABELS[file.format]}): only the first {cap:,} bytes read")


def _chain(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from first
    yield from rest


def _ticking(lines: Iterator[str], budget: _Budget) -> Iterator[str]:
    for n, line in enumerate(lines, 1):
        if not n % _TICK:
            budget.clock()
        yield line
