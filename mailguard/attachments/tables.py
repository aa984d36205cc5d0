"""Delimited text (CSV, TSV, plain-text tables) and vCards, read as a stream of lines.

The encoding is sniffed from a byte-order mark or tried as UTF-8, else read as
Windows-1252 (what spreadsheet exports from Excel on Windows write); the delimiter is the
one among ``, ; TAB |`` that splits the first lines into the same number of fields. Text
whose lines agree on no delimiter is free text (see :func:`columns.free_text`).

vCards are counted by a tolerant line reader rather than parsed: phone exports from
Android and iOS break strict parsers (vCard 2.1 quoted-printable, ``item1.EMAIL`` groups,
missing ``VERSION``), and all that matters is how many cards carry an email address, a
phone number, a postal address or a name with a birthday.
"""

from __future__ import annotations

import codecs
import csv
from collections import Counter
from collections.abc import Iterable, Iterator

from mailguard.attachments.columns import EMAIL, People
from mailguard.attachments.model import TableFacts
from mailguard.deadline import checkpoint

SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 40
MAX_LINE = 1 << 20
"""Longest line read (1 MiB): a longer one is cut, so a file with no line breaks cannot
make one string the size of the attachment."""
DELIMITERS = (",", ";", "\t", "|")


class RowCap(Exception):
    """The row cap was reached: the caller reports what was skipped."""


def decode_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines of text from byte chunks, the encoding sniffed from the first chunk."""
    it = iter(chunks)
    first = b""
    for chunk in it:
        first += chunk
        if len(first) >= SNIFF_BYTES:
            break
    decoder = codecs.getincrementaldecoder(_encoding(first))("replace")
    carry = ""
    for chunk in _chain(first, it):
        checkpoint()
        text = carry + decoder.decode(chunk)
        lines = text.splitlines(keepends=True)
        carry = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
        if len(carry) > MAX_LINE:
            carry = carry[:MAX_LINE]
        yield from lines
    tail = carry + decoder.decode(b"", final=True)
    if tail:
        yield tail


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = head[:4096]
    if sample and sample.count(0) * 3 > len(sample):  # UTF-16 without a BOM
        return "utf-16-le" if sample[1:2] == b"\x00" else "utf-16-be"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the chunk's end
            return "cp1252"
    return "utf-8"


def sniff(lines: list[str]) -> str | None:
    """The delimiter that splits the sample lines into the same number of fields, if any."""
    sample = [line for line in lines if line.strip()][:SNIFF_LINES]
    if not sample:
        return None
    best, best_fields = None, 1
    for delimiter in DELIMITERS:
        counts = Counter(line.count(delimiter) for line in sample)
        fields, agree = counts.most_common(1)[0]
        if fields and agree * 10 >= len(sample) * 8 and fields + 1 > best_fields:
            best, best_fields = delimiter, fields + 1
    return best


def delimited_rows(lines: Iterator[str], delimiter: str) -> Iterator[list[str]]:
    """Rows of delimited text; a damaged quote ends at the line, not at the end of file."""
    csv.field_size_limit(MAX_LINE)
    reader = csv.reader(_bounded(lines), delimiter=delimiter, strict=False)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            continue


def _bounded(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        yield line.replace("\x00", "")


def vcards(lines: Iterable[str], people: People, facts: TableFacts, max_rows: int) -> None:
    """Count the cards that describe a person; raises :class:`RowCap` at ``max_rows``."""
    keys: list[str] = []
    name = birthday = ""
    open_card = False
    for raw in lines:
        checkpoint()
        line = raw.rstrip("\r\n")
        if line[:1] in (" ", "\t"):
            continue  # a folded continuation: the property was already counted
        prop, _, value = line.partition(":")
        prop = prop.partition(";")[0].rpartition(".")[2].strip().upper()
        value = value.strip()
        if prop == "BEGIN" and value.upper() == "VCARD":
            open_card, keys, name, birthday = True, [], "", ""
        elif prop == "END" and value.upper() == "VCARD":
            if open_card:
                _card(keys, name, birthday, people, facts)
                if facts.rows >= max_rows:
                    raise RowCap
            open_card = False
        elif not open_card or not value:
            continue
        elif prop == "EMAIL":
            m = EMAIL.search(value)
            if m:
                keys.append("e" + m.group().lower())
                facts.kinds.add("email")
        elif prop == "TEL":
            digits = "".join(ch for ch in value if ch.isdigit())
            if len(digits) >= 7:
                keys.append("p" + digits[-9:])
                facts.kinds.add("phone")
        elif prop == "ADR":
            if value.replace(";", "").strip():
                keys.append("a" + value.lower())
                facts.kinds.add("address")
        elif prop in ("FN", "N"):
            name = name or value.lower()
        elif prop == "BDAY":
            birthday = value
    if open_card:  # a file cut off inside its last card
        _card(keys, name, birthday, people, facts)


def _card(keys: list[str], name: str, birthday: str, people: People, facts: TableFacts) -> None:
    facts.rows += 1
    if name and birthday:
        keys.append("n" + name + birthday)
        facts.kinds.update(("name", "date_of_birth"))
    elif name and keys:
        facts.kinds.add("name")
    if keys and people.add(keys):
        facts.people += 1
