"""Counted nouns for human-readable output: "1 message", "2 messages", "1 person"."""

from __future__ import annotations

import re
from typing import Any

#: What a terminal acts on rather than shows: C0 and C1 controls (ESC starts sequences that
#: move the cursor, clear the screen, retitle the window; CR and LF start a new line), DEL,
#: the Unicode line and paragraph separators, and the bidirectional controls that can make
#: text read differently from how it is stored ("Trojan Source", CVE-2021-42574).
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_UNPRINTABLE_BUT_LF = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` safe to write to a terminal: control characters shown as Python escapes
    (``\\x1b``, ``\\n``, ``\\u202e``).

    File names, Message-IDs, subjects and attachment names come from whoever wrote the mail
    or named the file: one with a newline could forge a line of the report ("PASS ..."),
    one with ESC could rewrite what the reader sees. ``lines=True`` keeps line feeds, for
    messages of ours that span lines; the text renderers pass one line at a time.
    """
    pattern = _UNPRINTABLE_BUT_LF if lines else _UNPRINTABLE
    return pattern.sub(_escaped, text) if pattern.search(text) else text


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and the noun that agrees with it."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def dns_text(dns: Any) -> str:
    """The provenance's ``dns`` entry in words (absent in registers made before it)."""
    if not isinstance(dns, dict):
        return "not recorded"
    if not dns.get("enabled"):
        return str(dns.get("note", "off"))
    servers = dns.get("servers")
    shown = ", ".join(servers) if isinstance(servers, list) else str(servers)
    return f"on, asking {shown}; {dns.get('note', '')}".rstrip("; ")
