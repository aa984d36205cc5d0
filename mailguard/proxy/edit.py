"""Header edits on the raw bytes the proxy relays; the body is never touched.

The milter edits headers through the MTA (delete by index, add at the end); the proxy holds
the message itself, so it applies the same :class:`~mailguard.remedy.Edit` operations to
the bytes with :func:`mailguard.remedy.apply_to_bytes`: a deleted field goes with all its
continuation lines (nothing of a folded Cc list survives), added fields go at the end of the
header block in the message's own line-end style, and everything else passes byte for byte,
8-bit header text included.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

from mailguard.headers import ADDRESS_HEADERS, find_header_end
from mailguard.remedy import Edit, apply_to_bytes, fields_of

OUR_PREFIX = "x-mailguard-"
#: Fields that name recipients: a split copy names only its own.
RECIPIENT_FIELDS = frozenset((*ADDRESS_HEADERS, "apparently-to"))
_MESSAGE_ID_DOMAIN = re.compile(r"@([A-Za-z0-9.-]{1,200})>")


def deletions(raw: bytes, doomed: Callable[[str], bool]) -> list[Edit]:
    """Delete every field whose lower-case name is ``doomed``, highest index first."""
    counts: dict[str, tuple[str, int]] = {}
    for name, _ in fields_of(raw):
        key = name.strip().lower()
        if doomed(key):
            counts[key] = (name.strip(), counts.get(key, ("", 0))[1] + 1)
    return [Edit("delete", name, index=i) for name, n in counts.values() for i in range(n, 0, -1)]


def _ours(name: str) -> bool:
    return name.startswith(OUR_PREFIX)


def add_headers(raw: bytes, headers: list[tuple[str, str]]) -> bytes:
    """Our X-Mailguard-* fields, after deleting any the sender forged (none: unchanged)."""
    if not headers:
        return raw
    adds = [Edit("add", name, value) for name, value in headers]
    return apply_to_bytes(raw, [*deletions(raw, _ours), *adds])


def without(raw: bytes, name: str) -> bytes:
    """``raw`` without any field called ``name`` (e.g. an approval field before relaying)."""
    key = name.lower()
    return apply_to_bytes(raw, deletions(raw, lambda n: n == key))


class SplitTemplate:
    """The message with every recipient field, Message-ID and X-Mailguard-* removed, once;
    each copy then only inserts its own ``To:`` and a fresh ``Message-ID`` (cheap enough to
    build 10,000 copies one at a time, each sent and dropped before the next is made)."""

    def __init__(self, raw: bytes, fallback_domain: str, extra: list[tuple[str, str]]) -> None:
        self.domain = message_id_domain(raw, fallback_domain)

        def doomed(name: str) -> bool:
            return name in RECIPIENT_FIELDS or name == "message-id" or _ours(name)

        stripped = apply_to_bytes(raw, deletions(raw, doomed))
        end = find_header_end(stripped, 0, len(stripped))
        if end is None:
            self.head, self.rest = stripped, b"\r\n"
        else:
            cut = end[0] + (2 if stripped[end[0] : end[0] + 1] == b"\r" else 1)
            self.head, self.rest = stripped[:cut], stripped[cut:]
        first = raw.find(b"\n")
        self.eol = b"\r\n" if first > 0 and raw[first - 1] == 13 else b"\n"
        if self.head and not self.head.endswith(b"\n"):
            self.head += self.eol
        self.extra = b"".join(self._field(n, v) for n, v in extra)

    def _field(self, name: str, value: str) -> bytes:
        text = f"{name}: {value}".replace("\r", "").replace("\n", "")
        return text.encode("utf-8", "surrogateescape") + self.eol

    def copy(self, recipient: str) -> bytes:
        """``To:`` that recipient alone (the envelope address), a new Message-ID."""
        fresh = f"<{int(time.time())}.{secrets.token_hex(10)}.split@{self.domain}>"
        added = self._field("To", recipient) + self._field("Message-ID", fresh)
        return self.head + added + self.extra + self.rest


def message_id_domain(raw: bytes, fallback: str) -> str:
    """The right-hand side of the original Message-ID (or ``fallback``) for the copies'."""
    for name, value in fields_of(raw):
        if name.strip().lower() == "message-id":
            match = _MESSAGE_ID_DOMAIN.search(value)
            if match:
                return match.group(1)
    return fallback
