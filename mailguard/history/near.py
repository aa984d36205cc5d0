"""Near misses on hashed data: a one-deletion neighbourhood of each familiar address.

**The scheme.** For a familiar address ``local@domain`` the store keeps, besides the
keyed hash of the address, the keyed hashes of

* ``v@domain`` for ``v`` = the local part and every one-character deletion of it (kind L);
* ``local@w`` for ``w`` = the domain and every one-character deletion of it (kind D);
* ``local@skeleton(domain)``, the UTS #39 skeleton of the domain (kind S).

A typed address is turned into the same variants; a shared variant is a candidate
(SymSpell's symmetric delete with depth 1). Sharing an L variant means the same domain and
local parts at most one deletion apart *each*: every single edit (insertion, deletion,
substitution, adjacent swap) matches, and some two-edit pairs do (a deletion in each at
different places); the Levenshtein distance of any match is at most 2. D does the same
for the domain with the local part fixed; S catches homoglyph domains. "Same local part at
another domain" uses the hashed local part kept per address (not for role names such as
``info`` or ``sales``, which every organisation has).

**Size bound.** Parts longer than :data:`MAX_PART` characters get no deletion variants
(only the exact ones), so an address costs at most ``2 * (MAX_PART + 1) + 1`` rows; a
typical one about 25.

**What it leaks, compared with one hash per address.** Without the key a hash can still
be counted and compared. One hash per address reveals only how many distinct addresses
there are and which rows share one. The neighbourhood also reveals, per address, how many
distinct deletion variants its local part and its domain have, i.e. their lengths minus
the letters in runs of doubled letters (``anna`` has 3 distinct deletions, ``anya`` 4);
that two stored addresses are within edit distance 2 of each other (they share a
variant); and, through the per-address local-part hash, which addresses share a local part
at different domains. It does not reveal a single character. With the key, someone can
test guesses against either scheme; the neighbourhood additionally confirms a guess that
is one edit away, which is exactly what the "did you mean" below does — and why the key
is as secret as the mail it was learned from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mailguard.history.keys import Hasher
from mailguard.typos import skeleton, unicode_form

MAX_PART = 40
"""Longer local parts and domains get no deletion variants (bounds rows per address)."""

ROLE_LOCALS = frozenset(
    (
        "info", "admin", "sales", "office", "contact", "support", "hello", "mail", "enquiries",
        "enquiry", "accounts", "hr", "billing", "noreply", "no-reply", "team", "post", "help",
        "service", "invoices", "orders", "press", "jobs", "postmaster", "webmaster", "reception",
    )
)  # fmt: skip
"""Local parts every organisation has: the same one at another domain is no near miss."""

SAME_LOCAL, LOCAL_EDIT, DOMAIN_EDIT, HOMOGLYPH = (
    "same-local-part", "local-part-edit", "domain-edit", "lookalike-domain",
)  # fmt: skip
KINDS = {
    SAME_LOCAL: "the same name at another domain",
    LOCAL_EDIT: "the name differs by a letter or two",
    DOMAIN_EDIT: "the domain differs by a letter or two",
    HOMOGLYPH: "the domain looks the same but uses other characters",
}

_ALPHABET_LOCAL = "abcdefghijklmnopqrstuvwxyz0123456789._-+"
_ALPHABET_DOMAIN = "abcdefghijklmnopqrstuvwxyz0123456789.-"


def _deletions(text: str) -> set[str]:
    found = {text}
    if len(text) <= MAX_PART:
        found.update(text[:i] + text[i + 1 :] for i in range(len(text)))
    return found


def variants(hasher: Hasher, local: str, domain: str) -> dict[int, str]:
    """The neighbourhood of ``local@domain`` as {variant hash: kind}."""
    out: dict[int, str] = {}
    for v in _deletions(local):
        out[hasher(Hasher.NEAR_LOCAL, f"{v}@{domain}")] = LOCAL_EDIT
    for w in _deletions(domain):
        out[hasher(Hasher.NEAR_DOMAIN, f"{local}@{w}")] = DOMAIN_EDIT
    out[hasher(Hasher.SKELETON, f"{local}@{_skeleton(domain)}")] = HOMOGLYPH
    return out


def _skeleton(domain: str) -> str:
    """The UTS #39 skeleton of a domain as people see it (an IDN in Unicode, not xn--)."""
    return skeleton(unicode_form(domain))


def split_address(addr: str) -> tuple[str, str]:
    local, _, domain = addr.rpartition("@")
    return local, domain


def personal_local(local: str) -> bool:
    """Whether a local part is specific enough for "same name at another domain"."""
    return len(local) >= 4 and local not in ROLE_LOCALS


def _ball(text: str, alphabet: str) -> Iterator[str]:
    """Every string sharing a one-deletion variant with ``text`` (the candidates a match
    could have come from), without duplicates; about ``40 * len(text) ** 2`` of them."""
    seen: set[str] = set()
    for v in sorted(_deletions(text)):
        for s in (v, *(v[:i] + c + v[i:] for i in range(len(v) + 1) for c in alphabet)):
            if s not in seen:
                seen.add(s)
                yield s


def suggest(
    hasher: Hasher,
    target: int,
    typed: str,
    kind: str,
    known_domains: Iterable[str] = (),
) -> str | None:
    """The familiar address ``target`` (a hash) in clear, if it can be reconstructed.

    The store holds no address, so the "did you mean" is rebuilt from the typed one: each
    string the matched variant could have come from is hashed and compared with ``target``
    (a few thousand HMACs, only for a message that has a near miss). Domains for the
    "same name at another domain" and homoglyph cases are sought among ``known_domains``
    (internal, partner and provider domains, the message's other domains).
    """
    local, domain = split_address(typed)
    if max(len(local), len(domain)) > MAX_PART:
        return None

    def address(candidate: str) -> int:
        return hasher.fresh(Hasher.ADDRESS + candidate.encode("utf-8", "surrogatepass"))

    if kind == LOCAL_EDIT:
        candidates: Iterable[str] = (f"{v}@{domain}" for v in _ball(local, _ALPHABET_LOCAL))
    elif kind == DOMAIN_EDIT:
        candidates = (f"{local}@{w}" for w in _ball(domain, _ALPHABET_DOMAIN))
    elif kind == HOMOGLYPH:
        wanted = _skeleton(domain)
        candidates = (f"{local}@{d}" for d in known_domains if _skeleton(d) == wanted)
    else:
        candidates = (f"{local}@{d}" for d in known_domains if d != domain)
    for candidate in candidates:
        if candidate != typed and address(candidate) == target:
            return candidate
    return None
