"""The one message model every check reads: headers parsed once, body decoded on demand.

Speed comes from not parsing what no rule needs. The header block is sliced off with one
regex search (a 2 MB attachment costs nothing until a rule asks for body text) and split by
hand; the standard library's parsers are 3-8x slower here and raise on hostile nesting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailguard.body import BodyText, first_text
from mailguard.errors import InputError
from mailguard.headers import HeaderProblem, find_header_end, parse_header_block
from mailguard.limits import Limits

_SMTP_UNSTUFF = re.compile(rb"^\.", re.MULTILINE)
_END_OF_DATA = re.compile(rb"(?:\A|[\r\n])\.(?:\r\n|\r|\n|\Z)")
"""A line that is a lone dot: where an SMTP server ends the DATA section. Its line ends may
be CRLF, a bare LF or a bare CR on either side, in any mix: servers differ in which of
these they take for the end, and each one some server takes is a way to smuggle a second
message past a check that only knows CRLF (SMTP smuggling, SEC Consult 2023)."""
_NOT_BLANK = re.compile(rb"\S")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # compound file: Outlook .msg
# Field names only email has (RFC 5322, MIME, trace, list and common extension fields).
# A text file whose lines happen to hold a colon (a URL list, "a:b" records, addresses with
# quoted colons) parses as a "header block" of odd names; without one of these it is not
# a message, and calling it a message with no recipients would call it clean.
# fmt: off
_MAIL_FIELDS = frozenset((
    "from", "to", "cc", "bcc", "sender", "reply-to", "subject", "date", "message-id",
    "in-reply-to", "references", "comments", "keywords", "received", "return-path",
    "delivered-to", "envelope-to", "mime-version", "organization", "importance", "priority",
    "sensitivity", "thread-topic", "thread-index", "user-agent", "newsgroups", "path",
    "followup-to", "approved", "status", "precedence", "errors-to",
    "disposition-notification-to", "return-receipt-to", "authentication-results",
    "received-spf", "autocrypt", "openpgp",
))
# fmt: on
_MAIL_FIELD_PREFIXES = ("x-", "content-", "resent-", "list-", "dkim-", "arc-", "domainkey-")


@dataclass
class Message:
    """Parsed view of one message. Construct with :func:`parse_message`."""

    raw: bytes
    headers: dict[str, list[str]]
    body_offset: int
    limits: Limits
    problems: list[HeaderProblem] = field(default_factory=list)
    _body_text: BodyText | None = field(default=None, repr=False, compare=False)
    """Lazy: no functools.cached_property, which mypyc compiles to a plain property. (An
    ``__init__`` argument: mypyc leaves an ``init=False`` field unset.)"""

    def get(self, name: str) -> str | None:
        """First value of a header (case-insensitive name), or ``None``."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every instance of a header: several ``To:`` lines all count."""
        return self.headers.get(name.lower(), [])

    @property
    def body_text(self) -> BodyText:
        """The first text part, decoded and cut to ``limits.body_text_chars``."""
        if self._body_text is None:
            self._body_text = first_text(self.raw, self.body_offset, self.get, self.limits)
        return self._body_text


def split_smtp_data(data: bytes) -> tuple[bytes, bytes]:
    """The DATA section up to and with its first end-of-data line, and what follows it.

    A server stops reading the message at that line and reads whatever follows as new SMTP
    commands: a second ``MAIL FROM``/``RCPT TO``/``DATA`` there sends a second message
    that a check of the whole payload as one message would never see (SMTP smuggling).
    """
    end = _END_OF_DATA.search(data)
    if end is None:
        return data, b""
    return data[: end.end()], data[end.end() :]


def _is_mail_field(name: str) -> bool:
    return name in _MAIL_FIELDS or name.startswith(_MAIL_FIELD_PREFIXES)


def _bare_cr_lines(data: bytes, stop: int) -> bool:
    """Whether the header block's lines end in a bare CR: it has a CR but no LF before its
    end, the first blank line (CR CR) or, without one, the first ``stop`` bytes.

    Decided on the header block as a whole, not on a fixed prefix: a first line longer than
    the prefix must not turn the file back into one line. A CR CR just before the first LF
    is no blank line: lines ending in CR CR LF (a doubled CR) are LF lines whose bare CRs
    the header parser judges, and turning each into two line ends would end the header
    block after its first line. The common message pays two ``find`` calls within its
    first line.
    """
    lf = data.find(b"\n", 0, stop)
    if lf < 0:
        return data.find(b"\r", 0, stop) >= 0
    return data.find(b"\r\r", 0, max(lf - 1, 0)) >= 0


def decode_smtp_data(data: bytes) -> bytes:
    """Turn an SMTP DATA section back into the message it carries.

    Removes the terminating ``.`` line and the dot-stuffing of RFC 5321 §4.5.2 (a leading
    ``.`` on any line is removed once).
    """
    if data.endswith((b"\r\n.\r\n", b"\r\n.")):
        data = data[: data.rindex(b"\r\n.") + 2]  # keep the CRLF that ends the last line
    elif data.endswith((b"\n.\n", b"\n.")):
        data = data[: data.rindex(b"\n.") + 1]
    elif data in (b".\r\n", b".\n", b"."):
        data = b""
    return _SMTP_UNSTUFF.sub(b"", data)


def parse_message(data: bytes, limits: Limits | None = None) -> Message:
    """Parse the header block of ``data``; raises :class:`InputError` for non-messages."""
    limits = limits or Limits()
    if _NOT_BLANK.search(data) is None:  # data.strip() would copy a 2 MB message
        raise InputError("input is empty")
    if data.startswith(_OLE_MAGIC):
        raise InputError(
            "this is an Outlook .msg file (binary OLE), not an RFC 5322 message: "
            "save or export it as .eml first"
        )
    problems: list[HeaderProblem] = []
    if _bare_cr_lines(data, limits.max_header_bytes):
        # Bare-CR line ends (classic Mac OS files): without this the whole message would be
        # one header line, its recipients unseen, and the verdict a silent "pass".
        data = data.replace(b"\r", b"\n")
        problems.append(
            HeaderProblem("bare-cr", "the message's lines end in a bare CR, with no LF", 1)
        )
    # A UTF-8 byte-order mark (files saved by Windows editors) would otherwise glue itself
    # to the first field name, which then fails the name check and is dropped: a first
    # "To:" line would silently count as no recipients at all.
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    if data.startswith(b"From ", start):  # mbox "From_" line left on a single message
        nl = data.find(b"\n", start)
        start = nl + 1 if nl >= 0 else len(data)
    if data[start : start + 1] in (b"\r", b"\n"):
        raise InputError("message has no header block (it starts with a blank line)")

    stop = start + limits.max_header_bytes
    found = find_header_end(data, start, stop)
    if found is not None:
        header_end, body_offset = found
    elif len(data) > stop:
        header_end = body_offset = stop
        problems.append(
            HeaderProblem(
                "header-block-truncated",
                f"no end of headers within the first {limits.max_header_bytes:,} bytes",
                len(data) - start,
            )
        )
    else:
        header_end = body_offset = len(data)

    headers = parse_header_block(data[start:header_end], limits, problems)
    if not headers:
        raise InputError("no header fields found: this does not look like an email message")
    if not any(map(_is_mail_field, headers)):
        # Counts only: a field name here is text from the file, which may be anything.
        raise InputError(
            f"none of its {len(headers)} header field name(s) is one email uses (From, To, "
            "Subject, Date, Received, Content-*, X-*, ...): this does not look like an email "
            "message"
        )
    return Message(data, headers, body_offset, limits, problems)
