"""Sensitive-context detection: does merely being on this list reveal something?

A newsletter from a gender identity clinic, an HIV charity's advisory board or a probation
service tells every recipient something about every other recipient, even if the text is
harmless. The vocabulary is data (``rules/data/sensitive_terms.toml``) so that it can be
reviewed and extended without touching code.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mailguard.rules import data_path


@dataclass(frozen=True, slots=True)
class Category:
    key: str
    label: str
    gdpr: str
    pattern: re.Pattern[str]
    exclude: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class Match:
    category: Category
    term: str
    where: str


def _term_regex(term: str) -> str:
    prefix = term.endswith("*")
    words = term.rstrip("*").split()
    body = r"\s+".join(re.escape(w) for w in words)
    return rf"\b{body}\w*" if prefix else rf"\b{body}\b"


def _compile(terms: Iterable[str]) -> re.Pattern[str] | None:
    parts = sorted(
        {_term_regex(t.strip().lower()) for t in terms if t.strip()}, key=len, reverse=True
    )
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


@functools.cache
def vocabulary(extra_terms: tuple[str, ...] = ()) -> tuple[Category, ...]:
    """The shipped categories, plus a ``custom`` one from the rule's ``extra_terms``."""
    data = tomllib.loads(data_path("sensitive_terms.toml").read_text(encoding="utf-8"))
    categories = []
    for key, spec in data["categories"].items():
        pattern = _compile(spec["terms"])
        if pattern is not None:
            categories.append(
                Category(
                    key, spec["label"], spec["gdpr"], pattern, _compile(spec.get("exclude", []))
                )
            )
    custom = _compile(extra_terms)
    if custom is not None:
        categories.append(Category("custom", "organisation-defined", "configured", custom, None))
    return tuple(categories)


def detect(
    texts: Mapping[str, str], categories: Iterable[Category], enabled: frozenset[str] | None = None
) -> list[Match]:
    """Every (category, term, where) found; one match per category and place is enough."""
    found: list[Match] = []
    for category in categories:
        if enabled is not None and category.key not in enabled:
            continue
        for where, text in texts.items():
            if not text:
                continue
            if category.exclude is not None:
                text = category.exclude.sub(" ", text)
            m = category.pattern.search(text)
            if m is not None:
                found.append(Match(category, " ".join(m.group().lower().split()), where))
    return found
