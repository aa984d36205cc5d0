"""Reading what learning needs from a message's header block, fast.

Learning reads a whole Sent folder (the target is 20,000 messages a second on one core),
so it does not build the full message model the rules use: one regex pass over the header
block finds the few fields that matter, plain address lists (the vast majority) are cut
with a second regex, and anything unusual (quotes, comments, groups, encoded words) goes
through mailguard's own address parser, so both paths give the same normalised addresses
(``mailguard.addresses.address_key``) the rules compare with at check time.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import NamedTuple

from mailguard.addresses import address_key, parse_address_list

MAX_HEADER_BYTES = 256 * 1024
"""Header blocks are read up to here; a longer one is hostile or broken."""

_FIELDS = re.compile(
    rb"^(from|to|cc|bcc|resent-to|resent-cc|message-id|in-reply-to|references|date)"
    rb"[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
    re.IGNORECASE | re.MULTILINE,
)
_NAMES = {
    n.encode(): n.lower()
    for name in ("From", "To", "Cc", "Bcc", "Message-ID", "In-Reply-To", "References", "Date")
    for n in (name, name.lower(), name.upper())
}
"""Field names as usually written, decoded once."""
_RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc", "resent-to", "resent-cc"})
_SIMPLE_SPEC = re.compile(r"<([^<>\s]+)>|([^\s,;<>\"]+@[^\s,;<>\"]+)")
_ID = re.compile(r"<([^<>\s]{1,250})>")
_DATE = re.compile(
    r"(\d{1,2})\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\s+(\d{4})", re.I
)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_EPOCH = datetime.date(1970, 1, 1).toordinal()


class Observation(NamedTuple):
    """One sent message as learning sees it (addresses normalised, still in clear). A named
    tuple: a frozen dataclass costs three times as much to make, a million times a run."""

    sender: str | None
    recipients: tuple[str, ...]
    """Distinct To/Cc/Bcc/Resent-* addresses, the sender left out, in first-seen order."""
    message_id: str
    parents: tuple[str, ...]
    """In-Reply-To, then References (oldest first): the thread the message belongs to."""
    day: int | None
    """Days since 1970-01-01 from the Date field, if it could be read."""

    @property
    def root(self) -> str:
        """The thread's first message as the message itself names it."""
        return self.parents[-1] if self.parents else self.message_id


def header_block(raw: bytes) -> bytes:
    """The header block (up to the first empty line), at most :data:`MAX_HEADER_BYTES`."""
    ends = [i for i in (raw.find(b"\n\n", 0, MAX_HEADER_BYTES),
                        raw.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES)) if i >= 0]  # fmt: skip
    return raw[: min(ends)] if ends else raw[:MAX_HEADER_BYTES]


def observe(raw: bytes) -> Observation:
    """What learning needs from ``raw`` (a whole message or its header block)."""
    sender: str | None = None
    recipients: dict[str, None] = {}
    message_id: str | None = None
    reply_to: list[str] = []
    references: list[str] = []
    day = None
    block = header_block(raw)
    for name_b, value_b in _FIELDS.findall(block):
        name = _NAMES.get(name_b) or name_b.decode("ascii").lower()
        value = value_b.decode("utf-8", "surrogateescape")
        if name in _RECIPIENT_FIELDS:
            for address in addresses(value, name):
                recipients[address] = None
        elif name == "from" and sender is None:
            found = addresses(value, name)
            sender = found[0] if found else None
        elif name == "message-id" and message_id is None:
            ids = _ID.findall(value)
            message_id = ids[0] if ids else (value.strip()[:250] or None)
        elif name == "in-reply-to":
            reply_to += _ID.findall(value)
        elif name == "references":
            references += _ID.findall(value)
        elif name == "date" and day is None:
            day = parse_day(value)
    if sender is not None:
        recipients.pop(sender, None)
    if message_id is None:  # still recognised when read again (a relearn), by its headers
        message_id = "no-id:" + hashlib.blake2b(block, digest_size=12).hexdigest()
    parents = tuple(dict.fromkeys([*reply_to[:1], *reversed(references[-100:])]))
    return Observation(sender, tuple(recipients), message_id, parents, day)


_SEEN: dict[str, list[str]] = {}
_SEEN_MAX = 65536


def addresses(value: str, header: str) -> list[str]:
    """Normalised addr-specs of one address field: plain lists cut by regex, others parsed.

    A Sent folder repeats the same address fields over and over, so results are kept
    (bounded) by the field's text.
    """
    found = _SEEN.get(value)
    if found is None:
        found = _addresses(value, header)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[value] = found
    return found


def _addresses(value: str, header: str) -> list[str]:
    if '"' in value or "(" in value or ":" in value or "=?" in value or "\\" in value:
        return [a.addr for a in parse_address_list(" ".join(value.split()), header).addresses]
    found = []
    for angle, bare in _SIMPLE_SPEC.findall(value):
        key = address_key(angle or bare)
        if key is not None:
            found.append(key)
    return found


_DAYS: dict[str, int | None] = {}


def parse_day(value: str) -> int | None:
    m = _DATE.search(value)
    if m is None:
        return None
    text = m.group()
    day = _DAYS.get(text, -1)
    if day != -1:
        return day
    try:
        when = datetime.date(int(m.group(3)), _MONTHS[m.group(2)[:3].lower()], int(m.group(1)))
        day = when.toordinal() - _EPOCH
    except ValueError:
        day = None
    if len(_DAYS) >= 65536:
        _DAYS.clear()
    _DAYS[text] = day
    return day
