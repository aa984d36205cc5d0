"""The careful path's lexer for address lists: tokens, comments, candidate addr-specs.

Split from :mod:`mailguard.addresses`, which holds the model, the fast path and the parser
that turns these tokens into entries. Nothing here knows about entries or addresses; it
only cuts header text into the pieces the parser judges, each in linear time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_QUOTED = r'"(?:[^"\\]|\\.)*+"'


# One token of an address list. Each alternative is linear (possessive or disjoint
# repetitions), so a 1 MB hostile line cannot make the regex backtrack.
#
# Unterminated constructs must not swallow the rest of the list (one typo would hide every
# later address): an unterminated quoted string matches ``u`` (its ``"`` marks the entry
# broken and the text after it is tokenised normally), and an unterminated angle-addr stops
# at the next ``,`` or ``;``. Once one quoted string is unterminated, every later ``"`` is
# an escaped one of that scan and cannot be terminated either, so the rest is tokenised by
# the pattern without quoted strings: rescanning to the end for each would be quadratic.
#
# An angle-addr may hold a quoted local part with ``<`` or ``>`` in it (``<"a>b"@x>``); it
# is tried first, then the plain one, so that a stray quote inside brackets does not pair
# with a quote in a later entry. The plain one stops at ``,`` or ``;`` as an unterminated
# one does: else a stray ``<`` ran to a ``>`` quoted in a later display name
# (``<, ">" <""@x>``) and swallowed the entries between. A domain literal
# (``[IPv6:2001:db8::1]``) is part of a word: its colons are not group syntax.
def _token_pattern(quotes: bool) -> re.Pattern[str]:
    alternatives = [
        rf"(?P<q>{_QUOTED})",  # quoted-string
        r'(?P<u>"(?:[^"\\]|\\.)*+)',  # unterminated quoted-string (to end of input)
        rf'(?P<a><(?:[^<>"]++|{_QUOTED})*+>|<[^<>,;]*+>?)',  # angle-addr (or unterminated)
    ] if quotes else [r"(?P<a><[^<>]*+>|<[^<>,;]*+)"]  # fmt: skip
    alternatives += [
        r"(?P<s>[,;:])",  # separators
        r"(?P<c>\()",  # comment start: nesting handled by hand
        # atom / dot-atom / addr-spec fragment, with domain literals kept whole
        r'(?P<w>(?:[^ \t\r\n"()<>,;:\\\[]++|\[[^\[\]\\ \t\r\n"()<>,;]*+\]|\[)++)',
        r'(?P<x>[<>)\\"])',  # stray specials (a quote only once quoted strings are off)
    ]
    return re.compile(r"[ \t\r\n]*+(?:" + "|".join(alternatives) + ")", re.DOTALL)


_TOKEN = _token_pattern(quotes=True)
_TOKEN_NO_QUOTES = _token_pattern(quotes=False)
_COMMENT_PART = re.compile(r"[^()\\]+|\\.?|[()]", re.DOTALL)
_TEXT_OR_QUOTED = re.compile(rf'[^"(]++|{_QUOTED}|"', re.DOTALL)

_ROUTE = re.compile(r"(?:[ \t\r\n,]*+@(?:\[[^\[\]]*+\]|[^,:@\[\]]*+))++[ \t\r\n]*+:")


def tokenise(value: str) -> Iterator[tuple[str, str, bool]]:
    """Yield ``(kind, text, spaced)``; ``spaced`` says whitespace or a comment preceded it.

    A comment separates words as whitespace does (RFC 5322 CFWS): ``John(x)a@b`` must not
    become ``johna@b``. A ``"`` or ``(`` that opens a quote or comment never closed comes out
    as a stray ``x`` token: the parser marks its entry broken and keeps what follows.
    """
    pos = 0
    end = len(value)
    match = _TOKEN.match
    closes: dict[int, int] | None = None
    after_comment = False
    while pos < end:
        m = match(value, pos)
        if m is None:  # only trailing whitespace is left
            return
        kind = m.lastgroup or "x"
        start = m.start(kind)
        spaced = after_comment or start > pos
        after_comment = False
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
                after_comment = True
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


def strip_comments(spec: str) -> str:
    """Remove comments inside an angle-addr: ``<pete(his account)@silly.test>`` (RFC 5322 A.5).

    A ``(`` inside a quoted local part is text, not a comment: ``<(c)"a(b)"@x>``.
    """
    out: list[str] = []
    pos = 0
    end = len(spec)
    while pos < end:
        m = _TEXT_OR_QUOTED.match(spec, pos)
        if m is not None:
            out.append(m.group())
            pos = m.end()
            continue
        pos = _skip_comment(spec, pos + 1)  # spec[pos] is "(" here
        if pos < 0:  # unterminated: the rest is comment
            break
    return "".join(out)


Token = tuple[str, str, bool]


def phrase_text(tokens: list[Token]) -> str:
    out: list[str] = []
    for _kind, text, spaced in tokens:
        if out and spaced:
            out.append(" ")
        out.append(text)
    return "".join(out)


def clusters(run: list[Token]) -> list[str]:
    """Split words into the addr-spec candidates a reader sees: ``Jane jane@x`` -> 2.

    Whitespace (or a comment) separates candidates unless it sits next to a ``.`` or ``@``
    (obsolete spacing inside one addr-spec, ``jdoe @ test . example``); a stray special
    always separates them.
    """
    out: list[str] = []
    current: list[str] = []
    for kind, text, spaced in run:
        if kind == "x":
            if current:
                out.append("".join(current))
                current = []
            continue
        if current and spaced and not joins(current[-1], text):
            out.append("".join(current))
            current = []
        current.append(text)
    if current:
        out.append("".join(current))
    return out


def strip_route(spec: str) -> str:
    """Drop an obsolete source route: ``@relay1,@relay2:user@host`` -> ``user@host``."""
    if spec.startswith("@"):
        m = _ROUTE.match(spec)
        if m is not None:
            return spec[m.end() :]
    return spec


def joins(before: str, after: str) -> bool:
    """Whether whitespace between two words may sit inside an obsolete-syntax addr-spec."""
    return before.endswith((".", "@")) or after.startswith((".", "@"))


def clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
