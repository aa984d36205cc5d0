"""What the attachment analysis found: plain data, importable without the readers.

The check context and the milter import this (and :func:`mailguard.attachments.might_attach`)
on every start; the readers (calamine, csv, zipfile, the vocabularies) load only when a
message carries a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LABELS = {"csv": "CSV", "text": "text", "vcard": "vCard", "xlsx": "XLSX", "ods": "ODS",
          "zip": "ZIP", "ole": "Office", "compressed": "compressed"}  # fmt: skip


@dataclass
class TableFacts:
    """What one table (a sheet, a CSV file, a vCard file) was found to hold."""

    people: int = 0
    rows: int = 0
    kinds: set[str] = field(default_factory=set)
    special: dict[str, set[str]] = field(default_factory=dict)
    """Category key -> where it was seen ("column 'Diagnosis'", "sheet name", "file name")."""
    quoted: bool = False
    """Whether ``special`` quotes column or sheet names (withheld under ``--redact``)."""

    def mark(self, category: str, where: str) -> None:
        self.special.setdefault(category, set()).add(where)

    def merge(self, other: TableFacts) -> None:
        self.people += other.people
        self.rows += other.rows
        self.kinds |= other.kinds
        for key, places in other.special.items():
            self.special.setdefault(key, set()).update(places)
        self.quoted = self.quoted or other.quoted


@dataclass
class FileResult:
    """One file: an attachment, or a file inside an attached ZIP archive."""

    name: str
    format: str
    label: str = ""
    """How reports name it without quoting its name: ``attachment 2``."""
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
        found: set[str] = set()
        for f in self.files:
            found |= f.facts.kinds
        return found

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
