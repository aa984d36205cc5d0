"""Sensitive-context detection: does merely being on this list reveal something?

A newsletter from a gender identity clinic, an HIV charity's advisory board or a probation
service tells every recipient something about every other recipient, even if the text is
harmless. The vocabulary is data (``rules/data/sensitive_terms.toml``) so that it can be
reviewed and extended without touching code.

Matching works on words, not on one big regular expression: hundreds of alternatives in a
Python regex are tried one by one at every position (about 5 ms for a 2,000-character
text), whereas splitting the text into words once and intersecting with the vocabulary's
first words is about a hundred times faster and behaves the same way. A term matches
whole words in sequence, case-insensitively; punctuation inside a term (``self-harm``,
``women's aid``) matches any punctuation or space; a trailing ``*`` makes the last word a
prefix (``diagnos*``).
"""

from __future__ import annotations

import functools
import operator
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import compress, repeat
from typing import Any

from mailguard.deadline import checkpoint
from mailguard.errors import ConfigError
from mailguard.rules import data_path


def _separator_table(end: int = 0x3000) -> dict[int, str]:
    """Every punctuation, symbol, space or control character below U+3000 becomes a space."""
    return {
        cp: " "
        for cp in range(end)
        if unicodedata.category(chr(cp))[0] in "PSZC" and not chr(cp).isspace()
    }


_ASCII_SEPARATORS = bytes(ord(_separator_table(128).get(cp, chr(cp))) for cp in range(256))
_separators: dict[int, str] | None = None
"""The full table, built on the first text that is not ASCII (12,288 code points: ~4 ms
of every start-up otherwise)."""


def _words(text: str) -> list[str]:
    """Lower-case words: ``translate`` + ``split`` run in C, 3x faster than ``\\w+``.

    ASCII text (most mail) goes through ``bytes.translate`` with a 256-byte table, several
    times faster than ``str.translate`` with a dict; the table maps exactly the ASCII
    characters that :func:`_separator_table` maps (tests/test_fast_paths.py compares them).
    """
    if text.isascii():
        return text.lower().encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii").split()
    return _words_careful(text)


def _words_careful(text: str) -> list[str]:
    """:func:`_words` for any text: the reference for its ASCII path."""
    global _separators
    if _separators is None:
        _separators = _separator_table()
    return text.lower().translate(_separators).split()


_KEY = 3  # prefix terms are indexed by their first three characters
_SEPARATOR = "zqxjseparatorzqxj"


@dataclass(frozen=True, slots=True)
class SensitiveSettings:
    """The ``[sensitive]`` config section: the detection's own settings.

    Several rules use the detection (MG-family rules that lower their thresholds, the
    sensitive-context rule that reports it), so its settings belong to none of them.
    """

    enabled: bool = True
    categories: tuple[str, ...] = ()
    """Category keys of the shipped vocabulary to use; empty means all."""
    extra_terms: tuple[str, ...] = ()
    """Your own terms, reported as category ``custom``."""

    @classmethod
    def from_mapping(cls, data: Any, where: str, fallback: Mapping[str, Any]) -> SensitiveSettings:
        """Validate the section; keys it does not set come from ``fallback`` (old places)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a table")
        unknown = set(data) - {"enabled", "categories", "extra_terms"}
        if unknown:
            known = "categories, enabled, extra_terms"
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {known}")
        merged = {**fallback, **data}
        enabled = merged.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled: expected true or false")
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("categories", "extra_terms"):
            value = merged.get(key, ())
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.{key}: expected a list of strings")
            lists[key] = tuple(value)
        shipped = {c.key for c in vocabulary().categories}
        wrong = sorted(set(lists["categories"]) - shipped)
        if wrong:
            raise ConfigError(f"{where}.categories: unknown {wrong}; known: {sorted(shipped)}")
        return cls(enabled, lists["categories"], lists["extra_terms"])


@dataclass(frozen=True, slots=True)
class Category:
    key: str
    label: str
    gdpr: str


@dataclass(frozen=True, slots=True)
class Match:
    category: Category
    term: str
    where: str


@dataclass(frozen=True, slots=True)
class _Term:
    category: int
    words: tuple[str, ...]
    prefix: bool  # the last word is a prefix
    exclude: bool
    order: int = 0
    """Rank among terms starting with the same word, as the careful matcher visits them:
    a tie at one position (``patient`` and ``patient group``) goes to the same term."""

    def matches_at(self, words: list[str], i: int) -> bool:
        n = len(self.words)
        if i + n > len(words):
            return False
        last = n - 1
        for k, want in enumerate(self.words):
            got = words[i + k]
            if k == last and self.prefix:
                if not got.startswith(want):
                    return False
            elif got != want:
                return False
        return True


class Vocabulary:
    """Categories plus an index from first words (and prefixes) to the terms they start."""

    def __init__(self, categories: list[tuple[Category, list[str], list[str]]]) -> None:
        self.categories = tuple(c for c, _, _ in categories)
        self._exact: dict[str, list[_Term]] = {}
        self._prefix: dict[str, list[_Term]] = {}
        self._anchored: dict[str, list[tuple[int, _Term]]] = {}
        """Exact terms by their rarest word (the longest one that is no prefix) and its
        offset in the term: ``dear patient`` is looked for where ``patient`` is, so the
        common words that start many terms (``in``, ``on``, ``dear``) select nothing."""
        count = 0
        for index, (_category, terms, excludes) in enumerate(categories):
            for text, exclude in [(t, False) for t in terms] + [(t, True) for t in excludes]:
                term = _parse_term(index, text, exclude)
                if term is None:
                    continue
                count += 1
                first = term.words[0]
                if term.prefix and len(term.words) == 1:
                    if len(first) < _KEY:
                        raise ValueError(f"prefix term {text!r} needs at least {_KEY} letters")
                    term = replace(term, order=_PREFIX_RANK + count)  # after the exact ones
                    self._prefix.setdefault(first[:_KEY], []).append(term)
                else:
                    term = replace(term, order=count)
                    self._exact.setdefault(first, []).append(term)
                    anchor = _anchor(term)
                    self._anchored.setdefault(term.words[anchor], []).append((anchor, term))
        # The fast matcher keys prefixes by as many letters as the shortest one has (4 in
        # the shipped list): three letters ("con", "dis", "off") start everyday words.
        prefixes = [t for terms in self._prefix.values() for t in terms]
        self._key = min((len(t.words[0]) for t in prefixes), default=_KEY)
        self._cut = operator.itemgetter(slice(0, self._key))
        self._long_prefix: dict[str, list[_Term]] = {}
        for term in sorted(prefixes, key=lambda t: t.order):
            self._long_prefix.setdefault(term.words[0][: self._key], []).append(term)

    def find(self, text: str) -> list[tuple[Category, str]]:
        """(category, matched words) pairs, first match per category, excludes applied.

        Same answer as :meth:`find_careful` (tests/test_fast_paths.py proves it on random
        texts): a candidate is found by its term's rarest word instead of its first word.
        """
        words = _words(text)
        present = set(words)
        found_terms: list[tuple[_Term, list[int]]] = []
        for word in present & self._anchored.keys():
            positions = _positions(words, word)
            for anchor, term in self._anchored[word]:
                checkpoint()
                if len(term.words) == 1:
                    found_terms.append((term, positions))
                    continue
                starts = [
                    i for p in positions if (i := p - anchor) >= 0 and term.matches_at(words, i)
                ]
                if starts:
                    found_terms.append((term, starts))
        # Prefix terms: the words' first letters are cut and compared in C (map), and only
        # the words under a key some prefix has are looked at one by one.
        listed = list(present)
        for key in set(map(self._cut, listed)) & self._long_prefix.keys():
            for word in compress(listed, map(str.startswith, listed, repeat(key))):
                for term in self._long_prefix[key]:
                    if word.startswith(term.words[0]):
                        found_terms.append((term, _positions(words, word)))
        if not found_terms:
            return []
        return self._first_per_category(words, found_terms)

    def _first_per_category(
        self, words: list[str], found_terms: list[tuple[_Term, list[int]]]
    ) -> list[tuple[Category, str]]:
        """The first match per category in reading order, excluded spans left out."""
        excluded: dict[int, set[int]] = {}
        hits: list[tuple[int, int, _Term]] = []
        for term, starts in found_terms:
            if term.exclude:
                spans = excluded.setdefault(term.category, set())
                for i in starts:
                    spans.update(range(i, i + len(term.words)))
            else:
                hits.extend((i, term.order, term) for i in starts)
        return self._first_hits(words, hits, excluded)

    def _first_hits(
        self,
        words: list[str],
        hits: list[tuple[int, int, _Term]],
        excluded: dict[int, set[int]],
    ) -> list[tuple[Category, str]]:
        """From ``(position, rank, term)`` hits: the first per category in reading order
        (the rank breaks ties at one position), excluded spans left out."""
        hits.sort(key=lambda hit: hit[:2])
        found: dict[int, str] = {}
        for i, _rank, term in hits:
            category = term.category
            if category in found:
                continue
            span = range(i, i + len(term.words))
            if excluded.get(category) and any(p in excluded[category] for p in span):
                continue
            found[category] = " ".join(words[p] for p in span)
        return [(self.categories[c], phrase) for c, phrase in found.items()]

    def find_careful(self, text: str) -> list[tuple[Category, str]]:
        """The reference matcher: every term tried where its first word is. Kept for the
        property tests of :meth:`find`."""
        words = _words(text)
        present = set(words)
        # Terms that could start at each word present: most texts have none.
        starts: dict[str, list[_Term]] = {w: self._exact[w] for w in present & self._exact.keys()}
        keys = {w[:_KEY] for w in present} & self._prefix.keys()
        if keys:
            for word in present:
                if word[:_KEY] in keys:
                    for term in self._prefix[word[:_KEY]]:
                        if word.startswith(term.words[0]):
                            starts.setdefault(word, []).append(term)
        if not starts:
            return []
        excluded: dict[int, set[int]] = {}
        hits: list[tuple[int, int, _Term]] = []
        # Visit only the positions of candidate words (list.index runs in C) rather than
        # every word of the text.
        for word, terms in starts.items():
            positions = _positions(words, word)
            for term in terms:
                checkpoint()
                for i in positions:
                    if len(term.words) > 1 and not term.matches_at(words, i):
                        continue
                    if term.exclude:
                        excluded.setdefault(term.category, set()).update(
                            range(i, i + len(term.words))
                        )
                    else:
                        # Ranked by when it was found: ties at one position keep this order.
                        hits.append((i, len(hits), term))
        return self._first_hits(words, hits, excluded)  # first in the text wins


_PREFIX_RANK = 1 << 30


def _anchor(term: _Term) -> int:
    """Index of the word a term is looked up by: its longest exact word (first on ties)."""
    exact = len(term.words) - 1 if term.prefix else len(term.words)
    return max(range(exact), key=lambda k: len(term.words[k]))


def _positions(words: list[str], word: str) -> list[int]:
    found = []
    i = -1
    try:
        while True:
            i = words.index(word, i + 1)
            found.append(i)
    except ValueError:
        return found


def _parse_term(category: int, text: str, exclude: bool) -> _Term | None:
    text = text.strip().lower()
    prefix = text.endswith("*")
    words = tuple(_words(text))
    if not words:
        return None
    return _Term(category, words, prefix, exclude)


@functools.cache
def vocabulary(extra_terms: tuple[str, ...] = ()) -> Vocabulary:
    """The shipped categories, plus a ``custom`` one from the rule's ``extra_terms``."""
    data = tomllib.loads(data_path("sensitive_terms.toml").read_text(encoding="utf-8"))
    categories = [
        (Category(key, spec["label"], spec["gdpr"]), spec["terms"], spec.get("exclude", []))
        for key, spec in data["categories"].items()
    ]
    if extra_terms:
        categories.append(
            (Category("custom", "organisation-defined", "configured"), list(extra_terms), [])
        )
    return Vocabulary(categories)


def detect(
    texts: Mapping[str, str], vocab: Vocabulary, enabled: Iterable[str] | None = None
) -> list[Match]:
    """Every (category, term, where) found; one match per category and place is enough."""
    present = {where: text for where, text in texts.items() if text}
    # One pass over all texts together first: most messages match nothing, and then the
    # per-place passes (needed only to say where a term was found) are skipped. The
    # separator is a word no term contains, so no phrase can span two places.
    if not vocab.find(f" {_SEPARATOR} ".join(present.values())):
        return []
    wanted = frozenset(enabled) if enabled is not None else None
    found: list[Match] = []
    for where, text in present.items():
        for category, phrase in vocab.find(text):
            if wanted is None or category.key in wanted:
                found.append(Match(category, phrase, where))
    return found
