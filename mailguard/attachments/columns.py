"""What a table's columns hold, and how many distinct people its rows describe.

A row describes a person when it carries an email address, a phone number (in a phone
column), a postal address (in an address column), a name with a date of birth, or a
national identifier that passes its check in a column headed as one. Rows that repeat an
identifier already seen are the same person. Column headers are matched with the
vocabulary in ``rules/data/attachment_columns.toml``; special-category headers also with
the sensitive-context vocabulary (``rules/data/sensitive_terms.toml``), so one list of
words decides what is sensitive in a message and in its attachments.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailguard.attachments.identifiers import CANDIDATE, VALIDATORS
from mailguard.attachments.model import TableFacts
from mailguard.rules import data_path
from mailguard.sensitive import Category, Vocabulary

EMAIL = re.compile(
    r"[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}"
)
_DIGITS = re.compile(r"\D")
HEADER_ROWS = 5
"""Rows at the top of a table searched for its header (titles and blank rows come first)."""
KEYWORD_WINDOW = 40
"""Characters before an identifier in free text searched for the keyword naming it."""


@dataclass(frozen=True, slots=True)
class Vocabularies:
    kinds: Vocabulary
    special: Vocabulary
    groups: dict[str, str]
    """Kind key -> its group ("contact details", "identity", "identifiers")."""


@functools.cache
def vocabularies(extra_terms: tuple[str, ...] = ()) -> Vocabularies:
    """Header vocabularies, built once per set of the ``[sensitive]`` extra terms."""
    columns = tomllib.loads(data_path("attachment_columns.toml").read_text(encoding="utf-8"))
    shipped = tomllib.loads(data_path("sensitive_terms.toml").read_text(encoding="utf-8"))
    kinds = [
        (Category(key, spec["label"], spec["group"]), spec["terms"], spec.get("exclude", []))
        for key, spec in columns["kinds"].items()
    ]
    special = []
    for key, spec in shipped["categories"].items():
        extra = columns["special"].get(key, {})
        special.append((
            Category(key, spec["label"], spec["gdpr"]),
            [*spec["terms"], *extra.get("terms", [])],
            [*spec.get("exclude", []), *extra.get("exclude", [])],
        ))  # fmt: skip
    if extra_terms:
        custom = Category("custom", "organisation-defined", "configured")
        special.append((custom, list(extra_terms), []))
    groups = {key: spec["group"] for key, spec in columns["kinds"].items()}
    return Vocabularies(Vocabulary(kinds), Vocabulary(special), groups)


@dataclass
class People:
    """Distinct people across the attachments of one message."""

    seen: set[str] = field(default_factory=set)
    count: int = 0

    def add(self, keys: list[str]) -> bool:
        """Count a row with these identifying values unless one was seen before."""
        seen = self.seen
        new = seen.isdisjoint(keys)
        seen.update(keys)
        if new:
            self.count += 1
        return new


class Table:
    """Reads the rows of one table: finds its header, then counts people row by row."""

    def __init__(self, vocab: Vocabularies, people: People, facts: TableFacts) -> None:
        self.vocab = vocab
        self.people = people
        self.facts = facts
        self.columns: dict[int, str] = {}
        self.header_seen = False
        self._looked = 0
        self._phone: list[int] = []
        self._address: list[int] = []
        self._name: list[int] = []
        self._dob: list[int] = []
        self._ids: list[tuple[int, str, Callable[[str], bool]]] = []

    def row(self, cells: Sequence[Any]) -> None:
        """One row of cells (strings, numbers, dates or ``None``)."""
        values = [c.strip() if type(c) is str else _text(c) for c in cells]
        if not self.header_seen and self._looked < HEADER_ROWS:
            if not any(values):
                return
            self._looked += 1
            if self._header(values):
                return
        keys = self._identifiers(values)
        self.facts.rows += 1
        if keys and self.people.add(keys):
            self.facts.people += 1

    def _header(self, values: list[str]) -> bool:
        words = [v for v in values if v]
        if sum(1 for v in words if _looks_numeric(v)) * 2 > len(words):
            return False
        columns: dict[int, str] = {}
        special: list[tuple[str, str]] = []
        for i, value in enumerate(values):
            if not value or len(value) > 80:
                continue
            found = self.vocab.kinds.find(value)
            if found:
                columns[i] = found[0][0].key
            for category, _ in self.vocab.special.find(value):
                special.append((category.key, f"column '{value}'"))
        if not columns and not special:
            return False
        self.header_seen = True
        self.columns = columns
        self._phone = [i for i, k in columns.items() if k == "phone"]
        self._address = [i for i, k in columns.items() if k == "address"]
        self._name = [i for i, k in columns.items() if k == "name"]
        self._dob = [i for i, k in columns.items() if k == "date_of_birth"]
        self._ids = [(i, k, VALIDATORS[k]) for i, k in columns.items() if k in VALIDATORS]
        for key, where in special:
            self.facts.mark(key, where)
            self.facts.quoted = True
        return True

    def _identifiers(self, values: list[str]) -> list[str]:
        keys: list[str] = []
        kinds = self.facts.kinds
        n = len(values)
        for i in self._phone:
            if i < n:
                digits = _DIGITS.sub("", values[i])
                if 7 <= len(digits) <= 15:
                    keys.append("p" + digits[-9:])
                    kinds.add("phone")
        for i in self._address:
            if i < n and len(values[i]) >= 3:
                keys.append("a" + values[i].lower())
                kinds.add("address")
        for i, kind, check in self._ids:
            if i < n and values[i] and check(values[i]):
                keys.append("i" + values[i].replace(" ", "").upper())
                kinds.add(kind)
        joined = "\x00".join(values)
        if "@" in joined:
            for m in EMAIL.finditer(joined):
                keys.append("e" + m.group().lower())
                kinds.add("email")
        if self._name:
            name = " ".join(values[i] for i in self._name if i < n).strip().lower()
            dob = next((values[i] for i in self._dob if i < n and values[i]), "")
            if name and dob:
                keys.append("n" + name + dob)
                kinds.update(("name", "date_of_birth"))
            elif name and keys:
                kinds.add("name")
        return keys


def free_text(text: str, vocab: Vocabularies, people: People, facts: TableFacts) -> None:
    """Text that is no table: each distinct email address is a person; identifiers count
    only with their keyword within :data:`KEYWORD_WINDOW` characters before them."""
    for m in EMAIL.finditer(text):
        facts.kinds.add("email")
        if people.add(["e" + m.group().lower()]):
            facts.people += 1
    for m in CANDIDATE.finditer(text):
        before = text[max(0, m.start() - KEYWORD_WINDOW) : m.start()]
        for category, _ in vocab.kinds.find(before):
            check = VALIDATORS.get(category.key)
            if check is not None and check(m.group()):
                facts.kinds.add(category.key)
                if people.add(["i" + m.group().replace(" ", "").upper()]):
                    facts.people += 1
                break


def names(text: str, where: str, vocab: Vocabularies, facts: TableFacts) -> None:
    """A file or sheet name that marks special-category data ("HIV clinic list.xlsx")."""
    for category, _ in vocab.special.find(text):
        facts.mark(category.key, where)


def _text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, float) and cell.is_integer() and abs(cell) < 1e20:
        return str(int(cell))
    return str(cell)


def _looks_numeric(value: str) -> bool:
    return value.replace(".", "", 1).replace(",", "").replace("-", "").replace(" ", "").isdigit()
