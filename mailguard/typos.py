"""Typing slips and lookalike characters: the string side of lookalike domains.

Named edits (a swapped, doubled, missing or extra letter, a neighbouring key), a bounded
Damerau-Levenshtein distance, and UTS #39 skeletons from the confusables table shipped as
data (``rules/data/confusables.txt``, derived from Unicode's ``confusables.txt``).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping

import idna

from mailguard.domains import suffix_of
from mailguard.rules import data_path

_ROWS = ("1234567890-", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard() -> dict[str, frozenset[str]]:
    """Keys next to each key on a QWERTY keyboard (same row, and the rows above/below)."""
    near: dict[str, set[str]] = {}
    for r, row in enumerate(_ROWS):
        for c, key in enumerate(row):
            keys = near.setdefault(key, set())
            for dr in (-1, 0, 1):
                if 0 <= r + dr < len(_ROWS):
                    other = _ROWS[r + dr]
                    for dc in (-1, 0, 1):
                        if 0 <= c + dc < len(other) and (dr, dc) != (0, 0):
                            keys.add(other[c + dc])
    return {k: frozenset(v) for k, v in near.items()}


_NEAR = _keyboard()


@functools.cache
def _confusables() -> Mapping[str, str]:
    """Character -> ASCII prototype, from the derived UTS #39 table shipped as data."""
    table: dict[str, str] = {}
    text = data_path("confusables.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            point, _, target = line.partition("\t")
            table[chr(int(point, 16))] = target
    return table


@functools.cache
def _ascii_confusables() -> dict[int, str]:
    return {ord(ch): target for ch, target in _confusables().items() if ch.isascii()}


@functools.lru_cache(maxsize=8192)
def skeleton(text: str) -> str:
    """The UTS #39 skeleton of lower-cased text, folded to lower case again.

    Domains are compared case-insensitively, so ``0`` (prototype ``O``) and ``o`` share a
    skeleton here, as they share a glyph shape in most fonts.
    """
    if text.isascii():  # NFD leaves ASCII alone: a C-level translate gives the same
        return text.lower().translate(_ascii_confusables())
    table = _confusables()
    decomposed = unicodedata.normalize("NFD", text.lower())
    mapped = "".join(table.get(ch, ch) for ch in decomposed)
    return unicodedata.normalize("NFD", mapped)


def scripts(text: str) -> set[str]:
    """The scripts of the letters of ``text`` (by their Unicode name's first word)."""
    found = set()
    for ch in text:
        if ch.isalpha():
            found.add("LATIN" if ch.isascii() else unicodedata.name(ch, "?").split(" ")[0])
    return found


def unicode_form(domain: str) -> str:
    """The domain as a reader sees it (``xn--`` labels decoded), for skeletons and reports.

    Remembered for DNS-sized names: decoding is ~120 µs a domain in the pure-Python ``idna``
    package, and the lookalike index asks for the same domain up to three times (its own
    homoglyph lookup, then the comparisons with the sender's and other domains of the
    message).
    """
    if "xn--" not in domain:
        return domain
    return _decoded(domain) if len(domain) <= 253 else _decode(domain)


@functools.lru_cache(maxsize=65536)
def _decoded(domain: str) -> str:
    return _decode(domain)


def _decode(domain: str) -> str:
    try:
        return idna.decode(domain)
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain


def split(domain: str) -> tuple[str, str]:
    """(name, suffix): ``("gmail", "com")``, ``("example", "co.uk")``; a domain that is a
    public suffix itself (``gov.uk``) splits after its first label."""
    suffix = suffix_of(domain)
    if not suffix or suffix == domain:
        name, _, suffix = domain.partition(".")
        return name, suffix
    return domain[: len(domain) - len(suffix) - 1], suffix


@functools.lru_cache(maxsize=4096)
def deletions(text: str, depth: int) -> frozenset[str]:
    """``text`` with up to ``depth`` characters deleted: the symmetric-delete neighbourhood.
    Cached: a new domain is looked up against the candidates and entered among the domains
    seen, both by its one-deletion neighbourhood."""
    found = {text}
    frontier = {text}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return frozenset(found)


def distance(a: str, b: str, cap: int = 3) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance, at most ``cap``.

    The common prefix and suffix are cut first: a typo differs in a letter or two, so the
    table left to fill is a few cells, not the whole domain squared.
    """
    if abs(len(a) - len(b)) >= cap:
        return cap
    start, stop = 0, min(len(a), len(b))
    while start < stop and a[start] == b[start]:
        start += 1
    end = 0
    while end < stop - start and a[-1 - end] == b[-1 - end]:
        end += 1
    # Keep one shared letter each side, so a swap at the cut is still seen as one edit.
    start = max(0, start - 1)
    end = max(0, end - 1)
    a, b = a[start : len(a) - end], b[start : len(b) - end]
    la, lb = len(a), len(b)
    # A banded table: cells more than ``cap`` off the diagonal cannot be under ``cap``.
    big = cap
    prev2: list[int] = []
    prev = [j if j < cap else big for j in range(lb + 1)]
    for i in range(1, la + 1):
        cur = [big] * (lb + 1)
        if i < cap:
            cur[0] = i
        ai = a[i - 1]
        for j in range(max(1, i - cap), min(lb, i + cap) + 1):
            value = prev[j - 1] + (ai != b[j - 1])
            if prev[j] + 1 < value:
                value = prev[j] + 1
            if cur[j - 1] + 1 < value:
                value = cur[j - 1] + 1
            if (
                i > 1
                and j > 1
                and ai == b[j - 2]
                and a[i - 2] == b[j - 1]
                and prev2[j - 2] + 1 < value
            ):
                value = prev2[j - 2] + 1
            cur[j] = value if value < big else big
        if min(cur) >= cap:
            return cap
        prev2, prev = prev, cur
    return min(prev[lb], cap)


_DIGITS = str.maketrans("", "", "0123456789")


def numbered(a: str, b: str) -> bool:
    """Names that differ only in their digits (``domain12``/``domain13``, ``web1``/``web2``)
    are a numbered series, not a typo of each other."""
    return a.translate(_DIGITS) == b.translate(_DIGITS)


SHORT = 4
"""Names shorter than this (``aol``, ``msn``) are close to many real ones (``rsa.com`` is
one substitution from ``usa.com``): only slips of the fingers count for them."""


def fat_finger(typed: str, meant: str) -> bool:
    """One edit a finger makes: swapped or doubled letters, a neighbouring key hit
    instead or as well."""
    if distance(typed, meant, 2) != 1:
        return False
    kind = one_edit_kind(typed, meant)
    if kind in ("swapped-letters", "doubled-letter", "keyboard-slip"):
        return True
    if kind != "extra-letter":
        return False
    i = next(i for i, (a, b) in enumerate(zip(typed, meant + "\0", strict=False)) if a != b)
    return any(typed[i] in _NEAR.get(typed[j], ()) for j in (i - 1, i + 1) if 0 <= j < len(typed))


def one_edit_kind(typed: str, meant: str) -> str:
    """Name the single edit that turns ``meant`` into ``typed``."""
    i = 0
    while i < min(len(typed), len(meant)) and typed[i] == meant[i]:
        i += 1
    if len(typed) == len(meant):
        if typed[i + 1 : i + 2] == meant[i : i + 1] and typed[i : i + 1] == meant[i + 1 : i + 2]:
            return "swapped-letters"
        return "keyboard-slip" if typed[i] in _NEAR.get(meant[i], ()) else "substitution"
    if len(typed) < len(meant):
        return "missing-dot" if meant[i] == "." else "missing-letter"
    extra = typed[i]
    doubled = (i > 0 and typed[i - 1] == extra) or typed[i + 1 : i + 2] == extra
    return "doubled-letter" if doubled else "extra-letter"
