"""Lookalike domains: a recipient domain that is a near miss of one the sender meant.

``gmial.com``, ``hotmail.co`` and ``nhs.net.co`` are what a hurried finger or an
autocomplete produce; ``example.org`` written with a Cyrillic "a" (U+0430) is what an
impostor registers.
Either way the message goes to a stranger. The domains the sender most likely meant are
the *candidates* (internal, partner and consumer-provider domains, and the domains used
more often in the same message); a recipient domain that is not itself known is compared
with them.

Speed matters because the milter runs this on every message: an :class:`Index` is built
once per configuration (a symmetric-delete table of the candidates, a name table, a
skeleton table), so a lookup costs a few dictionary probes instead of an edit distance
against every candidate, and answers are memoised per index (bounded).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass

import idna

from mailguard.domains import DomainSet, normalise_domain, registrable_domain, suffix_of
from mailguard.rules import data_path

INTERNAL, PARTNER, PROVIDER, MESSAGE = "internal", "partner", "provider", "message"
"""Where a candidate comes from, most trusted first (an earlier source wins a tie)."""

KINDS = {
    "homoglyph": "looks the same but uses other characters (homoglyph or mixed-script IDN)",
    "extra-labels": "a known domain with labels added after it",
    "other-suffix": "the same name under another suffix",
    "tld-slip": "a mistyped or swapped suffix",
    "missing-dot": "a dot left out",
    "swapped-letters": "two letters swapped",
    "doubled-letter": "a letter typed twice",
    "missing-letter": "a letter left out",
    "extra-letter": "a letter added",
    "keyboard-slip": "a neighbouring key hit",
    "substitution": "a letter changed",
    "misspelling": "two letters wrong",
}
"""Every kind a :class:`Lookalike` can have, with the words a report uses for it."""

# Suffix pairs that are not one edit apart but are a classic slip or a lookalike service
# (CentralNic's ``uk.com`` sells names that look British).
_SUFFIX_SLIPS = frozenset(
    frozenset(p)
    for p in (
        ("co.uk", "uk.com"), ("co.uk", "uk.co"), ("co.uk", "uk"), ("co.uk", "com"),
        ("org.uk", "uk.org"), ("org.uk", "org"), ("com.au", "au.com"), ("com", "co.com"),
        ("com", "cm"), ("com", "om"), ("net", "ne"), ("org", "og"), ("nhs.uk", "nhs.net"),
    )
)  # fmt: skip

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


@functools.lru_cache(maxsize=8192)
def skeleton(text: str) -> str:
    """The UTS #39 skeleton of lower-cased text, folded to lower case again.

    Domains are compared case-insensitively, so ``0`` (prototype ``O``) and ``o`` share a
    skeleton here, as they share a glyph shape in most fonts.
    """
    table = _confusables()
    decomposed = unicodedata.normalize("NFD", text.lower())
    mapped = "".join(table.get(ch, ch) for ch in decomposed)
    return unicodedata.normalize("NFD", mapped)


def _scripts(text: str) -> set[str]:
    """The scripts of the letters of ``text`` (by their Unicode name's first word)."""
    found = set()
    for ch in text:
        if ch.isalpha():
            found.add("LATIN" if ch.isascii() else unicodedata.name(ch, "?").split(" ")[0])
    return found


def unicode_form(domain: str) -> str:
    """The domain as a reader sees it (``xn--`` labels decoded), for skeletons and reports."""
    if "xn--" not in domain:
        return domain
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


def _deletions(text: str, depth: int) -> set[str]:
    found = {text}
    frontier = {text}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


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


def _numbered(a: str, b: str) -> bool:
    """Names that differ only in their digits (``domain12``/``domain13``, ``web1``/``web2``)
    are a numbered series, not a typo of each other."""
    return a.translate(_DIGITS) == b.translate(_DIGITS)


_NEAR_LENGTH = 100
"""Longer registrable domains are not compared with the other domains of a message."""
_NEAR_FAMILY = 8
"""A one-deletion key shared by this many domains marks a generated family (``a1.x``,
``a2.x``, …), not a typo: it takes no more, which keeps the work per new domain bounded."""

_SHORT = 4
"""Names shorter than this (``aol``, ``msn``) are close to many real ones (``rsa.com`` is
one substitution from ``usa.com``): only slips of the fingers count for them."""


def _fat_finger(typed: str, meant: str) -> bool:
    """One edit a finger makes: swapped or doubled letters, a neighbouring key hit
    instead or as well."""
    if distance(typed, meant, 2) != 1:
        return False
    kind = _one_edit_kind(typed, meant)
    if kind in ("swapped-letters", "doubled-letter", "keyboard-slip"):
        return True
    if kind != "extra-letter":
        return False
    i = next(i for i, (a, b) in enumerate(zip(typed, meant + "\0", strict=False)) if a != b)
    return any(typed[i] in _NEAR.get(typed[j], ()) for j in (i - 1, i + 1) if 0 <= j < len(typed))


def _one_edit_kind(typed: str, meant: str) -> str:
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


@dataclass(frozen=True, slots=True)
class Lookalike:
    """A recipient domain that looks like a candidate domain."""

    domain: str
    """The recipient's domain as written (ASCII; ``xn--`` for IDNs)."""
    intended: str
    """The domain the sender most likely meant."""
    kind: str
    """One of :data:`KINDS`."""
    source: str
    """Where the intended domain is known from: internal, partner, provider or message."""
    mixed_script: bool = False


class Known:
    """The type of :data:`KNOWN`."""

    def __repr__(self) -> str:
        return "KNOWN"


KNOWN = Known()
"""A domain that is a candidate, a subdomain of one or allowed (also: not a domain)."""
_LDH = re.compile(r"^[a-z0-9.-]+$")


@dataclass(frozen=True, slots=True)
class Options:
    min_label_length: int = 3
    """Names shorter than this match on suffix slips, extra labels and homoglyphs only."""
    long_label_length: int = 8
    """Names at least this long may be two edits away; shorter ones one."""


class Index:
    """The candidate domains of one configuration, indexed for fast near-miss lookups.

    ``never`` holds domains that are real and distinct even though they are near a
    candidate (``ymail.com`` and ``gmail.com``): they are never reported.
    """

    CACHE = 16384

    def __init__(
        self,
        candidates: Iterable[tuple[str, str]],
        never: Iterable[str] = (),
        options: Options | None = None,
    ) -> None:
        self.options = options or Options()
        self.known: dict[str, str] = {}
        for domain, source in candidates:
            d = normalise_domain(domain)
            if d and d not in self.known:
                self.known[d] = source
        # A candidate covers its subdomains (mail.gmail.com), unless it is a public suffix
        # itself (gov.uk, whose subdomains are other organisations, hrmc.gov.uk included).
        self.never = DomainSet((*never, *(d for d in self.known if suffix_of(d) != d)))
        self._deletes: dict[str, list[str]] = {}
        self._long: dict[tuple[str, int], list[tuple[str, frozenset[str]]]] = {}
        self._names: dict[str, list[str]] = {}
        self._skeletons: dict[str, str] = {}
        for d in self.known:
            self._add(d)
        self._memo: dict[str, tuple[str, Lookalike | Known | None]] = {}
        self._seen: dict[str, tuple[str, ...]] = {}
        """One-deletion key -> registrable recipient domains seen with it (any message)."""
        self._near: dict[str, tuple[str, ...]] = {}
        """Registrable recipient domain -> the seen ones one edit away, both ways."""
        self._quiet: set[str] = set()
        """Domains seen that can play no part in a message: known, or unknown with no near
        miss seen (a scan skips them with one set difference, in C)."""

    def _budget(self, name: str) -> int:
        o = self.options
        if len(name) < o.min_label_length:
            return 0
        return 2 if len(name) >= o.long_label_length else 1

    def _add(self, domain: str) -> None:
        """Index one candidate: its one-deletion neighbourhood (whole domain: suffix slips
        and a missing dot are one edit too), and long names by first letter and length.

        Two edits are looked for only in long names that keep their first letter: the
        two-deletion neighbourhood of every name cost 30 µs a domain, the few long names
        of one first letter and a near length cost one or two short distance checks.
        """
        deletes, names, skeletons = self._deletes, self._names, self._skeletons
        name, _ = split(domain)
        for word in _deletions(domain, 1):
            deletes.setdefault(word, []).append(domain)
        if self._budget(name) > 1:
            self._long.setdefault((name[0], len(name)), []).append((domain, frozenset(name)))
        names.setdefault(name, []).append(domain)
        skeletons.setdefault(skeleton(unicode_form(domain)), domain)

    def is_known(self, domain: str) -> bool:
        """Whether ``domain`` is a candidate, a subdomain of one, or on the allow list."""
        return self.classify(domain)[1] is KNOWN

    def match(self, domain: str) -> Lookalike | None:
        """The candidate ``domain`` (a full recipient domain) looks like, if any."""
        found = self.classify(domain)[1]
        return found if isinstance(found, Lookalike) else None

    def classify(self, domain: str) -> tuple[str, Lookalike | Known | None]:
        """The registrable domain of ``domain`` and what it is: :data:`KNOWN` (also for
        text that is no LDH domain), the :class:`Lookalike` it is, or ``None``.

        Remembered per domain (bounded): a mail server sees the same domains all day. A
        domain that is neither is also entered in the table of near misses among the
        domains seen (:meth:`near_seen`), which is cleared with this memo.
        """
        memo = self._memo
        found = memo.get(domain)
        if found is not None:
            return found
        if len(memo) >= self.CACHE:
            self._clear()
        d = normalise_domain(domain)
        state: Lookalike | Known | None = KNOWN
        if not d or not _LDH.match(d) or len(d) > 253:
            found = (d or domain, KNOWN)
        else:
            if d not in self.never and d not in self.known:
                state = self._lookup(d)
            found = (registrable_domain(d), state)
            if state is None:
                self.near_seen(found[0])
        self._memo[domain] = found  # not ``memo``: entering it may have cleared the tables
        reg, state = found
        if state is KNOWN or (
            state is None and reg == domain and "xn--" not in reg and not self._near[reg]
        ):
            self._quiet.add(domain)
        return found

    def _clear(self) -> None:
        self._memo, self._near, self._seen, self._quiet = {}, {}, {}, set()

    def scan(
        self, counts: Mapping[str, Sized], own: str | None = None
    ) -> list[tuple[Lookalike, int]]:
        """The lookalikes among one message's recipient domains (``domain -> addresses``),
        each with the number of addresses at its organisation.

        Besides the candidates, each domain is compared with the others of the message
        used more often (at least twice: between two domains used once each, which was
        meant cannot be told), and with ``own``, the sender's organisation when no
        internal domains are configured. Known domains need no such comparison: a typo
        of one is found by the index. Written as tight loops: they run for every
        message, and a 300-recipient message has ~150 domains.
        """
        memo_get = self._memo.get
        classify = self.classify
        per_org: dict[str, int] = {}
        states: dict[str, Lookalike | None] = {}
        done: set[str] = set()
        pending = counts.keys() - self._quiet
        while pending:
            fresh = False
            for domain in pending:
                found = memo_get(domain)
                if found is None:
                    found, fresh = classify(domain), True
                reg, state = found
                if state is KNOWN or reg == own:
                    continue
                per_org[reg] = per_org.get(reg, 0) + len(counts[domain])
                if reg not in states:
                    states[reg] = state  # type: ignore[assignment]
            # A domain new to the index may be the first near miss of one already skipped
            # as quiet: count those too (one more pass, with nothing new to classify).
            done |= pending
            pending = counts.keys() - self._quiet - done if fresh else set()
        if not states:
            return []
        # Every unknown domain of the message is in the table by now (classify entered
        # it), so a domain is compared with those after it in the message too.
        table_get = self._near.get
        mine = self.near_seen(own) if own is not None else ()
        hits: list[tuple[Lookalike, str]] = []
        for reg, state in sorted(states.items()):
            if state is not None:
                hits.append((state, reg))
                continue
            near = table_get(reg)
            best = None
            if own is not None and (reg in mine or "xn--" in reg):
                best = self.message_match(reg, own, INTERNAL)
            if best is None and near:
                count = per_org[reg]
                for other in near:
                    used = per_org.get(other, 0)
                    if used >= 2 and used > count:
                        best = self.message_match(reg, other, MESSAGE)
                        if best is not None:
                            break
            if best is not None:
                hits.append((best, reg))
        return [(m, per_org[reg]) for m, reg in hits]

    def _edits(self, form: str, found: list[tuple[int, int, int, bool, str, str]]) -> None:
        known, deletes = self.known, self._deletes
        name, suffix = split(form)
        seen: set[str] = set()
        for word in _deletions(form, 1):
            if hit := deletes.get(word):
                seen.update(hit)
        if self._long and len(name) >= self.options.long_label_length - 2:
            get = self._long.get
            letters = frozenset(name)
            for size in range(len(name) - 2, len(name) + 3):
                # Two edits change at most four of the letters used: a cheap first sieve.
                seen.update(c for c, used in get((name[0], size), ()) if len(used ^ letters) <= 4)
        seen.discard(form)
        for cand in seen:
            cand_name, cand_suffix = split(cand)
            budget = self._budget(cand_name)
            if budget == 0 and name != cand_name:
                continue
            if name != cand_name and _numbered(name, cand_name):
                continue
            dist = distance(form, cand, 3 if budget > 1 else 2)
            if dist > max(budget, 1):
                continue
            if name == cand_name:
                if distance(suffix, cand_suffix) > 1:
                    continue  # a suffix is mistyped by one slip, or it is another suffix
            elif budget == 0 or (len(cand_name) < _SHORT and not _fat_finger(form, cand)):
                continue  # a short name: only its suffix, or a slip of the fingers
            near = cand.startswith(form) or form.startswith(cand)
            found.append((dist, _rank(known[cand]), -len(form), not near, cand, form))

    SEEN = 65536

    def near_seen(self, reg: str) -> tuple[str, ...]:
        """Recipient domains seen so far (in any message) that are a near miss of ``reg``
        or it of them, by :meth:`near`'s measures.

        The table grows as domains are seen, and each pair is measured once, when the
        second of the two is first seen; comparing a message's domains with each other
        then costs one lookup per domain, not a table built for every message. It is
        cleared, not grown, past :attr:`SEEN` domains.
        """
        near = self._near.get(reg)
        if near is not None:
            return near
        if len(self._near) >= self.SEEN:
            self._clear()
        found: set[str] = set()
        seen, table = self._seen, self._near
        if len(reg) <= _NEAR_LENGTH:
            for word in _deletions(reg, 1):
                others = seen.get(word, ())
                if len(others) < _NEAR_FAMILY:
                    found.update(others)
                    seen[word] = (*others, reg)
        found.discard(reg)
        mine = []
        for other in found:
            if self.near(reg, other) or self.near(other, reg):
                table[other] = (*table.get(other, ()), reg)
                self._quiet.discard(other)
                mine.append(other)
        result = tuple(mine)
        table[reg] = result
        return result

    def near(self, typed: str, meant: str) -> str | None:
        """The kind of slip that makes ``typed`` of ``meant`` (registrable domains), if
        ``typed`` is one: a homoglyph, or one edit with the limits that apply to candidates
        (short names, numbered series)."""
        if typed == meant:
            return None
        if skeleton(unicode_form(typed)) == skeleton(unicode_form(meant)):
            return "homoglyph"
        if distance(typed, meant, 2) != 1:
            return None
        name, suffix = split(typed)
        other_name, other_suffix = split(meant)
        if name != other_name and (self._budget(other_name) == 0 or _numbered(name, other_name)):
            return None
        if name == other_name:
            return "tld-slip" if distance(suffix, other_suffix) <= 1 else None
        if len(other_name) < _SHORT and not _fat_finger(typed, meant):
            return None
        return _one_edit_kind(typed, meant)

    def message_match(self, typed: str, meant: str, source: str) -> Lookalike | None:
        """``typed`` as a near miss of ``meant``, another domain of the same message."""
        kind = self.near(typed, meant)
        if kind is None:
            return None
        mixed = kind == "homoglyph" and len(_scripts(unicode_form(typed))) > 1
        return Lookalike(typed, meant, kind, source, mixed)

    def _lookup(self, d: str) -> Lookalike | None:
        known, names, skeletons = self.known, self._names, self._skeletons
        reg = registrable_domain(d)
        # The registrable domain, and one more label: a mistyped suffix is no public suffix
        # (hotmail.co.uj has "co.uj" as its registrable domain, hmrc.gvo.uk "gvo.uk").
        labels = d.split(".")
        n, r = len(labels), reg.count(".") + 1
        forms = [reg] if n == r else [".".join(labels[n - r - 1 :]), reg]
        # 1. Homoglyphs: the same skeleton as a known domain, other characters.
        for form in forms:
            shown = unicode_form(form)
            twin = skeletons.get(skeleton(shown))
            if twin is not None and twin != form:
                mixed = len(_scripts(shown)) > 1
                return Lookalike(d, twin, "homoglyph", known[twin], mixed)
        # 2. A known domain followed by more labels (nhs.net.co, example.org.uk).
        for start in range(max(0, n - 8), n - 1):
            for end in range(n - 1, start + 1, -1):
                inner = ".".join(labels[start:end])
                if inner in known:
                    return Lookalike(d, inner, "extra-labels", known[inner])
        # 3. Edits: the symmetric-delete table gives the few candidates worth measuring.
        found: list[tuple[int, int, int, bool, str, str]] = []
        for form in forms:
            self._edits(form, found)
        name, suffix = split(reg)
        if found:
            dist, _, _, _, cand, form = min(found)
            name, suffix = split(form)
            kind = "misspelling" if dist > 1 else _one_edit_kind(form, cand)
            cand_name, cand_suffix = split(cand)
            if name == cand_name and suffix != cand_suffix:
                kind = "tld-slip"
            return Lookalike(d, cand, kind, known[cand])
        # 4. The same name under another suffix: a slip, or (internal/partner) another suffix.
        for cand in names.get(name, ()):
            pair = frozenset((suffix, split(cand)[1]))
            if pair in _SUFFIX_SLIPS:
                return Lookalike(d, cand, "tld-slip", known[cand])
            if known[cand] in (INTERNAL, PARTNER):
                return Lookalike(d, cand, "other-suffix", known[cand])
        return None


def _rank(source: str) -> int:
    return (INTERNAL, PARTNER, PROVIDER, MESSAGE).index(source)


@functools.cache
def shipped_allow_list() -> tuple[str, ...]:
    """Real providers that are near another one (``ymail.com``/``gmail.com``): never flagged."""
    text = data_path("lookalike_allow.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(line for line in lines if line)
