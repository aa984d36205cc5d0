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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

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


_new_tuple = tuple.__new__  # Address(...) goes through a Python-level __new__: 2x slower


# One token of an address list. Each alternative is linear (no nested quantifiers over
# overlapping classes), so a 1 MB hostile line cannot make the regex backtrack.
#
# Unterminated constructs must not swallow the rest of the list (one typo would hide every
# later address): an unterminated quoted string matches ``u`` (its ``"`` marks the entry
# broken and the text after it is tokenised normally), and an unterminated angle-addr stops
# at the next ``,`` or ``;``. Once one quoted string is unterminated, every later ``"`` is
# an escaped one of that scan and cannot be terminated either, so the rest is tokenised by
# the pattern without quoted strings: rescanning to the end for each would be quadratic.
def _token_pattern(quotes: bool) -> re.Pattern[str]:
    alternatives = [
        r'(?P<q>"(?:[^"\\]|\\.)*")',  # quoted-string
        r'(?P<u>"(?:[^"\\]|\\.)*)',  # unterminated quoted-string (to end of input)
    ] if quotes else []  # fmt: skip
    alternatives += [
        r"(?P<a><[^<>]*>|<[^<>,;]*)",  # angle-addr (possibly with route), or unterminated
        r"(?P<s>[,;:])",  # separators
        r"(?P<c>\()",  # comment start: nesting handled by hand
        r'(?P<w>[^ \t\r\n"()<>,;:\\]+)',  # atom / dot-atom / addr-spec fragment
        r'(?P<x>[<>)\\"])',  # stray specials (a quote only once quoted strings are off)
    ]
    return re.compile(r"[ \t\r\n]*(?:" + "|".join(alternatives) + ")", re.DOTALL)


_TOKEN = _token_pattern(quotes=True)
_TOKEN_NO_QUOTES = _token_pattern(quotes=False)
_COMMENT_PART = re.compile(r"[^()\\]+|\\.?|[()]", re.DOTALL)

# local@domain with a non-empty local part and a domain of at least one label; the domain
# may be an address literal like [192.0.2.1]. Checked after tokens are joined.
_LOCAL_PLAIN = re.compile(r'[^@\s"<>(),;:\\\[\]]+\Z')
_DOMAIN_PLAIN = re.compile(r'[^@\s"<>(),;:\\]+\Z')
_ADDR_SPEC = re.compile(
    r'^(?P<local>(?:"(?:[^"\\]|\\.)*"|[^@\s"<>(),;:\\\[\]])+)@(?P<domain>[^@\s"<>(),;:\\]+)$'
)


def parse_address_list(
    value: str, header: str, *, limit: int | None = None, start_count: int = 0
) -> ParsedList:
    """Parse one header value into addresses, tolerating every malformation seen in the wild.

    ``limit`` bounds the total number of addresses (``start_count`` already found elsewhere)
    so that a hostile 10-million-address header is cut off in bounded time.
    """
    # ( ) \ : ; need the careful tokeniser; without them a (quote-aware) split is exact.
    # "x in str" is a C substring search, several times faster than a character-class regex.
    hard = "(" in value or ")" in value or "\\" in value or ":" in value or ";" in value
    if not hard:
        fast = _parse_split(value, header, limit, start_count)
        if fast is not None:
            return fast
    return _parse_tokens(value, header, limit, start_count)


def _parse_split(value: str, header: str, limit: int | None, start_count: int) -> ParsedList | None:
    """Fast path for lists without comments, groups or escapes: the vast majority.

    Handles ``Name <a@b>``, bare ``a@b`` and quoted names with commas (``"Last, First"
    <a@b>``) with C-level ``split`` calls instead of a per-token regex loop — several
    times faster than the tokeniser on a 300-address header. Commas inside quotes are
    masked before the split. Returns ``None`` when the header holds anything the careful
    tokeniser must judge (an unterminated quote, brackets inside quotes, a quoted word
    before a bare address, any invalid entry next to quotes), so both paths agree.
    """
    quoted = '"' in value
    if quoted:
        if "\x00" in value:
            return None
        segments = value.split('"')
        if len(segments) % 2 == 0:
            return None  # an unterminated quote
        for i in range(1, len(segments), 2):
            segment = segments[i]
            if "<" in segment or ">" in segment:
                return None
            if "," in segment:
                segments[i] = segment.replace(",", "\x00")
        value = '"'.join(segments)
    result = ParsedList([], [])
    pending_name = ""
    count = start_count
    for piece in value.split(","):
        checkpoint()
        piece = piece.strip()
        if not piece:
            continue
        lt = piece.find("<")
        if lt >= 0:
            gt = piece.find(">", lt)
            spec = piece[lt + 1 : gt if gt >= 0 else len(piece)].strip()
            name = piece[:lt].strip()
            if pending_name:
                name = f"{pending_name}, {name}" if name else pending_name
                pending_name = ""
            if (gt >= 0 and piece[gt + 1 :].strip()) or "<" in spec:
                if quoted:
                    return None  # let the tokeniser describe the broken entry
                result.invalid.append(_clip(piece))
                continue
            if quoted:
                if '"' in spec:
                    return None  # a quoted local part: the tokeniser's job
                name = name.replace("\x00", ",")
            addr = _make_address(spec, name, header, None)
        else:
            if pending_name:
                if quoted:
                    return None
                result.invalid.append(_clip(pending_name))
                pending_name = ""
            if quoted and '"' in piece:
                return None  # a quoted word before a bare address, or a quoted local part
            if "@" not in piece:
                # "Doe, Jane <j@x>": an unquoted comma in a display name. Hold the
                # fragment and give it to the next entry if that one has an angle-addr.
                pending_name = piece
                continue
            addr = _make_address(piece, "", header, None)
        if addr is None:
            if quoted:
                return None
            result.invalid.append(_clip(piece))
            continue
        if limit is not None and count >= limit:
            result.truncated = True
            return result
        result.addresses.append(addr)
        count += 1
    if pending_name:
        if quoted:
            return None
        result.invalid.append(_clip(pending_name))
    return result


def _tokens(value: str) -> Iterator[tuple[str, str, bool]]:
    """Yield ``(kind, text, spaced)``; ``spaced`` says whitespace preceded the token.

    A ``"`` or ``(`` that opens a quote or comment never closed comes out as a stray ``x``
    token: the parser marks its entry broken and keeps the addresses that follow.
    """
    pos = 0
    end = len(value)
    match = _TOKEN.match
    closes: dict[int, int] | None = None
    while pos < end:
        m = match(value, pos)
        if m is None:  # only trailing whitespace is left
            return
        kind = m.lastgroup or "x"
        start = m.start(kind)
        spaced = start > pos
        if kind == "c":
            if closes is None:
                pos = _skip_comment(value, m.end())
                if pos < 0:
                    # Unterminated: match every later "(" in one pass, so that finding the
                    # end of each later comment does not rescan to the end of the value.
                    closes = _match_parens(value, start)
            else:
                pos = closes.get(start, -1)
            if pos >= 0:
                continue
            kind, pos = "x", m.end()
        elif kind == "u":
            match = _TOKEN_NO_QUOTES.match
            kind, pos = "x", start + 1
        else:
            pos = m.end()
        yield kind, m.group(kind) if kind != "x" else value[start], spaced


def _skip_comment(value: str, pos: int) -> int:
    """Return the index after a (possibly nested) comment, or -1 if it is never closed."""
    depth = 1
    end = len(value)
    while pos < end and depth:
        m = _COMMENT_PART.match(value, pos)
        if m is None:
            break
        text = m.group()
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        pos = m.end()
    return -1 if depth else pos


def _match_parens(value: str, start: int) -> dict[int, int]:
    """Map each ``(`` from ``start`` on to the index after its ``)``; unclosed ones are absent."""
    closes: dict[int, int] = {}
    stack: list[int] = []
    for m in _COMMENT_PART.finditer(value, start):
        text = m.group()
        if text == "(":
            stack.append(m.start())
        elif text == ")" and stack:
            closes[stack.pop()] = m.end()
    return closes


def _strip_comments(spec: str) -> str:
    """Remove comments inside an angle-addr: ``<pete(his account)@silly.test>`` (RFC 5322 A.5)."""
    out: list[str] = []
    pos = 0
    while (start := spec.find("(", pos)) >= 0:
        out.append(spec[pos:start])
        pos = _skip_comment(spec, start + 1)
        if pos < 0:  # unterminated: the rest is comment
            return "".join(out)
    out.append(spec[pos:])
    return "".join(out)


class _Entry:
    """Tokens gathered for one mailbox until a separator closes it."""

    __slots__ = ("angle", "broken", "words")

    def __init__(self) -> None:
        self.words: list[tuple[str, str, bool]] = []
        self.angle: str | None = None
        self.broken = False
        """A second angle-addr, text after the angle-addr, or an unterminated quote/comment."""

    def empty(self) -> bool:
        return not self.words and self.angle is None

    def phrase(self) -> str:
        out: list[str] = []
        for _kind, text, spaced in self.words:
            if out and spaced:
                out.append(" ")
            out.append(text)
        return "".join(out)

    def text(self) -> str:
        phrase = self.phrase()
        if self.angle is not None:
            return f"{phrase} {self.angle}".strip()
        return phrase


def _parse_tokens(value: str, header: str, limit: int | None, start_count: int) -> ParsedList:
    """Careful path: quoted strings, comments, groups, semicolons, encoded words."""
    result = ParsedList([], [])
    group: str | None = None
    entry = _Entry()
    pending_name = ""
    count = start_count

    def flush() -> bool:
        """Close the current entry; return False when the address limit is reached."""
        nonlocal entry, pending_name, count
        current, entry = entry, _Entry()
        if current.empty():
            return True
        if current.angle is not None:
            name = current.phrase()
            if pending_name:
                name = f"{pending_name}, {name}" if name else pending_name
                pending_name = ""
            if current.broken:
                result.invalid.append(_clip(current.text()))
                return True
            spec = current.angle[1:]
            spec = spec[:-1] if spec.endswith(">") else spec
            if "(" in spec and '"' not in spec:
                spec = _strip_comments(spec)
            spec = _strip_route(spec.strip())
            addr = _make_address(spec, name, header, group)
        else:
            if pending_name:
                result.invalid.append(_clip(pending_name))
                pending_name = ""
            if current.broken:
                result.invalid.append(_clip(current.text()))
                return True
            joined = "".join(text for _k, text, _s in current.words)
            if "@" not in joined:
                pending_name = current.phrase()
                return True
            # A bare addr-spec may only be split by whitespace around dots/at-signs
            # (obsolete syntax: ``jdoe@test . example``); a phrase before an address
            # (``John a@x``) is not one, and joining it would invent ``johna@x``.
            words = current.words
            spaced_ok = all(
                not spaced or _joins(words[i - 1][1], text)
                for i, (_kind, text, spaced) in enumerate(words)
                if i
            )
            addr = _make_address(joined, "", header, group) if spaced_ok else None
        if addr is None:
            result.invalid.append(_clip(current.text()))
            return True
        if limit is not None and count >= limit:
            result.truncated = True
            return False
        result.addresses.append(addr)
        count += 1
        return True

    for kind, text, spaced in _tokens(value):
        checkpoint()
        if kind == "s":
            if text == ",":
                if not flush():
                    return result
            elif text == ";":
                if not flush():
                    return result
                if pending_name:
                    result.invalid.append(_clip(pending_name))
                    pending_name = ""
                if group is not None:
                    group = None
                else:
                    result.semicolon_separated = True
            elif entry.angle is None and group is None:  # ":" opens a group
                if pending_name:
                    name = f"{pending_name}, {entry.phrase()}"
                    pending_name = ""
                else:
                    name = entry.phrase()
                group = name
                result.groups += 1
                entry = _Entry()
            else:
                entry.words.append(("w", text, spaced))
        elif kind == "a":
            if entry.angle is None:
                entry.angle = text
            else:
                entry.broken = True
        elif kind in ("q", "w"):
            if entry.angle is not None and kind == "w":
                # Text after the angle-addr ("<a@b> junk"): not an address we can trust.
                entry.broken = True
            entry.words.append((kind, text, spaced))
        elif text in '"(':
            # An unterminated quote or comment: this entry is broken, later ones are not.
            entry.broken = True
            entry.words.append((kind, text, spaced))
        # stray ">", ")" and "\\" are ignored: they carry no address
    if flush() and pending_name:
        result.invalid.append(_clip(pending_name))
    return result


def _strip_route(spec: str) -> str:
    """Drop an obsolete source route: ``@relay1,@relay2:user@host`` -> ``user@host``."""
    if spec.startswith("@") and ":" in spec:
        return spec.rsplit(":", 1)[1]
    return spec


def _joins(before: str, after: str) -> bool:
    """Whether whitespace between two words may sit inside an obsolete-syntax addr-spec."""
    return before.endswith((".", "@")) or after.startswith((".", "@"))


def _join_obsolete(spec: str) -> str | None:
    """``jdoe@test . example`` -> ``jdoe@test.example``; ``None`` when spaces separate words."""
    parts = spec.split()
    if len(parts) < 2 or not all(map(_joins, parts, parts[1:])):
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
    m = _ADDR_SPEC.match(spec)
    if m is None:
        # Obsolete spacing around "." and "@" (RFC 5322 4.4), as in ``<jdoe @ test . example>``
        # or a bare ``a . b@x``.
        joined = _join_obsolete(spec)
        m = _ADDR_SPEC.match(joined) if joined else None
        if m is None:
            return None
    local, domain = m.group("local", "domain")
    normal = normalise_domain(domain)
    if normal is None:
        return None
    return Address(f"{local.lower()}@{normal}", normal, name, header, group)


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
