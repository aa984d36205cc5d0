"""Address-list parsing that survives real-world headers.

Why not the standard library: strict ``email.utils.getaddresses`` (3.11.10+, and Debian's
backport) returns ``[('', '')]`` for a whole 300-address header when one entry is odd, and
older patch levels instead invent phantom addresses from display names; headerregistry
picks an address-shaped *display name* over the real addr-spec and is slow and super-linear
on big lists. A recipient counter must never lose 299 addresses because of one, so this
module tokenises the header itself, keeps every good entry, and reports the bad ones.

Only addr-specs are ever counted. Display names are kept raw (undecoded) because RFC 2047
words may hide commas (``=2C``) that must not split the list.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple

from mailguard.address_tokens import (
    Token,
    clip,
    clusters,
    joins,
    phrase_text,
    strip_comments,
    strip_route,
    tokenise,
)
from mailguard.deadline import checkpoint
from mailguard.domains import normalise_domain


class Address(NamedTuple):
    """One addr-spec found in a header, with where it came from.

    A named tuple rather than a frozen dataclass: a 10,000-recipient header creates 10,000
    of them, and a frozen dataclass's ``__init__`` costs several times more.
    """

    addr: str
    """Normalised ``local@domain``: lower-cased, IDN domains in ASCII (punycode)."""
    domain: str
    """Normalised domain part (ASCII, lower case)."""
    name: str
    """Raw display name as written (may hold RFC 2047 words); empty when absent."""
    header: str
    """Lower-case header name the address was found in (``to``, ``cc``, ``resent-to`` ...)."""
    group: str | None = None
    """Group display name when the address was inside ``Group: ...;`` syntax."""


@dataclass(slots=True)
class ParsedList:
    """Result of parsing one header value: good addresses plus what could not be used."""

    addresses: list[Address]
    invalid: list[str]
    """Entries that are not an address (kept as text, trimmed, for the finding message)."""
    semicolon_separated: bool = False
    """True when ``;`` was used between addresses outside group syntax (Outlook paste)."""
    groups: int = 0
    """Number of group constructs seen (``undisclosed-recipients:;`` counts as one)."""
    truncated: bool = False
    """True when parsing stopped at the address limit."""
    malformed: list[str] = field(default_factory=list)
    """Broken entries whose visible addresses were counted anyway (``<a@x> <b@y>``)."""


_new_tuple = tuple.__new__  # Address(...) goes through a Python-level __new__: 2x slower


# ------------------------------------------------------------------ fast path: a proven subset
#
# The fast path answers only when the WHOLE header is in a small regular language in which
# every entry is a plain mailbox: ``local@domain``, ``<local@domain>`` or ``phrase
# <local@domain>``, where the phrase is atoms and quoted strings and local/domain hold no
# special character at all, separated by commas. Everything else — comments, groups,
# semicolons, escapes outside quotes, a missing comma, a stray bracket, an address-shaped
# display name, a domain literal — is not in it, and the careful tokeniser decides. On the
# subset itself the tokeniser has nothing to judge (no entry is broken, no phrase holds an
# ``@``, no character is a separator in one reading and text in the other), and both paths
# end in the same ``_make_address`` call on the same addr-spec text; when that call rejects
# a spec the fast path defers rather than describe the entry itself. So the two can only
# differ in the whitespace of a display name.
_SIMPLE_CHAR = r'[^ \t\r\n"(),:;<>@\[\]\\]'
_SIMPLE_SPEC = rf"{_SIMPLE_CHAR}++@{_SIMPLE_CHAR}++"
_SIMPLE_WORD = rf'(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"|{_SIMPLE_CHAR}++)'


def _simple_entry(group: str) -> str:
    """One entry: (bare spec) | (phrase) <(angle spec)>, with ``group`` opening each field.

    A bare spec cannot start a named entry (a phrase holds no "@"), so at an entry's start
    exactly one alternative matches.
    """
    return (
        rf"{group}{_SIMPLE_SPEC})"
        rf"|(?:{group}{_SIMPLE_WORD}(?:[ \t\r\n]*+{_SIMPLE_WORD})*+)[ \t\r\n]*+)?"
        rf"<[ \t\r\n]*+{group}{_SIMPLE_SPEC})[ \t\r\n]*+>"
    )


# Matched entry by entry from the start: the first may follow whitespace and commas, each
# later one needs a comma before it. Each match reads one entry (possessive, no
# backtracking), and the first entry outside the subset ends the attempt, so junk costs
# no more than its first entry.
_SIMPLE_FIRST = re.compile(rf"[ \t\r\n,]*+(?:{_simple_entry('(')})", re.DOTALL)
_SIMPLE_NEXT = re.compile(rf"[ \t\r\n]*+,[ \t\r\n,]*+(?:{_simple_entry('(')})", re.DOTALL)
_SIMPLE_END = re.compile(r"[ \t\r\n,]*+\Z")


def parse_address_list(
    value: str, header: str, *, limit: int | None = None, start_count: int = 0
) -> ParsedList:
    """Parse one header value into addresses, tolerating every malformation seen in the wild.

    ``limit`` bounds the total number of addresses (``start_count`` already found elsewhere)
    so that a hostile 10-million-address header is cut off in bounded time.
    """
    # Comments, groups and semicolons always need the tokeniser: skip the fast path's split
    # (a C substring search each). Outside quotes they are not in its subset anyway.
    if not ("(" in value or ";" in value or ":" in value):
        fast = _parse_simple(value, header, limit, start_count)
        if fast is not None:
            return fast
    return _parse_tokens(value, header, limit, start_count)


def _parse_simple(
    value: str, header: str, limit: int | None, start_count: int
) -> ParsedList | None:
    """Fast path for headers in the plain-mailbox subset (see above); ``None`` otherwise.

    One anchored regex match per entry instead of a Python-level loop per token: several
    times faster than the tokeniser on a 300-address header.
    """
    result = ParsedList([], [])
    if "@" not in value:  # every entry of the subset has one: a C search settles junk
        return result if _SIMPLE_END.match(value) else None
    found = result.addresses
    room = None if limit is None else max(limit - start_count, 0)
    first = _SIMPLE_FIRST.match(value)
    pos = 0
    if first is None:
        return result if _SIMPLE_END.match(value) else None
    plain_domain = _plain_domain
    # The first entry, then every later one where the one before ended: finditer steps in
    # C, and a match that starts anywhere else is a gap (the end check below then fails).
    for m in chain((first,), _SIMPLE_NEXT.finditer(value, first.end())):
        if m.start() != pos:
            break
        pos = m.end()
        if result.truncated:
            continue  # past the address limit: only checking that the rest is in the subset
        if not len(found) & 63:  # every 64 addresses: a deadline check costs ~3 % per address
            checkpoint()
        bare, name, angle = m.groups()
        if bare is None:
            spec, name = angle, name or ""
        else:
            spec, name = bare, ""
        # _make_address's common case, inlined: this runs once per recipient. The subset
        # keeps "@" out of both halves; an ASCII printable local part has none of the
        # characters _LOCAL_PLAIN refuses, so the regex runs only for the others.
        local, _at, domain = spec.rpartition("@")
        if (local.isascii() and local.isprintable()) or _LOCAL_PLAIN.match(local):
            normal = plain_domain(domain)
            if normal is not None:
                addr: Address | None = _new_tuple(
                    Address, (f"{local.lower()}@{normal}", normal, name, header, None)
                )
            else:
                addr = _make_address_slow(spec, name, header, None)
        else:
            addr = _make_address_slow(spec, name, header, None)
        if addr is None:
            return None  # the careful path describes the entry
        if room is not None and len(found) >= room:
            # Truncated here, as the careful path would be; but answer only if the rest of
            # the header is in the subset too (otherwise this "entry" may be a fragment).
            result.truncated = True
            continue
        found.append(addr)
    if _SIMPLE_END.match(value, pos) is None:
        return None
    return result


# local@domain with a non-empty local part and a domain of at least one label; the domain
# may be an address literal like [192.0.2.1] or [IPv6:2001:db8::1]. Checked after tokens are
# joined. A plain domain never holds "'" (Outlook's 'a@b' quoting ends up there).
_LOCAL_PLAIN = re.compile(r'[^@\s"<>(),;:\\\[\]]+\Z')
_DOMAIN_PLAIN = re.compile(r'[^@\s"<>(),;:\\\']+\Z')
_ADDR_SPEC = re.compile(
    r'^(?P<local>(?:"(?:[^"\\]|\\.)*+"|[^@\s"<>(),;:\\\[\]])++)'
    r'@(?P<domain>\[[^\[\]\\]*+\]|[^@\s"<>(),;:\\]++)$',
    re.DOTALL,
)
# obs-local-part: words (atoms or quoted strings) joined by dots
_LOCAL_WORDS = re.compile(r'"((?:[^"\\]|\\.)*+)"|([^"\\]++)', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_ATOM_CHAR = r'[^\x00-\x20\x7f"(),.:;<>@\[\]\\]'
_DOT_ATOM = re.compile(rf"{_ATOM_CHAR}++(?:\.{_ATOM_CHAR}++)*+")


# ------------------------------------------------------------------ careful path: the parser
#
# The tokens come from :mod:`mailguard.address_tokens`; here they become entries.


class _Entry:
    """Tokens gathered for one list entry until a separator closes it."""

    __slots__ = ("angles", "odd", "tokens")

    def __init__(self) -> None:
        self.tokens: list[Token] = []
        self.angles = 0
        self.odd = False
        """A stray special, a misplaced ``:`` or an unterminated quote or comment."""

    def text(self) -> str:
        return phrase_text(self.tokens)


def _parse_tokens(value: str, header: str, limit: int | None, start_count: int) -> ParsedList:
    """Careful path: quoted strings, comments, groups, semicolons, broken entries.

    An entry normally holds one mailbox. When it is broken (two angle-addrs without a comma,
    a bare address after a name, text after the angle-addr, a stray bracket, an unclosed
    quote) every address a reader can plainly see in it is still counted and the entry is
    reported as malformed: undercounting an exposure is the worse error. Only entries with
    no usable address at all are reported as invalid.
    """
    result = ParsedList([], [])
    group: str | None = None
    entry = _Entry()
    pending_name = ""
    count = start_count

    def add(spec: str, name: str) -> bool | None:
        """Count one candidate; None when it is no address, False at the address limit."""
        nonlocal count
        addr = _make_address(spec, name, header, group)
        if addr is None:
            return None
        if limit is not None and count >= limit:
            result.truncated = True
            return False
        result.addresses.append(addr)
        count += 1
        return True

    def flush() -> bool:
        """Close the current entry; return False when the address limit is reached."""
        nonlocal entry, pending_name
        current, entry = entry, _Entry()
        tokens = current.tokens
        if not tokens:
            return True
        odd = current.odd
        found = 0
        if not current.angles:
            if pending_name:
                result.invalid.append(clip(pending_name))
                pending_name = ""
            if len(tokens) == 1 and tokens[0][0] == "w" and "@" in tokens[0][1]:
                # The common case, a bare addr-spec: one word.
                added = add(tokens[0][1], "")
                if added is False:
                    return False
                if added is None:
                    result.invalid.append(clip(tokens[0][1]))
                return True
            if not any("@" in text for kind, text, _s in tokens if kind != "x"):
                if odd:
                    result.invalid.append(clip(current.text()))
                else:
                    pending_name = current.text()  # "Doe, Jane <j@x>": a name cut by a comma
                return True
            candidates = clusters(tokens)
            odd = odd or len(candidates) > 1
            for spec in candidates:
                if "@" in spec:
                    added = add(spec, "")
                    if added is False:
                        return False
                    found += added is not None
        else:
            odd = odd or current.angles > 1
            run: list[Token] = []
            for token in tokens:
                if token[0] != "a":
                    run.append(token)
                    continue
                angle = token[1]
                name = phrase_text(run)
                if pending_name:
                    name = f"{pending_name}, {name}" if name else pending_name
                    pending_name = ""
                run = []
                spec = angle[1:]
                if spec.endswith(">"):
                    spec = spec[:-1]
                else:
                    odd = True  # unterminated: "<a@x, b@y"
                if "(" in spec:
                    spec = strip_comments(spec)
                added = add(strip_route(spec.strip()), name)
                if added is False:
                    return False
                if added is None:
                    odd = True
                found += bool(added)
            if run:  # text after the last angle-addr: "<a@x> junk", "<a@x> b@y"
                odd = True
                for spec in clusters(run):
                    if "@" in spec:
                        added = add(spec, "")
                        if added is False:
                            return False
                        found += added is not None
        if not found:
            result.invalid.append(clip(current.text()))
        elif odd:
            result.malformed.append(clip(current.text()))
        return True

    for kind, text, spaced in tokenise(value):
        checkpoint()
        if kind == "s":
            if text == ",":
                if not flush():
                    return result
            elif text == ";":
                if not flush():
                    return result
                if pending_name:
                    result.invalid.append(clip(pending_name))
                    pending_name = ""
                if group is not None:
                    group = None
                else:
                    result.semicolon_separated = True
            elif not entry.angles and group is None:  # ":" opens a group
                phrase = entry.text()
                if pending_name:
                    phrase = f"{pending_name}, {phrase}"
                    pending_name = ""
                group = phrase
                result.groups += 1
                entry = _Entry()
            else:  # a colon where no group can start
                entry.odd = True
                entry.tokens.append(("x", text, spaced))
        else:
            if kind == "a":
                entry.angles += 1
            elif kind == "x":
                # A stray ">", ")" or "\", or an unterminated quote or comment.
                entry.odd = True
            entry.tokens.append((kind, text, spaced))
    if flush() and pending_name:
        result.invalid.append(clip(pending_name))
    return result


def _join_obsolete(spec: str) -> str | None:
    """``jdoe@test . example`` -> ``jdoe@test.example``; ``None`` when spaces separate words."""
    parts = spec.split()
    if len(parts) < 2 or not all(map(joins, parts, parts[1:])):
        return None
    return "".join(parts)


def _make_address(spec: str, name: str, header: str, group: str | None) -> Address | None:
    """Validate and normalise an addr-spec; ``None`` when it is not a usable address.

    This runs once per recipient (10,000 times for a 10,000-recipient header), so the
    common case — unquoted local part, plain domain — avoids the per-character alternation
    of ``_ADDR_SPEC``, validates each domain once (cached), and builds the tuple directly.
    """
    local, at, domain = spec.rpartition("@")
    if at and _LOCAL_PLAIN.match(local):
        normal = _plain_domain(domain)
        if normal is not None:
            return _new_tuple(Address, (f"{local.lower()}@{normal}", normal, name, header, group))
    return _make_address_slow(spec, name, header, group)


def address_key(spec: str) -> str | None:
    """The normalised form of a bare addr-spec (an SMTP ``RCPT TO``), as ``Address.addr``.

    A bulk send has hundreds of envelope recipients and each is already a bare address, so
    the common case skips list parsing; anything unusual goes through the full parser.
    """
    local, at, domain = spec.rpartition("@")
    if at and _LOCAL_PLAIN.match(local):
        normal = _plain_domain(domain)
        if normal is not None:
            return f"{local.lower()}@{normal}"
    parsed = parse_address_list(spec, "envelope").addresses
    return parsed[0].addr if parsed else None


@functools.lru_cache(maxsize=65536)
def _plain_domain(domain: str) -> str | None:
    return normalise_domain(domain) if _DOMAIN_PLAIN.match(domain) else None


def _make_address_slow(spec: str, name: str, header: str, group: str | None) -> Address | None:
    spec = spec.strip()
    if spec[:7].lower() == "mailto:":
        spec = spec[7:]
    if len(spec) > 2 and spec[0] == "'" and spec[-1] == "'":
        # Outlook's 'jacob@hotmail.com': the quotes are not part of the address.
        spec = spec[1:-1].strip()
    m = _ADDR_SPEC.match(spec)
    if m is None:
        # Obsolete spacing around "." and "@" (RFC 5322 4.4), as in ``<jdoe @ test . example>``
        # or a bare ``a . b@x``.
        joined = _join_obsolete(spec)
        m = _ADDR_SPEC.match(joined) if joined else None
        if m is None:
            return None
    local, domain = m.group("local", "domain")
    if domain.startswith("["):
        domain = _canonical_literal(domain)
    elif domain.endswith("'"):
        domain = domain.rstrip("'")  # 'a@hotmail.com' with the opening quote lost
    normal = normalise_domain(domain)
    if normal is None:
        return None
    if '"' in local or "\\" in local:
        local = _canonical_local(local)
    return Address(f"{local.lower()}@{normal}", normal, name, header, group)


def _canonical_local(local: str) -> str:
    """One spelling per mailbox: ``"john"`` and ``john`` are the same local part.

    Quotes (and quoted-pairs) that carry no meaning are removed (RFC 5322 3.4.1: the
    local part's meaning is its content; ``"john".smith`` is ``john.smith``); a local part
    that needs them (``"john smith"``) keeps them, re-quoted with the minimal escapes, so
    it stays distinct from ``johnsmith``.
    """
    value = "".join(
        atom or _QUOTED_PAIR.sub(r"\1", quoted) for quoted, atom in _LOCAL_WORDS.findall(local)
    )
    if _DOT_ATOM.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canonical_literal(domain: str) -> str:
    """``[IPv6:0:0:0:0:0:0:0:1]`` and ``[IPv6:::1]`` are one host; so are IPv4 spellings."""
    inner = domain[1:-1].strip()
    try:
        if inner[:5].lower() == "ipv6:":
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:])}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        return domain
