"""The attachment analysis: every attached file, what it lists, what could not be read.

One pass per message, run only when an enabled rule reads attachments (the check
context's provider). Each file is recognised by its content first and its name second,
read up to the caps of ``[limits]`` (bytes, rows, cells, time; per file and per message),
and summed up as facts: distinct people, kinds of data, special-category columns. What
stopped reading is said in words that quote nothing from the file (``attachment 2 (CSV):
...``), because they reach reports under ``--redact`` too.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mailguard.attachments import columns
from mailguard.attachments.columns import People, Table, Vocabularies
from mailguard.attachments.mime import Part
from mailguard.attachments.model import LABELS, Analysis, FileResult
from mailguard.attachments.sheets import workbook_rows
from mailguard.attachments.tables import RowCap, decode_lines, delimited_rows, sniff, vcards
from mailguard.attachments.zipsafe import Refused, members, open_zip
from mailguard.compressed import CompressedError, decompress, kind
from mailguard.limits import Limits

_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SHEET_EXT = {"xlsx": "xlsx", "xlsm": "xlsx", "xltx": "xlsx", "xltm": "xlsx",
              "ods": "ods", "ots": "ods"}  # fmt: skip
_TEXT_EXT = {"csv": "csv", "tsv": "csv", "tab": "csv", "txt": "text", "text": "text",
             "dat": "text", "lst": "text", "vcf": "vcard", "vcard": "vcard"}  # fmt: skip
_TEXT_TYPES = {
    "text/csv": "csv", "application/csv": "csv", "text/comma-separated-values": "csv",
    "text/tab-separated-values": "csv", "text/vcard": "vcard", "text/x-vcard": "vcard",
    "text/directory": "vcard", "text/plain": "text",
}  # fmt: skip
_COMPRESSED_EXT = ("gz", "bz2", "xz", "tgz", "tbz", "tbz2", "txz")
_TAR_EXT = ("tgz", "tbz", "tbz2", "txz", "tar")
SNIFF_HEAD = 4096
"""Decoded bytes looked at to tell a nameless or misnamed file's content."""
_CONTROL = bytes(c for c in range(32) if c not in (9, 10, 12, 13))
_TICK = 256
"""Rows between two looks at the clock."""


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

    def rows(self, rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
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
            limits = self.limits
            ms = limits.max_attachments_ms if which == "message" else limits.max_attachment_ms
            raise RowCap(f"stopped after {ms:,} ms per {which}")

    def ticking(self, lines: Iterator[str]) -> Iterator[str]:
        """The lines, looking at the clock every few hundred."""
        for n, line in enumerate(lines, 1):
            if not n % _TICK:
                self.clock()
            yield line


def analyse(
    parts: Sequence[Part], limits: Limits, vocab: Vocabularies, reached: Sequence[str] = ()
) -> Analysis:
    """Read each attached file within the caps; never raises for what a file holds."""
    reader = _Reader(limits, vocab, list(reached))
    files: list[FileResult] = []
    budget = reader.budget
    for index, part in enumerate(parts, 1):
        if index > limits.max_attachments:
            reader.reached.append(f"attachments after the first {limits.max_attachments} not read")
            break
        if budget.bytes <= 0 or time.monotonic() >= budget.until:
            reader.reached.append(f"attachments from number {index} on not read (message caps)")
            break
        budget.start_file()
        cap = min(limits.max_attachment_bytes, budget.bytes)
        files += reader.part(part, f"attachment {index}", cap)
        budget.bytes -= min(cap, part.encoded_size)
    return Analysis(files, reader.people.count, reader.reached)


def _format(name: str, ctype: str, head: bytes) -> str | None:
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if kind(head) is not None:
        return "compressed"
    if head.startswith(_ZIP):
        return _SHEET_EXT.get(ext, "zip")
    if head.startswith(_OLE):
        return "ole" if ext in ("xls", "xlt", *_SHEET_EXT) else None
    if ext in _TEXT_EXT:
        return _TEXT_EXT[ext]
    if head.lstrip().upper().startswith(b"BEGIN:VCARD"):
        return "vcard"
    return _TEXT_TYPES.get(ctype)


def _in_zip(name: str) -> bool:
    """Whether a file inside a ZIP archive is worth inflating (by its name); a compressed
    one (``list.csv.gz``) when what it holds is."""
    stem, _, ext = name.rpartition(".")
    if stem and ext.lower() in _COMPRESSED_EXT:
        return ext.lower() in _TAR_EXT or _in_zip(stem)
    return _format(name, "", b"") is not None or name.lower().endswith((".zip", ".xls"))


def _unpacked_name(name: str) -> str:
    """The name of what a compressed file holds: ``list.csv.gz`` holds ``list.csv``."""
    stem, _, ext = name.rpartition(".")
    ext = ext.lower()
    if not stem or ext not in _COMPRESSED_EXT:
        return ""
    return f"{stem}.tar" if ext.startswith("t") else stem


class _Reader:
    """Reads the files of one message: the caps, the people seen, the caps reached."""

    def __init__(self, limits: Limits, vocab: Vocabularies, reached: list[str]) -> None:
        self.budget = _Budget(limits)
        self.limits = limits
        self.vocab = vocab
        self.people = People()
        self.reached = reached

    def part(self, part: Part, label: str, cap: int) -> list[FileResult]:
        head = part.head(16)  # bzip2 is told by its first ten bytes
        fmt = _format(part.filename, part.ctype, head)
        if fmt is None:
            # No name, application/octet-stream, or a name that says nothing true ("data.bin",
            # a list called "notes.pdf"): what the first few KB hold decides.
            fmt = self.sniff_text(part.head(SNIFF_HEAD))
            if fmt is None:
                return []
        if fmt in ("csv", "text", "vcard"):
            file = FileResult(part.filename, fmt, label)
            self.text(part.chunks(cap), file, cap)
            return [file]
        data, complete = part.read(cap)
        if not complete:
            why = f"larger than {cap:,} bytes, not read"
            self.reached.append(f"{label} ({LABELS.get(fmt, fmt)}): {why}")
            return [FileResult(part.filename, fmt, label, problem=why, over_limit=True)]
        files = self.binary(part.filename, fmt, data, label, outer=True)
        for file in files:
            if part.cut and file.problem and not file.encrypted:
                file.problem = f"cut short, the message ends inside it ({file.problem})"
        return files

    def binary(self, name: str, fmt: str, data: bytes, label: str, outer: bool) -> list[FileResult]:
        file = FileResult(name, fmt, label)
        try:
            if fmt == "compressed":
                if not outer:
                    raise Refused("a compressed file inside an archive (only one level is opened)")
                return self.unpacked(name, data, label)
            if fmt == "ole":
                _ole(data)
            if fmt == "zip":
                fmt = file.format = _zip_kind(data, self.limits)
                if fmt == "zip":
                    if not outer:
                        raise Refused("an archive inside an archive (only one level is opened)")
                    return self.archive(name, data, label)
                if fmt == "other":
                    return []
            self.workbook(file, data, fmt)
        except Refused as exc:
            file.problem, file.encrypted, file.over_limit = str(exc), exc.encrypted, exc.limit
            if exc.limit:
                self.reached.append(f"{label} ({LABELS.get(fmt, fmt)}): {exc}")
        return [file]

    def unpacked(self, name: str, data: bytes, label: str) -> list[FileResult]:
        """A gzip, bzip2 or xz file: unpacked within the per-file byte cap (the bounded
        unpacker of message files, so a bomb costs what the cap allows), then read as the
        file it holds, told by its inner name or its content. :class:`Refused` when it
        cannot be unpacked, or holds a tar archive or another compressed file."""
        cap = max(0, min(self.limits.max_attachment_bytes, self.budget.bytes))
        try:
            inner = decompress(data, cap, "limits.max_attachment_bytes")
        except CompressedError as exc:
            raise Refused(str(exc), limit=exc.over_cap) from None
        self.budget.bytes -= len(inner)
        inner_name = _unpacked_name(name)
        if inner_name.lower().endswith(".tar") or inner[257:262] == b"ustar":
            raise Refused("a compressed tar archive: not inspected")
        fmt = _format(inner_name, "", inner[:16]) or self.sniff_text(inner[:SNIFF_HEAD])
        if fmt is None:
            return []
        if fmt == "compressed":
            raise Refused("compressed twice (only one level is unpacked)")
        if fmt in ("csv", "text", "vcard"):
            file = FileResult(name, fmt, label)
            self.text([inner], file, len(inner) + 1)
            return [file]
        return self.binary(name, fmt, inner, label, outer=True)

    def sniff_text(self, head: bytes) -> str | None:
        """``"csv"`` when these first bytes of a file are text whose first line is a header
        naming a kind of personal data (``Name,Email,...``) and whose lines agree on a
        delimiter (or a one-column list), else ``None``: a file's name or type can be
        missing or wrong, and a list sent as ``application/octet-stream`` is still a list.
        Binary files fail at once (control bytes), so images and PDFs cost one scan of
        :data:`SNIFF_HEAD` bytes."""
        if len(head.translate(None, _CONTROL)) != len(head) or not head.strip():
            return None
        lines = list(decode_lines([head]))
        if len(head) >= SNIFF_HEAD and len(lines) > 1:
            lines.pop()  # probably cut short
        sample = [line for line in lines if line.strip()]
        if len(sample) < 2:
            return None
        delimiter = sniff(sample)
        if delimiter is None:
            return "csv" if self._one_column(sample) else None
        fields = next(delimited_rows(iter(sample[:1]), delimiter), [])
        vocab = self.vocab
        named = (f.strip() for f in fields if len(f.strip()) <= 80)
        return "csv" if any(vocab.kinds.find(f) or vocab.special.find(f) for f in named) else None

    def workbook(self, file: FileResult, data: bytes, fmt: str) -> None:
        facts = file.facts
        columns.names(file.name, "file name", self.vocab, facts)
        table = Table(self.vocab, self.people, facts)

        def on_sheet(sheet: str) -> None:
            nonlocal table
            before = len(facts.special)
            columns.names(sheet, f"sheet name '{sheet}'", self.vocab, facts)
            facts.quoted = facts.quoted or len(facts.special) > before
            table = Table(self.vocab, self.people, facts)

        try:
            for row in self.budget.rows(workbook_rows(data, fmt, self.limits, on_sheet)):
                table.row(row)
        except RowCap as cap:
            self.reached.append(f"{file.label} ({LABELS[fmt]}): {cap}")

    def archive(self, name: str, data: bytes, label: str) -> list[FileResult]:
        found: list[FileResult] = []
        for n, (inner, body) in enumerate(members(data, self.limits, _in_zip), 1):
            where = f"{label}, file {n} inside it"
            path = f"{name}/{inner}"
            if isinstance(body, Refused):
                problem = FileResult(path, "zip", where, problem=str(body))
                problem.encrypted, problem.over_limit = body.encrypted, body.limit
                found.append(problem)
                if body.limit:
                    self.reached.append(f"{where}: {body}")
                continue
            fmt = _format(inner, "", body[:16])
            if fmt in ("csv", "text", "vcard"):
                file = FileResult(path, fmt, where)
                self.text([body], file, len(body) + 1)
                found.append(file)
            elif fmt is not None:
                found += self.binary(path, fmt, body, where, outer=False)
        return found

    def text(self, chunks: Iterable[bytes], file: FileResult, cap: int) -> None:
        facts = file.facts
        columns.names(file.name, "file name", self.vocab, facts)
        seen = 0

        def counted(source: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal seen
            for chunk in source:
                seen += len(chunk)
                yield chunk

        lines = decode_lines(counted(chunks))
        try:
            if file.format == "vcard":
                vcards(
                    self.budget.ticking(lines), self.people, facts, self.limits.max_attachment_rows
                )
            else:
                self.delimited(lines, file)
        except RowCap as exc:
            reason = str(exc) or f"stopped after {self.limits.max_attachment_rows:,} cards"
            self.reached.append(f"{file.label} ({LABELS[file.format]}): {reason}")
            return
        if seen >= cap:
            self.reached.append(
                f"{file.label} ({LABELS[file.format]}): only the first {cap:,} bytes read"
            )

    def delimited(self, lines: Iterator[str], file: FileResult) -> None:
        sample = [line for _, line in zip(range(200), lines, strict=False)]
        delimiter = sniff(sample)
        rest = itertools.chain(sample, lines)
        rows: Iterable[list[str]]
        if delimiter is not None:
            rows = delimited_rows(rest, delimiter)
        elif self._one_column(sample):
            rows = ([line.strip()] for line in rest)
        else:
            file.format = "text"
            for line in self.budget.ticking(rest):
                columns.free_text(line, self.vocab, self.people, file.facts)
            return
        table = Table(self.vocab, self.people, file.facts)
        for row in self.budget.rows(rows):
            table.row(row)

    def _one_column(self, sample: list[str]) -> bool:
        """A list with a header and one value a line ("Email", then addresses)."""
        first = next((line.strip() for line in sample if line.strip()), "")
        return len(first) <= 40 and bool(self.vocab.kinds.find(first))


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
