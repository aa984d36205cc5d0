"""Header edits on the raw bytes the proxy relays; the body is never touched.

The milter edits headers through the MTA (CHGHEADER by index); the proxy holds the message
itself, so it edits the header block as bytes: a field is its first line plus every
continuation line, deleted or kept whole, so nothing of a deleted field (a folded Cc list)
survives. Fields we add go at the end of the header block, in the message's own line-end
style. What is not edited is passed on byte for byte, including 8-bit header text.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable

from mailguard.headers import ADDRESS_HEADERS, find_header_end

OUR_PREFIX = b"x-mailguard-"
#: Fields that name recipients: a split copy names only its own.
RECIPIENT_FIELDS = frozenset(name.encode() for name in ADDRESS_HEADERS) | {b"apparently-to"}
_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


def split(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """``(fields, line end, body)``: each field with its continuation lines and line ends.

    A message without a blank line is all header; bytes before the first field (a stray
    continuation line) stay attached to the first "field" and are kept as they were.
    """
    end = find_header_end(raw, 0, len(raw))
    eol = b"\r\n" if b"\r\n" in raw[: raw.find(b"\n") + 1] else b"\n"
    if end is None:
        head, body = raw, eol  # all header: the fields added end it with a blank line
    else:
        cut = end[0] + (2 if raw[end[0] : end[0] + 1] == b"\r" else 1)
        head, body = raw[:cut], raw[cut:]  # body: the blank line and what follows
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    if fields and not fields[-1].endswith(b"\n"):
        fields[-1] += eol
    return fields, eol, body


def name_of(field: bytes) -> bytes:
    match = _NAME.match(field)
    return match.group(1).lower() if match else b""


def edit(
    raw: bytes, delete: Iterable[bytes] = (), add: Iterable[tuple[str, str]] = (),
    *, delete_ours: bool = False,
) -> bytes:  # fmt: skip
    """``raw`` without the fields named in ``delete`` (lower case), with ``add`` appended."""
    gone = frozenset(delete)
    fields, eol, body = split(raw)
    kept = [
        f for f in fields
        if name_of(f) not in gone and not (delete_ours and name_of(f).startswith(OUR_PREFIX))
    ]  # fmt: skip
    added = [f"{name}: {value}".encode("utf-8", "surrogateescape") + eol for name, value in add]
    return b"".join(kept) + b"".join(added) + body


def add_headers(raw: bytes, headers: list[tuple[str, str]]) -> bytes:
    """Our X-Mailguard-* fields, after deleting any the sender forged (none: unchanged)."""
    if not headers:
        return raw
    return edit(raw, add=headers, delete_ours=True)


def split_copy(raw: bytes, recipient: str, message_id: str, extra: list[tuple[str, str]]) -> bytes:
    """One recipient's copy: ``To:`` that recipient alone, no Cc/Bcc, a fresh Message-ID."""
    return edit(
        raw,
        delete=RECIPIENT_FIELDS | {b"message-id"},
        add=[("To", recipient), ("Message-ID", message_id), *extra],
        delete_ours=True,
    )


def message_id_domain(raw: bytes, fallback: str) -> str:
    """The right-hand side of the original Message-ID (or ``fallback``) for the copies'."""
    fields, _, _ = split(raw)
    for field in fields:
        if name_of(field) == b"message-id":
            value = field.split(b":", 1)[1].decode("ascii", "replace")
            match = re.search(r"@([A-Za-z0-9.-]{1,200})>", value)
            if match:
                return match.group(1)
    return fallback


def fresh_message_id(domain: str) -> str:
    return f"<{int(time.time())}.{secrets.token_hex(10)}.mailguard-split@{domain}>"
