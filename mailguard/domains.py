"""Domain knowledge: normalisation, registrable domains, internal and personal domains.

"Who is a stranger to whom" is decided on registrable domains (the Public Suffix List's
"private suffix": ``mail.nhs.uk`` and ``x.y.example.co.uk`` are different organisations
from ``nhs.uk`` and ``co.uk``). The list comes from ``publicsuffixlist``, which ships it
inside the package: nothing is fetched at run time. It is parsed on first use (about
30 ms), not at import: ``mailguard --help`` or a run that never asks for a registrable
domain does not pay for it; after that the one parsed list is reused.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import idna

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()
_R = TypeVar("_R")
_ASCII_DOMAIN = re.compile(r"^[a-z0-9_.-]+$")
_LITERAL = re.compile(r"^\[[^\[\]]*\]$")
# Results are cached for names up to this long (a DNS name has at most 253 characters):
# a hostile 400 KB "domain" is still judged, but is not kept in a cache for the life of
# the milter process.
CACHED_LENGTH = 512
CLASSIFIED_ENTRIES = 65536


def _cached_if_short(
    cache_size: int,
) -> Callable[[Callable[[str], _R]], Callable[[str], _R]]:
    def wrap(function: Callable[[str], _R]) -> Callable[[str], _R]:
        cached = functools.lru_cache(maxsize=cache_size)(function)

        @functools.wraps(function)
        def call(domain: str) -> _R:
            return cached(domain) if len(domain) <= CACHED_LENGTH else function(domain)

        return call

    return wrap


@_cached_if_short(65536)
def normalise_domain(domain: str) -> str | None:
    """Lower-case, strip a trailing dot and turn IDNs into ASCII so that spellings compare.

    ``bücher.example`` and ``xn--bcher-kva.example`` must be one domain. Returns ``None``
    for text that cannot be a domain at all.
    """
    domain = domain.strip().rstrip(".").lower()
    if not domain or ".." in domain:
        return None
    if _LITERAL.match(domain):
        return domain
    if _ASCII_DOMAIN.match(domain):
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        # Not valid IDNA (raw 8-bit junk, emoji ...). Keep a stable lower-case form so it
        # is still counted once; it can never match a configured ASCII domain.
        return domain


def domain_problem(entry: str) -> str | None:
    """Why a configured domain (``internal_domains`` and the other domain lists) can never
    match a recipient, or ``None``. A list entry that silently matches nothing turns every
    colleague into an outside party, or leaves a provider's customers uncounted."""
    text = entry.strip()
    if not text:
        return "an empty domain"
    if text.startswith("@") and "@" not in text[1:]:
        return f"write the domain without '@': {text[1:]!r}"
    if "@" in text:
        return "an address, not a domain"
    if text.startswith("*."):
        return f"subdomains are included already: write {text[2:]!r}"
    domain = normalise_domain(text)
    if domain is None or not (_LITERAL.match(domain) or _ASCII_DOMAIN.match(domain)):
        return "not a domain name"
    return None


def public_suffix_list() -> PublicSuffixList:
    """The parsed Public Suffix List, built once on first use and shared by every thread."""
    global _psl
    psl = _psl
    if psl is None:
        with _psl_lock:  # the milter's worker threads may ask at once: parse it only once
            if _psl is None:
                _psl = _build_psl()
            psl = _psl
    return psl


def _build_psl() -> PublicSuffixList:
    """``PublicSuffixList()``, built in a fifth of the time.

    The library adds each rule's punycode form by running the (pure-Python) ``idna`` codec
    on all ~9,800 rules, though an ASCII rule is its own punycode. Here only the few hundred
    rules that are not ASCII are encoded, added to the list as rules of their own, and the
    library parses the rest as written: the same set of rules and the same longest rule
    (tests/test_fast_paths.py compares the result with ``PublicSuffixList()``).
    """
    from publicsuffixlist import PSLFILE, PublicSuffixList, encode_idn

    with open(PSLFILE, "rb") as file:  # noqa: PTH123 - the library's own path, read as it does
        lines = file.read().decode("utf-8", "surrogateescape").split("\n")
    encoded = []
    for line in lines:
        if line.isascii():
            continue
        rule = line.lower().split(" ")[0].rstrip()
        if rule and not rule.startswith("//"):
            punycode = encode_idn(rule.lstrip("!"))
            encoded.append("!" + punycode if rule[0] == "!" else punycode)
    return PublicSuffixList(lines + encoded, accept_encoded_idn=False)


@_cached_if_short(65536)
def registrable_domain(domain: str) -> str:
    """The organisation-level domain (eTLD+1); the domain itself when the PSL has no answer."""
    if domain.startswith("["):
        return domain
    return public_suffix_list().privatesuffix(domain) or domain


@_cached_if_short(65536)
def suffix_of(domain: str) -> str:
    """The public suffix (``co.uk``, ``com``) the registrable domain sits under."""
    return public_suffix_list().publicsuffix(domain) or ""


class DomainSet:
    """A set of domains that also matches their subdomains (``x.example`` ⊂ ``example``)."""

    __slots__ = ("_classified", "_domains", "_labels", "_match", "_sorted")

    def __init__(self, domains: Iterable[str]) -> None:
        self._domains = frozenset(d for d in (normalise_domain(x) for x in domains) if d)
        self._sorted = tuple(sorted(self._domains))
        self._labels = max((d.count(".") + 1 for d in self._domains), default=0)
        self._match = _cached_if_short(16384)(self._uncached_match)
        self._classified: dict[str, tuple[str, bool]] = {}

    def classify(self, domain: str) -> tuple[str, bool]:
        """``(registrable domain, in this set)`` for a normalised domain, from one dict.

        A recipient analysis asks both for every domain of every message; this answers
        from a per-set table instead of two cached calls each. The table is emptied when
        it reaches :data:`CLASSIFIED_ENTRIES`, and long names are never kept in it.
        """
        found = self._classified.get(domain)
        if found is None:
            found = (registrable_domain(domain), domain in self)
            if len(domain) <= CACHED_LENGTH:
                if len(self._classified) >= CLASSIFIED_ENTRIES:
                    self._classified = {}  # a new table: readers of the old one are unharmed
                self._classified[domain] = found
        return found

    def __contains__(self, domain: object) -> bool:
        return isinstance(domain, str) and self._match(domain)

    def __bool__(self) -> bool:
        return bool(self._domains)

    def __iter__(self):  # noqa: ANN204 - plain iterator over the configured domains
        return iter(self._sorted)

    def _uncached_match(self, domain: str) -> bool:
        """Test the domain's suffixes from the right, no longer than any configured domain.

        Slicing off one label at a time from the left copies the rest each time: a domain of
        200,000 labels took 20 s. Only the last ``_labels`` labels can match, so at most
        that many short slices are taken.
        """
        domains = self._domains
        if domain in domains:
            return True
        end = len(domain)
        for _ in range(self._labels):
            dot = domain.rfind(".", 0, end)
            if dot < 0:
                return False
            if domain[dot + 1 :] in domains:
                return True
            end = dot
        return False
