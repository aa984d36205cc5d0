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
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass

from mailguard.domains import DomainSet, normalise_domain, registrable_domain, suffix_of
from mailguard.rules import data_path
from mailguard.typos import (
    SHORT,
    deletions,
    distance,
    fat_finger,
    numbered,
    one_edit_kind,
    scripts,
    skeleton,
    split,
    unicode_form,
)

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

_NEAR_LENGTH = 100
"""Longer registrable domains are not compared with the other domains of a message."""
_NEAR_FAMILY = 8
"""A one-deletion key shared by this many domains marks a generated family (``a1.x``,
``a2.x``, …), not a typo: it takes no more, which keeps the work per new domain bounded."""


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
        # First letters of the long names and first labels of the names: a domain whose
        # first letter or label is in neither needs no split (two PSL lookups) to rule out.
        self._long_firsts = frozenset(first for first, _ in self._long)
        self._heads = frozenset(name.partition(".")[0] for name in self._names)
        self._memo: dict[str, tuple[str, Lookalike | Known | None]] = {}
        self._seen: dict[str, list[str]] = {}
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
        for word in deletions(domain, 1):
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
            state is None and reg == domain and "xn--" not in reg and not self._near.get(reg)
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
        seen: set[str] = set()
        for word in deletions(form, 1):
            if hit := deletes.get(word):
                seen.update(hit)
        # The name starts with the form's first letter: with no long name of that letter and
        # no deletion hit, nothing below can be found, and the split is not worth its cost.
        if not seen and form[:1] not in self._long_firsts:
            return
        name, suffix = split(form)
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
            if name != cand_name and numbered(name, cand_name):
                continue
            dist = distance(form, cand, 3 if budget > 1 else 2)
            if dist > max(budget, 1):
                continue
            if name == cand_name:
                if distance(suffix, cand_suffix) > 1:
                    continue  # a suffix is mistyped by one slip, or it is another suffix
            elif budget == 0 or (len(cand_name) < SHORT and not fat_finger(form, cand)):
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
            for word in deletions(reg, 1):
                others = seen.get(word)
                if others is None:
                    seen[word] = [reg]
                elif len(others) < _NEAR_FAMILY:
                    found.update(others)
                    others.append(reg)
        found.discard(reg)
        mine = []
        for other in found:
            if self.either_near(reg, other):
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
        if typed == meant or numbered(typed, meant):
            return None  # the same, or a numbered series: never homoglyphs of each other
        if skeleton(unicode_form(typed)) == skeleton(unicode_form(meant)):
            return "homoglyph"
        if distance(typed, meant, 2) != 1:
            return None
        return self._one_edit(typed, meant)

    def either_near(self, a: str, b: str) -> bool:
        """``near(a, b) or near(b, a)`` for two different domains, with the symmetric
        tests (numbered series, skeletons, the distance) made once, not twice: the table
        of domains seen asks this for every pair sharing a deletion key, and a generated
        family (``d1.example``, ``d2.example``, …) makes a dozen pairs per new domain."""
        if numbered(a, b):
            return False
        if skeleton(unicode_form(a)) == skeleton(unicode_form(b)):
            return True
        if distance(a, b, 2) != 1:
            return False
        return self._one_edit(a, b) is not None or self._one_edit(b, a) is not None

    def _one_edit(self, typed: str, meant: str) -> str | None:
        """:meth:`near`'s kind for two domains one edit apart, not homoglyphs."""
        name, suffix = split(typed)
        other_name, other_suffix = split(meant)
        if name != other_name and (self._budget(other_name) == 0 or numbered(name, other_name)):
            return None
        if name == other_name:
            return "tld-slip" if distance(suffix, other_suffix) <= 1 else None
        if len(other_name) < SHORT and not fat_finger(typed, meant):
            return None
        return one_edit_kind(typed, meant)

    def message_match(self, typed: str, meant: str, source: str) -> Lookalike | None:
        """``typed`` as a near miss of ``meant``, another domain of the same message."""
        kind = self.near(typed, meant)
        if kind is None:
            return None
        mixed = kind == "homoglyph" and len(scripts(unicode_form(typed))) > 1
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
                mixed = len(scripts(shown)) > 1
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
        if found:
            dist, _, _, _, cand, form = min(found)
            name, suffix = split(form)
            kind = "misspelling" if dist > 1 else one_edit_kind(form, cand)
            cand_name, cand_suffix = split(cand)
            if name == cand_name and suffix != cand_suffix:
                kind = "tld-slip"
            return Lookalike(d, cand, kind, known[cand])
        # 4. The same name under another suffix: a slip, or (internal/partner) another suffix.
        # The name starts with the first label of ``reg``: if no name has that first label,
        # there is nothing to split ``reg`` for.
        if reg.partition(".")[0] not in self._heads:
            return None
        name, suffix = split(reg)
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
